"""The README's "Trainer settings" section, generated from `TrainSettings` so flags, env names and defaults never drift.

`python -m workloads.trainer_torch.docs` prints the section; `--write` replaces it in README.md.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from workloads.common.settings import WorkloadSettings
from workloads.trainer_torch.config import TrainSettings

HEADING: Final = "## Trainer settings"
"""The README heading the generated section starts with."""
README: Final = Path(__file__).resolve().parents[2] / "README.md"
"""The project's README."""


def _default(settings: type[WorkloadSettings], name: str) -> str:
    field = settings.model_fields[name]
    if field.is_required():
        return "required"
    if field.default is None:
        # Unset values are derived from other settings (validate_default) or mean "off"; the meaning says which.
        return "derived" if field.validate_default else "none"
    if isinstance(field.default, bool):
        return "on" if field.default else "off"
    # The scratch folder's default depends on the machine; show it the way its docstring does.
    return str(field.default).replace(tempfile.gettempdir(), "$TMPDIR")


def settings_table(settings: type[WorkloadSettings]) -> str:
    """A markdown table: one row per field with its flag, environment variable, default and meaning."""
    rows = ["| flag | environment variable | default | meaning |", "|---|---|---|---|"]
    for name, field in settings.model_fields.items():
        meaning = " ".join((field.description or "").split()).replace("|", "\\|")
        rows.append(f"| `{settings.flag_name(name)}` | `{settings.env_name(name)}` | {_default(settings, name)} "
                    f"| {meaning} |")
    return "\n".join(rows)


def section() -> str:
    """The whole README section, heading to table."""
    return (f"{HEADING}\n\n"
            f"`{TrainSettings.prog}` (under `torchrun`) takes every setting as a flag or, when the flag is absent, "
            "as its environment variable. Generated from `workloads/trainer_torch/config.py` by "
            "`python -m workloads.trainer_torch.docs --write`; do not edit by hand.\n\n"
            f"{settings_table(TrainSettings)}\n")


def rewrite(readme: str) -> str:
    """`readme` with its trainer section replaced by `section()` (appended when it has none)."""
    start = readme.find(HEADING + "\n")
    if start < 0:
        return readme.rstrip("\n") + "\n\n" + section()
    end = readme.find("\n## ", start + len(HEADING))
    rest = readme[end + 1:] if end >= 0 else ""
    return readme[:start] + section() + ("\n" + rest if rest else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the section, or with `--write` update README.md in place."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--write"]:
        README.write_text(rewrite(README.read_text()))
    elif args:
        print("usage: python -m workloads.trainer_torch.docs [--write]", file=sys.stderr)
        return 2
    else:
        print(section(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
