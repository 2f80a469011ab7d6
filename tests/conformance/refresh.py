"""Vendor the CRDs and chart values.yaml of the versions pinned in infra/versions.py (see sources.py).

After bumping a pin: `.venv/bin/python -m tests.conformance.refresh NAME [--from-git CLONE]`, then run
`make test-infra` and commit tests/conformance/NAME/VERSION/ (and delete the old version's directory). Without
--from-git the files come from raw.githubusercontent.com at the tag; with it, from `git show TAG:PATH` in a clone.
Tests never call this: the suite reads only the committed files.
"""

from __future__ import annotations

import subprocess
import urllib.request
from pathlib import Path
from typing import Annotated

import typer

from tests.conformance.sources import BUNDLES, Bundle

RAW = "https://raw.githubusercontent.com/{repo}/{tag}/{path}"
"""GitHub's raw file URL at a tag."""

app = typer.Typer(add_completion=False, help=__doc__)


def _read(bundle: Bundle, path: str, clone: Path | None) -> bytes:
    if clone is not None:
        return subprocess.run(["git", "-C", str(clone), "show", f"{bundle.tag}:{path}"], check=True,
                              capture_output=True).stdout
    url = RAW.format(repo=bundle.repo, tag=bundle.tag, path=path)
    with urllib.request.urlopen(url, timeout=60) as response:
        body: bytes = response.read()
    return body


def vendor(bundle: Bundle, clone: Path | None) -> Path:
    """Write the bundle's files and its SOURCE note; returns the directory."""
    bundle.directory.mkdir(parents=True, exist_ok=True)
    lines = [f"Vendored verbatim by tests/conformance/refresh.py from github.com/{bundle.repo} at tag {bundle.tag}:", ""]
    for path, name in bundle.files.items():
        (bundle.directory / name).write_bytes(_read(bundle, path, clone))
        lines.append(f"  {path}  ->  {name}")
    lines += ["", f"Pinned in infra/versions.py as {bundle.version}; tests/conformance/test_conformance.py checks the",
              "rendered stacks against these files. Refresh with the pin: see tests/conformance/refresh.py."]
    (bundle.directory / "SOURCE").write_text("\n".join(lines) + "\n")
    return bundle.directory


@app.command()
def main(names: Annotated[list[str], typer.Argument(help="Bundles to vendor (tests/conformance/sources.py).")],
         from_git: Annotated[Path | None, typer.Option(help="A clone of the bundle's repository (offline).")] = None,
         ) -> None:
    """Vendor the named bundles at the versions infra/versions.py pins."""
    known = {b.name: b for b in BUNDLES}
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise typer.BadParameter(f"unknown bundle(s) {unknown}; choose from {sorted(known)}", param_hint="NAMES")
    for name in names:
        typer.echo(f"vendored {vendor(known[name], from_git)}")


if __name__ == "__main__":
    app()
