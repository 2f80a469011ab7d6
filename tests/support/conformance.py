"""Conformance checks against vendored upstream files: custom resources against their CRD's openAPIV3Schema, and the
Helm values a release sets against the chart's values.yaml. tests/conformance uses them for every stack."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ISTIO_DEFAULTS = "_internal_defaults_do_not_set"
"""Istio's charts nest their defaults under this key (a Helm workaround); users set the keys beneath it directly
(istio/istio manifests/charts/*/values.yaml, first comment)."""


def strict(node: Any) -> Any:
    """A schema where objects with `properties` reject unknown fields, as the API server's pruning would drop them
    silently; maps marked x-kubernetes-preserve-unknown-fields or with their own additionalProperties stay as they are."""
    if isinstance(node, dict):
        node = {k: strict(v) for k, v in node.items()}
        if "properties" in node and "additionalProperties" not in node and \
                not node.get("x-kubernetes-preserve-unknown-fields"):
            node["additionalProperties"] = False
        return node
    if isinstance(node, list):
        return [strict(v) for v in node]
    return node


def _with_object_root(schema: dict[str, Any]) -> dict[str, Any]:
    # The API server accepts apiVersion, kind and metadata on every custom resource whether or not the CRD's schema
    # lists them (Istio's CRDs list only spec and status), so the root admits them before unknown fields are closed.
    implied = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}}
    return {**schema, "properties": {**implied, **schema.get("properties", {})}}


def crd_schemas(files: Iterable[Path]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> strict openAPIV3Schema of every served version of every CRD in `files`."""
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served"):
                    key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                    schemas[key] = strict(_with_object_root(version["schema"]["openAPIV3Schema"]))
    return schemas


def crd_errors(resource: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Every schema violation of `resource`, each as `path: message`."""
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
            for error in sorted(validator.iter_errors(resource), key=lambda e: list(map(str, e.absolute_path)))]


def chart_defaults(values_file: Path) -> dict[str, Any]:
    """A chart's values.yaml as the keys a user sets (Istio's wrapper key unwrapped)."""
    values: dict[str, Any] = yaml.safe_load(values_file.read_text()) or {}
    if ISTIO_DEFAULTS in values:
        values = {**{k: v for k, v in values.items() if k != ISTIO_DEFAULTS}, **values[ISTIO_DEFAULTS]}
    return values


def chart_view(values: dict[str, Any], defaults: dict[str, Any], free_form: Iterable[str] = (),
               root_aliases: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, Any]]:
    """The values as the chart reads them and its defaults with the given dotted paths opened up as free-form maps:
    each key in `root_aliases` is a legacy prefix the chart merges into its root (so `pilot.cni` means `cni`)."""
    ours = copy.deepcopy(values)
    for alias in root_aliases:
        ours = {**{k: v for k, v in ours.items() if k != alias}, **ours.get(alias, {})}
    chart = copy.deepcopy(defaults)
    for path in free_form:
        *parents, leaf = path.split(".")
        node = chart
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = {}
    return ours, chart


def unknown_value_paths(ours: Any, chart: Any, path: str = "") -> list[str]:
    """Key paths we set that the chart's values.yaml does not have. An empty map, a null or a list in the chart is
    free-form (the chart passes it through), so anything under it is accepted, as is a label, annotation or selector
    map (its default keys look like `kubernetes.io/os`); a scalar where the chart has a map
    (or the reverse) is reported with both types."""
    if isinstance(ours, dict) and isinstance(chart, dict) and chart and not any("/" in str(k) for k in chart):
        out = []
        for key, value in ours.items():
            if key not in chart:
                out.append(f"{path}{key}")
            else:
                out += unknown_value_paths(value, chart[key], f"{path}{key}.")
        return out
    if chart is None or (isinstance(chart, dict) and not chart) or isinstance(chart, list):
        return []
    if isinstance(chart, bool | int | float) and isinstance(ours, bool | int | float) \
            and isinstance(ours, bool) == isinstance(chart, bool):
        return []
    if not isinstance(ours, type(chart)):
        return [f"{path.rstrip('.')} ({type(ours).__name__}, chart has {type(chart).__name__})"]
    return []
