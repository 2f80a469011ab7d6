"""The layering of ../shared/ARCHITECTURE.md, checked on the source: imports parsed with `ast`, nothing imported.

Imports go one way: review tools → {policies, program} → workloads' shared contracts.
- no import cycle between modules, between top-level folders, nor between infra's parts (config, aws, k8s, review, ...);
- the policy pack imports nothing else of the project; workloads never import the program (or the pack);
- the program never imports the review tools;
- no module over 420 lines.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("infra", "policies", "workloads")
MAX_LINES = 420


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the project's packages, by dotted name."""
    return {_name(path): path for package in PACKAGES for path in sorted((REPO / package).rglob("*.py"))
            if "__pycache__" not in path.parts}


def _resolve(target: str) -> str | None:
    # `from a.b import c` names module a.b.c when that is a module, else a name defined in a.b.
    while target and target not in modules():
        target = target.rpartition(".")[0]
    return target or None


def _imported(module: str, path: Path) -> Iterable[str]:
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            yield from (f"{base}.{alias.name}" for alias in node.names)


@cache
def imports() -> dict[str, frozenset[str]]:
    """Each module's imports of other project modules (at any depth: function-level imports count)."""
    graph: dict[str, frozenset[str]] = {}
    for module, path in modules().items():
        found = {_resolve(target) for target in _imported(module, path) if target.split(".")[0] in PACKAGES}
        graph[module] = frozenset(m for m in found if m is not None and m != module)
    return graph


def _cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def _collapsed(group: Callable[[str], str | None]) -> dict[str, set[str]]:
    # The module graph with each module replaced by its group (None: left out).
    out: dict[str, set[str]] = {}
    for module, targets in imports().items():
        source = group(module)
        if source is None:
            continue
        out.setdefault(source, set()).update(g for g in map(group, targets) if g is not None and g != source)
    return out


def _edges(cycle: list[str], graph: Mapping[str, Iterable[str]]) -> list[str]:
    members = set(cycle)
    return [f"{a} → {b}" for a in cycle for b in sorted(graph.get(a, ())) if b in members]


def _infra_part(module: str) -> str | None:
    # infra's parts: its subpackages (config, aws, k8s, review) and its top-level modules (program, versions, ...).
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "infra" and len(parts) > 1 else None


def _offenders(source: Callable[[str], bool], target: Callable[[str], bool]) -> list[str]:
    return [f"{m} imports {t}" for m, targets in sorted(imports().items()) if source(m) for t in sorted(targets)
            if target(t)]


def test_the_import_graph_is_parsed_from_the_source() -> None:
    # Guards the checks below against passing on an empty graph.
    assert {"infra.program", "infra.review.cli", "policies.rules", "workloads.common.metrics"} <= modules().keys()
    assert "infra.review.engine" in imports()["infra.review.cli"]
    assert "infra.program" in imports()["infra.review.engine"]  # a function-level import counts too


def test_cycles_are_found_and_a_chain_is_not_one() -> None:
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": ["c"], "d": ["a"]}) == []


def test_no_import_cycle_between_modules() -> None:
    cycles = _cycles(imports())
    assert not cycles, "\n".join(" | ".join(_edges(c, imports())) for c in cycles)


def _folder(module: str) -> str:
    return module.split(".")[0]


def _across(group: Callable[[str], str], cycle: list[str]) -> str:
    # The module imports behind a cycle between groups, one line per pair of groups.
    lines = []
    for a in cycle:
        for b in cycle:
            found = _offenders(lambda m, a=a: group(m) == a, lambda t, b=b: group(t) == b) if a != b else []
            if found:
                lines.append(f"{a} → {b}: " + "; ".join(found))
    return "\n".join(lines)


def test_no_import_cycle_between_top_level_folders() -> None:
    cycles = _cycles(_collapsed(_folder))
    assert not cycles, "\n\n".join(_across(_folder, c) for c in cycles)


def test_no_import_cycle_between_the_parts_of_infra() -> None:
    def part(module: str) -> str:
        return _infra_part(module) or module

    cycles = _cycles(_collapsed(_infra_part))
    assert not cycles, "\n\n".join(_across(part, c) for c in cycles)


def test_the_policy_pack_imports_nothing_else_of_the_project() -> None:
    offenders = _offenders(lambda m: m.startswith("policies"), lambda t: not t.startswith("policies"))
    assert not offenders, offenders


def test_workloads_never_import_the_program_or_the_pack() -> None:
    offenders = _offenders(lambda m: m.startswith("workloads"), lambda t: not t.startswith("workloads"))
    assert not offenders, offenders


def test_the_program_never_imports_the_review_tools() -> None:
    offenders = _offenders(lambda m: m.startswith("infra.") and not m.startswith("infra.review"),
                           lambda t: t.startswith("infra.review"))
    assert not offenders, offenders


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_is_over_420_lines(package: str) -> None:
    long = {name: n for name, path in modules().items() if name.split(".")[0] == package
            and (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (a sign that each holds two things): {long}"
