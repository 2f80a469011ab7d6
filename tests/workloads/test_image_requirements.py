"""The torch images install their requirements with `--no-deps`: each list must be the complete closure, at the tested
versions, and cover what the code they copy imports.

A package missing from the list fails only when the image runs; a version other than the test venv's was never
tested. Both are checked here against the packages installed in this venv (which `make test` ran against).
"""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support.dockerfile import REPO_ROOT, copy_sources, instructions

NO_DEPS_IMAGES = ("serve", "trainer-torch", "recommend")
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


def _imports(folder: Path) -> set[str]:
    """Top-level names every module under `folder` imports, lazily imported ones included."""
    names: set[str] = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module)
    return names


@pytest.mark.parametrize("image", NO_DEPS_IMAGES)
def test_copied_code_imports_only_what_the_image_has(image: str) -> None:
    # A package the Dockerfile forgets to COPY, or a library no pin provides, fails only when the pod starts.
    dockerfile = REPO_ROOT / "images" / image / "Dockerfile"
    copied = [s.rstrip("/") for s in copy_sources(dockerfile)
              if s.startswith("workloads/") and (REPO_ROOT / s).is_dir()]
    # The build's own smoke import (`RUN python3 -c "import ..."`) names the entry points the image must carry.
    smoke = {name for instruction, args in instructions(dockerfile) if instruction == "RUN"
             for name in re.findall(r"\bworkloads(?:\.\w+)+", args)}
    imported = set().union(smoke, *(_imports(REPO_ROOT / folder) for folder in copied))
    ours = {name for name in imported if name.split(".")[0] == "workloads"}
    not_copied = sorted(name for name in ours if name != "workloads"
                        and not any(name.replace(".", "/").startswith(folder) for folder in copied))
    assert not not_copied, f"images/{image}/Dockerfile does not COPY what its code imports: {not_copied}"
    installed = set(_pins(image)) | _closure([BASE])
    distributions = metadata.packages_distributions()
    third_party = {name.split(".")[0] for name in imported} - set(sys.stdlib_module_names) - {"workloads"}
    missing = sorted(top for top in third_party
                     if not {canonicalize_name(d) for d in distributions.get(top, [top])} & installed)
    assert not missing, f"images/{image} runs code importing {missing}, which neither its pins nor its base provide"
