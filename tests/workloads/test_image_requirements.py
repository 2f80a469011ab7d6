"""The torch images install their requirements with `--no-deps`: each list must be the complete closure, at the tested versions.

A package missing from the list fails only when the image runs; a version other than the test venv's was never
tested. Both are checked here against the packages installed in this venv (which `make test` ran against).
"""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.dockerfile import REPO_ROOT

NO_DEPS_IMAGES = ("serve", "trainer-torch")
"""Images whose Dockerfile installs requirements.txt with `pip install --no-deps` on a torch base image."""
BASE = "torch"
"""The base image provides this distribution and everything it requires."""


def _pins(image: str) -> dict[str, str]:
    lines = (REPO_ROOT / "images" / image / "requirements.txt").read_text().splitlines()
    pins = {}
    for line in lines:
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version
    return pins


def _requires(name: str) -> list[str]:
    """Runtime requirements of an installed distribution (no extras), for this interpreter."""
    environment = {**default_environment(), "extra": ""}
    found = []
    for text in metadata.requires(name) or []:
        requirement = Requirement(text)
        if requirement.marker is None or requirement.marker.evaluate(environment):
            found.append(canonicalize_name(requirement.name))
    return found


def _closure(roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(_requires(name))
    return seen


@pytest.mark.parametrize("image", NO_DEPS_IMAGES)
def test_pins_are_the_versions_the_tests_ran_with(image: str) -> None:
    wrong = {name: (pinned, metadata.version(name)) for name, pinned in _pins(image).items()
             if metadata.version(name) != pinned}
    assert not wrong, f"images/{image}/requirements.txt pins differ from the test venv (pinned, tested): {wrong}"


@pytest.mark.parametrize("image", NO_DEPS_IMAGES)
def test_pins_are_the_complete_closure(image: str) -> None:
    pins = _pins(image)
    provided = _closure([BASE])
    missing = sorted(name for name in _closure(list(pins)) - set(pins) if name not in provided)
    assert not missing, (f"images/{image}/requirements.txt is installed with --no-deps but lacks what its packages "
                         f"require; add, at the venv's versions: "
                         + ", ".join(f"{name}=={metadata.version(name)}" for name in missing))


def test_requirement_lines_are_exact_pins() -> None:
    for image in NO_DEPS_IMAGES:
        path: Path = REPO_ROOT / "images" / image / "requirements.txt"
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
        assert all(re.fullmatch(r"[A-Za-z0-9_.-]+==[\w.]+", ln) for ln in lines), (path, lines)
