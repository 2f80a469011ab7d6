"""The trainer image: COPY sources exist, the entry module imports, pins and base are fixed, hadolint is clean."""

from __future__ import annotations

import importlib
import re
import tomllib

from tests.support import dockerfile
from tests.workloads.trainer_torch.support import REPO

IMAGE = REPO / "images" / "trainer-torch"
DOCKERFILE = (IMAGE / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """Arguments of every `name` instruction (continuation lines joined)."""
    joined = DOCKERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in joined.splitlines() if line.upper().startswith(name + " ")]


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = []
    for args in instructions("COPY"):
        if args.startswith("--from="):
            continue
        sources += args.split()[:-1]
    assert sources, "the image copies the workload code"
    missing = [s for s in sources if not (REPO / s).exists()]
    assert missing == []
    assert {"workloads/common", "workloads/lm", "workloads/trainer_torch"} <= set(sources)


def test_entry_module_imports_and_is_what_the_image_runs() -> None:
    importlib.import_module("workloads.trainer_torch.__main__")
    importlib.import_module("workloads.trainer_torch.prepare")
    assert '"-m", "workloads.trainer_torch"' in instructions("CMD")[0]
    assert "import torch, workloads.trainer_torch.train" in DOCKERFILE


def test_base_image_is_pinned_by_digest_and_matches_the_torch_pin() -> None:
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert base is not None
    assert re.fullmatch(r"pytorch/pytorch:[\d.]+-cuda[\d.]+-cudnn9-runtime@sha256:[0-9a-f]{64}", base.group(1))
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["torch"]
    torch_pin = next(r for r in extras if r.startswith("torch=="))
    assert base.group(1).startswith(f"pytorch/pytorch:{torch_pin.removeprefix('torch==')}-")


def test_requirements_are_exact_pins_covering_the_runtime_imports() -> None:
    lines = [ln for ln in (IMAGE / "requirements.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", ln) for ln in lines), lines
    names = {ln.split("==")[0].lower() for ln in lines}
    assert {"boto3", "botocore", "numpy", "safetensors", "tenacity", "prometheus-client", "pydantic"} <= names
    assert "torch" not in names, "torch comes from the CUDA base image"


def test_runs_as_a_non_root_user() -> None:
    users = instructions("USER")
    assert users and users[-1].strip() not in {"root", "0"}
    assert DOCKERFILE.rstrip().splitlines().index(f"USER {users[-1]}") > max(
        i for i, ln in enumerate(DOCKERFILE.splitlines()) if ln.startswith(("RUN ", "COPY ")))


def test_hadolint_is_clean() -> None:
    result = dockerfile.hadolint(IMAGE / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
