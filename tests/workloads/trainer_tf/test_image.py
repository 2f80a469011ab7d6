"""images/trainer-tf/Dockerfile: every COPY source exists, the entry module imports, and hadolint passes."""

from __future__ import annotations

import importlib
import re

from tests.support import dockerfile
from tests.support.dockerfile import REPO_ROOT

DOCKERFILE = REPO_ROOT / "images" / "trainer-tf" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "images" / "trainer-tf" / "requirements.txt"


def _instructions() -> list[tuple[str, str]]:
    return dockerfile.instructions(DOCKERFILE)


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = dockerfile.copy_sources(DOCKERFILE)
    assert "images/trainer-tf/requirements.txt" in sources and "workloads/trainer_tf/" in sources
    missing = [source for source in sources if not (REPO_ROOT / source).exists()]
    assert missing == []


def test_base_images_are_pinned_to_a_version() -> None:
    args = dockerfile.build_args(DOCKERFILE)
    assert re.fullmatch(r"tensorflow/tensorflow:2\.21\.0@sha256:[0-9a-f]{64}", args["TF_IMAGE"])
    froms = [arg.split()[0] for instruction, arg in _instructions() if instruction == "FROM"]
    assert froms == ["${TF_IMAGE}", "${TF_IMAGE}"]


def test_image_runs_as_a_non_root_user_with_the_trainer_entry_point() -> None:
    instructions = _instructions()
    users = [arg for instruction, arg in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert instructions[-1] == ("ENTRYPOINT", '["python3", "-m", "workloads.trainer_tf"]')


def test_image_pins_the_tensorflow_the_base_image_ships() -> None:
    pins = dockerfile.pins(REQUIREMENTS)
    assert pins["tensorflow"] == "2.21.0"
    assert all(version and version[0].isdigit() for version in pins.values())


def test_entry_module_and_its_imports_load() -> None:
    for module in ("workloads.trainer_tf", "workloads.trainer_tf.__main__", "workloads.trainer_tf.cli"):
        importlib.import_module(module)


def test_dockerfile_is_hadolint_clean() -> None:
    result = dockerfile.hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
