"""Every workload image copies only shipped packages: never the demo and dev servers in workloads/demo."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.dockerfile import REPO_ROOT, copy_sources

DOCKERFILES = sorted((REPO_ROOT / "images").glob("*/Dockerfile"))


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.parent.name)
def test_image_does_not_copy_the_demo_package(path: Path) -> None:
    sources = [source.rstrip("/") for source in copy_sources(path)]
    assert sources, "the image copies workload code"
    assert all(source.startswith(("workloads/", "images/")) for source in sources), sources
    assert not [s for s in sources if s in {"workloads", "."} or s.startswith("workloads/demo")], sources


def test_there_are_images_to_check() -> None:
    assert {p.parent.name for p in DOCKERFILES} >= {"serve", "serve-tf", "trainer-torch", "trainer-tf"}
