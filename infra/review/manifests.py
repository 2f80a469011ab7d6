"""Write a graph's Kubernetes objects as YAML files, one object per file."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from infra.review.graph import HELM_RELEASE, Graph


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.-]+", "-", text.lower()).strip("-")


def write_manifests(graph: Graph, out: Path) -> list[Path]:
    """Write objects to `out/<kind>-<namespace>-<name>.yaml` and Helm releases to `out/helm/<release>/`."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for resource in graph.kubernetes_objects():
        obj = resource.inputs
        if "kind" not in obj:
            continue
        meta = obj.get("metadata") or {}
        parts = [obj["kind"], meta.get("namespace", ""), meta.get("name", resource.name)]
        path = out / (_slug("-".join(p for p in parts if p)) + ".yaml")
        path.write_text(yaml.safe_dump(obj, sort_keys=True))
        written.append(path)
    for release in graph.of_type(HELM_RELEASE):
        folder = out / "helm" / _slug(release.name)
        folder.mkdir(parents=True, exist_ok=True)
        inputs = release.inputs
        chart = {
            "chart": inputs.get("chart"),
            "version": inputs.get("version"),
            "repository": (inputs.get("repositoryOpts") or {}).get("repo"),
            "namespace": inputs.get("namespace"),
            "releaseName": inputs.get("name"),
        }
        (folder / "chart.yaml").write_text(yaml.safe_dump(chart, sort_keys=True))
        (folder / "values.yaml").write_text(yaml.safe_dump(inputs.get("values") or {}, sort_keys=True))
        written.extend([folder / "chart.yaml", folder / "values.yaml"])
    return written
