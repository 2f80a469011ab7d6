"""Grafana dashboards (infra/k8s/dashboards/*.json): valid, and every metric a panel queries is one that is exported.

Known metric names come from three places only:
- ours: `workloads.common.metrics.ALL` (histograms also expose `_bucket`, `_sum` and `_count`);
- dcgm-exporter's default counters (NVIDIA/dcgm-exporter tag 4.5.3-4.8.2, etc/default-counters.csv);
- the exporters kube-prometheus-stack ships, each name listed below with the upstream file that defines it.
- Fluent Bit's own output counters (its chart's ServiceMonitor, infra/k8s/logging.py).
"""

from __future__ import annotations

import ast
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.k8s.observability import DASHBOARDS_DIR, load_dashboards
from workloads.common import metrics

DCGM_DEFAULT_COUNTERS = frozenset({
    # NVIDIA/dcgm-exporter 4.5.3-4.8.2 etc/default-counters.csv (the counters the chart's image collects).
    "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_ENC_UTIL", "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "DCGM_FI_DEV_VGPU_LICENSE_STATUS", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_ROW_REMAP_FAILURE", "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_PCIE_TX_BYTES",
    "DCGM_FI_PROF_PCIE_RX_BYTES",
})
KUBE_STATE_METRICS = frozenset({
    # kubernetes/kube-state-metrics docs/metrics/workload/pod-metrics.md
    "kube_pod_container_resource_requests", "kube_pod_info",
    # kubernetes/kube-state-metrics docs/metrics/workload/horizontalpodautoscaler-metrics.md
    "kube_horizontalpodautoscaler_status_current_replicas", "kube_horizontalpodautoscaler_spec_max_replicas",
})
NODE_EXPORTER = frozenset({
    # prometheus/node_exporter collector/cpu_linux.go; also used by kube-prometheus-stack 88.5.3's own
    # templates/grafana/dashboards-1.14/ node dashboards.
    "node_cpu_seconds_total",
})
FLUENT_BIT = frozenset({
    # fluent/fluent-bit src/flb_output.c (cmetrics counters of every output; the chart's ServiceMonitor scrapes them).
    "fluentbit_output_dropped_records_total", "fluentbit_output_errors_total",
})
_KEYWORDS = frozenset({"and", "or", "unless", "offset", "bool", "by", "without", "on", "ignoring", "group_left",
                       "group_right", "atan2", "inf", "nan"})


def histograms() -> set[str]:
    """The metric names workloads/common/metrics.py declares as histograms."""
    # A histogram's docstring in workloads/common/metrics.py starts with "Histogram:".
    tree = ast.parse(Path(metrics.__file__).read_text())
    out, body = set(), tree.body
    for node, after in itertools.pairwise(body):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.value, ast.Constant)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and str(after.value.value).startswith("Histogram:")):
            out.add(node.value.value)
    return out


def exported_metric_names() -> frozenset[str]:
    """Every metric name a dashboard or rule may query."""
    ours = set(metrics.ALL) | {f"{h}{suffix}" for h in histograms() for suffix in ("_bucket", "_sum", "_count")}
    return frozenset(ours | DCGM_DEFAULT_COUNTERS | KUBE_STATE_METRICS | NODE_EXPORTER | FLUENT_BIT)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, labels and durations removed)."""
    text = re.sub(r"\$\{?\w+\}?", "", expr)  # Grafana variables
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'', '""', text)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[A-Za-z_:][A-Za-z0-9_:]*", text):
        if re.match(r"\s*\(", text[match.end():]) or match.group() in _KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_names_sees_through_functions_labels_and_durations() -> None:
    expr = ('histogram_quantile(0.99, sum by (service, le) (rate(a_bucket{route!~"/v2/.*", x="y"}[5m] offset 10m)))'
            ' / on (namespace) group_left b and c{pod=~"$pod"} > 1e3')
    assert metric_names(expr) == {"a_bucket", "b", "c"}


def _panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows
    return out


DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))


def test_gpu_training_inference_llm_and_recommend_dashboards_exist() -> None:
    assert {p.stem for p in DASHBOARDS} == {"gpu", "training", "inference", "llm", "recommend"}
    assert set(load_dashboards()) == {"gpu", "training", "inference", "llm", "recommend"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_queries_only_exported_metrics(path: Path) -> None:
    known = exported_metric_names()
    board = json.loads(path.read_text())
    unknown = {}
    for panel in _panels(board):
        for target in panel.get("targets", []):
            missing = metric_names(target["expr"]) - known
            if missing:
                unknown[f"{panel['title']} / {target['refId']}"] = sorted(missing)
    assert not unknown, f"{path.name}: panels query metrics nobody exports: {unknown}"


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_panel_has_a_query_on_the_selected_datasource(path: Path) -> None:
    board = json.loads(path.read_text())
    assert board["templating"]["list"][0]["name"] == "datasource"
    for panel in _panels(board):
        assert panel["targets"], f"{path.name}: panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert metric_names(target["expr"]), f"{path.name}: {panel['title']!r} queries no metric"


def test_dashboard_uids_and_panel_ids_are_unique() -> None:
    boards = [json.loads(p.read_text()) for p in DASHBOARDS]
    assert len({b["uid"] for b in boards}) == len(boards)
    for board in boards:
        ids = [p["id"] for p in _panels(board)]
        assert len(ids) == len(set(ids)), board["uid"]


def test_every_exported_metric_of_ours_is_on_a_dashboard() -> None:
    queried: set[str] = set()
    for path in DASHBOARDS:
        for panel in _panels(json.loads(path.read_text())):
            for target in panel["targets"]:
                queried |= metric_names(target["expr"])
    families = histograms()
    shown = {name for name in metrics.ALL if name in queried or (
        name in families and any(f"{name}{s}" in queried for s in ("_bucket", "_sum", "_count")))}
    assert shown == set(metrics.ALL), f"not on any dashboard: {sorted(set(metrics.ALL) - shown)}"
