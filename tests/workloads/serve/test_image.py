"""images/serve/Dockerfile: COPY sources exist, pins are exact, the entry module imports, hadolint passes."""

from __future__ import annotations

import importlib
import importlib.metadata
import re

from tests.support import dockerfile
from tests.support.dockerfile import REPO_ROOT

DOCKERFILE = REPO_ROOT / "images" / "serve" / "Dockerfile"
REQUIREMENTS = REPO_ROOT / "images" / "serve" / "requirements.txt"


def _instructions() -> list[tuple[str, str]]:
    return dockerfile.instructions(DOCKERFILE)


def _pins() -> dict[str, str]:
    return dockerfile.pins(REQUIREMENTS)


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = dockerfile.copy_sources(DOCKERFILE)
    assert "workloads/serve" in sources and "images/serve/requirements.txt" in sources
    assert [source for source in sources if not (REPO_ROOT / source).exists()] == []


def test_base_image_is_pinned_by_tag_and_digest() -> None:
    args = dockerfile.build_args(DOCKERFILE)
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
    result = dockerfile.hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
