"""images/recommend/Dockerfile: COPY sources exist, the base is pinned, non-root, the service entry point, hadolint.

Its pins (complete closure, tested versions, covering the copied code's imports) are checked with the other
--no-deps images in tests/workloads/test_image_requirements.py.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support import dockerfile
from tests.support.dockerfile import REPO_ROOT

DOCKERFILE = REPO_ROOT / "images" / "recommend" / "Dockerfile"
ENTRY_POINTS = ("workloads.recommend.service", "workloads.recommend.train", "workloads.recommend.processor",
                "workloads.recommend.topics", "workloads.recommend.dataset")
"""The image's `python -m` commands."""


def test_every_copy_source_exists_in_the_build_context() -> None:
    sources = dockerfile.copy_sources(DOCKERFILE)
    assert {"workloads/recommend", "workloads/common", "images/recommend/requirements.txt"} <= set(sources)
    assert [source for source in sources if not (REPO_ROOT / source).exists()] == []


def test_base_image_is_pinned_by_tag_and_digest() -> None:
    base = dockerfile.build_args(DOCKERFILE)["BASE_IMAGE"]
    assert re.fullmatch(r"pytorch/pytorch:2\.13\.0-[\w.-]+@sha256:[0-9a-f]{64}", base)
    # The same base as the serve image: shared layers, and the torch that wrote the weights loads them.
    assert base == dockerfile.build_args(REPO_ROOT / "images" / "serve" / "Dockerfile")["BASE_IMAGE"]


def test_image_runs_as_non_root_with_the_service_entry_point() -> None:
    instructions = dockerfile.instructions(DOCKERFILE)
    users = [arg for instruction, arg in instructions if instruction == "USER"]
    assert users and users[-1].split(":")[0] not in {"0", "root"}
    assert instructions[-1] == ("ENTRYPOINT", '["python3", "-m", "workloads.recommend.service"]')


def test_the_build_imports_every_entry_point_and_the_msk_signer() -> None:
    # The signer is imported lazily (only an iam client needs it): without this a missing pin fails at rollout.
    checks = [arg for instruction, arg in dockerfile.instructions(DOCKERFILE)
              if instruction == "RUN" and arg.startswith("python3 -c")]
    assert len(checks) == 1
    imported = set(re.findall(r"[\w.]+", checks[0].split("import", 1)[1].split(";", 1)[0]))
    assert {*ENTRY_POINTS, "aws_msk_iam_sasl_signer"} <= imported


def test_every_entry_point_of_the_image_answers_help() -> None:
    for module in ENTRY_POINTS:
        result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=REPO_ROOT, capture_output=True,
                                text=True, check=False)
        assert result.returncode == 0 and f"python -m {module}" in result.stdout, (module, result.stderr)


def test_dockerfile_is_hadolint_clean() -> None:
    result = dockerfile.hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr
