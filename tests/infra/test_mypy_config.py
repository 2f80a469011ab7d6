"""mypy follows exactly the pulumi_aws / pulumi_kubernetes modules the program uses (pyproject.toml [tool.mypy]).

Both SDKs import every one of their service subpackages in `__init__` under TYPE_CHECKING, so following
them whole costs mypy minutes and gigabytes. pyproject.toml skips `pulumi_aws.*` and `pulumi_kubernetes.*`
and follows back only what the program reaches. A skipped module is `Any` to mypy: a call into it is not
checked at all, silently. These tests derive what must be followed from the code mypy checks and fail when
pyproject.toml misses one (or keeps one nothing uses any more).

What must be followed: every module on an attribute chain from an SDK import (`aws.ec2.Vpc` → pulumi_aws,
pulumi_aws.ec2), then, transitively, every module that a followed module imports unconditionally (its
module-level relative imports: `from ._inputs import *`, `from ... import core as _core`). The packages'
`if TYPE_CHECKING:` subpackage imports are what the skip is for, and are not followed.
"""

from __future__ import annotations

import ast
import importlib.util
import io
import re
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

mypy_options = pytest.importorskip("mypy.options")
mypy_config_parser = pytest.importorskip("mypy.config_parser")

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
SDKS = ("pulumi_aws", "pulumi_kubernetes")
_RELATIVE_IMPORT = re.compile(r"^from (\.+)([\w.]*) import (.+)$")  # module level only: no indentation


def test_every_sdk_module_the_program_reaches_is_followed() -> None:
    options = _mypy_options()
    skipped = {m for m in _required_modules() if options.clone_for_module(m).follow_imports != "normal"}
    assert not skipped, (
        "mypy skips SDK modules the program uses, so calls into them are not type-checked (they are Any). Add to "
        "the follow_imports = \"normal\" override in pyproject.toml [tool.mypy]:\n  " + ",\n  ".join(
            f'"{p}"' for p in _patterns_for(skipped)))


def test_every_followed_sdk_pattern_is_still_used() -> None:
    required = _required_modules()
    stale = [p for p in _followed_patterns() if not any(_matches(p, m) for m in required)]
    assert not stale, f"nothing in the program reaches these any more; drop them from pyproject.toml [tool.mypy]: {stale}"


def test_unused_sdk_subpackages_are_skipped() -> None:
    # The point of the override: an SDK subpackage the program does not use is not analysed.
    options = _mypy_options()
    for sdk, unused in (("pulumi_aws", "pulumi_aws.accessanalyzer"), ("pulumi_kubernetes", "pulumi_kubernetes.flowcontrol")):
        assert unused not in _required_modules(), f"pick another unused {sdk} subpackage for this test"
        assert options.clone_for_module(unused).follow_imports == "skip"


def test_chain_resolution_reaches_the_modules_behind_a_call() -> None:
    required = _required_modules()
    assert {"pulumi_aws", "pulumi_aws.ec2", "pulumi_aws.ec2.vpc", "pulumi_aws._utilities"} <= required
    assert {"pulumi_kubernetes", "pulumi_kubernetes.provider", "pulumi_kubernetes.apps.v1",
            "pulumi_kubernetes.apps.v1.Deployment", "pulumi_kubernetes.core.v1"} <= required


@cache
def _mypy_options() -> Any:
    options = mypy_options.Options()
    stderr = io.StringIO()
    mypy_config_parser.parse_config_file(options, lambda: None, str(PYPROJECT), stdout=io.StringIO(), stderr=stderr)
    assert not stderr.getvalue(), stderr.getvalue()
    return options


def _followed_patterns() -> list[str]:
    overrides = tomllib.loads(PYPROJECT.read_text())["tool"]["mypy"].get("overrides", [])
    patterns = []
    for override in overrides:
        if override.get("follow_imports") == "normal":
            modules = override["module"]
            patterns += [m for m in ([modules] if isinstance(modules, str) else modules) if m.split(".")[0] in SDKS]
    return patterns


def _patterns_for(modules: set[str]) -> list[str]:
    """The fewest entries covering `modules`: `pkg.*` where every module of pkg is in `modules`, else the name."""
    patterns: set[str] = set()
    for module in modules:
        parts = module.split(".")
        for i in range(2, len(parts) + 1):
            package = ".".join(parts[:i])
            if package in modules and _is_package(package) and set(_modules_under(package)) <= modules:
                patterns.add(f"{package}.*")
                break
        else:
            patterns.add(module)
    return sorted(patterns)


def _is_package(module: str) -> bool:
    path = _file_of(module)
    return path is not None and path.name == "__init__.py"


def _modules_under(package: str) -> Iterator[str]:
    path = _file_of(package)
    assert path is not None
    yield package
    for child in sorted(path.parent.iterdir()):
        name = child.name.removesuffix(".py")
        if (child.suffix == ".py" and child.name != "__init__.py") or (child / "__init__.py").is_file():
            yield from _modules_under(f"{package}.{name}") if child.is_dir() else [f"{package}.{name}"]


def _matches(pattern: str, module: str) -> bool:
    if pattern.endswith(".*"):
        return module == pattern[:-2] or module.startswith(pattern[:-1])
    return module == pattern


@cache
def _required_modules() -> frozenset[str]:
    todo = list(_program_modules())
    required: set[str] = set()
    while todo:
        module = todo.pop()
        if module not in required:
            required.add(module)
            todo += _imports_of(module)
    return frozenset(required)


def _program_modules() -> Iterator[str]:
    """SDK modules on the attribute chains (and `from` imports) of the files mypy checks."""
    for path in _checked_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        aliases: dict[str, str] = {}  # local name → SDK module
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] in SDKS:
                        yield from _chain(alias.name.split("."))
                        if alias.asname:
                            aliases[alias.asname] = alias.name
                        else:
                            aliases[alias.name.split(".")[0]] = alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] in SDKS:
                for alias in node.names:
                    yield from _chain([*node.module.split("."), alias.name])
                    if _is_module(f"{node.module}.{alias.name}"):
                        aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in ast.walk(tree):
            parts = _dotted(node)
            if parts and parts[0] in aliases:
                yield from _chain([*aliases[parts[0]].split("."), *parts[1:]])


def _checked_files() -> Iterator[Path]:
    for entry in _mypy_options().files or []:
        path = ROOT / entry
        yield from sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _dotted(node: ast.AST) -> list[str] | None:
    """`a.b.c` → ["a", "b", "c"] for a Name/Attribute chain that is not itself part of a longer chain's base."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    return [node.id, *parts] if isinstance(node, ast.Name) and parts else None


def _chain(parts: list[str]) -> Iterator[str]:
    """Each module along a dotted name: pulumi_aws.ec2.Vpc → pulumi_aws, pulumi_aws.ec2."""
    module = parts[0]
    yield module
    for part in parts[1:]:
        if not _is_module(f"{module}.{part}"):
            return
        module = f"{module}.{part}"
        yield module


@cache
def _file_of(module: str) -> Path | None:
    top, *rest = module.split(".")
    spec = importlib.util.find_spec(top)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    base = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _is_module(module: str) -> bool:
    return _file_of(module) is not None


def _imports_of(module: str) -> Iterator[str]:
    """SDK modules a module imports unconditionally (module-level relative imports)."""
    path = _file_of(module)
    if path is None:
        return
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for line in path.read_text().splitlines():
        match = _RELATIVE_IMPORT.match(line)
        if not match:
            continue
        dots, name, names = match.groups()
        base = package[: len(package) - (len(dots) - 1)]
        target = ".".join([*base, *name.split(".")]) if name else ".".join(base)
        yield from _chain(target.split("."))
        if names.strip() != "*":
            for imported in names.strip("()").split(","):
                candidate = f"{target}.{imported.split(' as ')[0].strip()}"
                if _is_module(candidate):
                    yield candidate
