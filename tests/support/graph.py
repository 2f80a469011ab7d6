"""Assertions on rendered resource inputs, in the style of CDK's `Template.hasResourceProperties`."""

from __future__ import annotations

import copy
import json
from typing import Any

import kubernetes_validate

from infra.config.parse import PlatformConfig, parse_config
from infra.review.engine import load_stack_config, render_config
from infra.review.graph import Graph, Resource


def matches(subset: Any, actual: Any) -> bool:
    """True when `subset` is a deep subset of `actual` (dict keys and list items by position)."""
    if isinstance(subset, dict):
        return isinstance(actual, dict) and all(k in actual and matches(v, actual[k]) for k, v in subset.items())
    if isinstance(subset, list):
        return isinstance(actual, list) and len(subset) == len(actual) and all(
            matches(s, a) for s, a in zip(subset, actual, strict=True))
    return bool(subset == actual)


def _require_subset(subset: dict[str, Any]) -> None:
    # An empty subset matches every resource, so the assertion could never fail: count resources with assert_count.
    if not subset:
        raise ValueError("an empty subset matches any inputs; name the properties to check (or use assert_count)")


def assert_has_props(graph: Graph, type_: str, subset: dict[str, Any]) -> list[Resource]:
    """At least one resource of `type_` has inputs containing `subset` (not empty); returns all that do."""
    _require_subset(subset)
    candidates = graph.of_type(type_)
    found = [r for r in candidates if matches(subset, r.inputs)]
    if not found:
        shown = "\n".join(f"  {r.urn}\n    {json.dumps(r.inputs, sort_keys=True)[:600]}" for r in candidates[:5])
        raise AssertionError(f"no {type_} has {json.dumps(subset, sort_keys=True)}; candidates:\n{shown or '  none'}")
    return found


def assert_all_have_props(graph: Graph, type_: str, subset: dict[str, Any]) -> list[Resource]:
    """Every resource of `type_` (at least one) has inputs containing `subset` (not empty)."""
    _require_subset(subset)
    candidates = graph.of_type(type_)
    assert candidates, f"no {type_} rendered"
    bad = [r.urn for r in candidates if not matches(subset, r.inputs)]
    assert not bad, f"{type_} without {json.dumps(subset, sort_keys=True)}: {bad}"
    return candidates


def assert_count(graph: Graph, type_: str, count: int) -> None:
    """Exactly `count` resources of `type_`."""
    found = graph.of_type(type_)
    assert len(found) == count, f"expected {count} {type_}, got {len(found)}: {[r.name for r in found]}"


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """`base` with `changes` merged in; a None value deletes the key."""
    merged = copy.deepcopy(base)
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def stack_config_with(stack: str, changes: dict[str, Any]) -> dict[str, Any]:
    """A real stack's raw config with `changes` (full `ns:key` keys) deep-merged in."""
    return deep_merge(load_stack_config(stack), changes)


def load_platform_config(stack: str) -> PlatformConfig:
    """A real stack's validated config (raises `ConfigError` with every problem)."""
    return parse_config(stack, load_stack_config(stack))


def manifest_objects(graph: Graph) -> list[dict[str, Any]]:
    """Every Kubernetes object in the graph as a plain manifest dict, in URN order."""
    return [dict(r.inputs) for r in graph.kubernetes_objects() if "kind" in r.inputs]


def render_variant(stack: str, changes: dict[str, Any]) -> Graph:
    """Render a real stack with config changes, through the same engine as `modelplane render`."""
    raw = stack_config_with(stack, changes)
    return render_config(parse_config(stack, raw), raw)


def policy_statements(graph: Graph) -> list[tuple[str, dict[str, Any]]]:
    """(urn, statement) for every statement of every IAM policy document in the graph."""
    out = []
    for resource in graph.resources:
        for key in ("policy", "assumeRolePolicy"):
            doc = resource.inputs.get(key)
            if isinstance(doc, str) and doc.startswith("{"):
                for statement in json.loads(doc).get("Statement", []):
                    out.append((resource.urn, statement))
    return out


def assert_kind_validates(graph: Graph, kind: str, version: str = "1.35") -> None:
    """Every rendered object of `kind` validates strictly against the Kubernetes `version` schema; at least one exists."""

    found = [r.inputs for r in graph.kubernetes_objects() if r.inputs.get("kind") == kind]
    assert found, f"no {kind} rendered"
    for obj in found:
        kubernetes_validate.validate(obj, version, strict=True)
