"""Every `vllm:` series the alert rules, the dashboards and the HPA's adapter rule read exists on a real vLLM.

vLLM's metric names are not ours and were renamed across releases (gpu_cache_usage_perc became
kv_cache_usage_perc, time_per_output_token_seconds became inter_token_latency_seconds): this scrapes the CPU vLLM
the suite serves (`vllm` fixture, the same 0.31.0 release the platform deploys) after one completion, so its
histograms and labelled counters have samples, and fails on any referenced name it does not export.
"""

from __future__ import annotations

import json

import httpx
from openai import OpenAI
from prometheus_client.parser import text_string_to_metric_families

from infra.k8s.observability import DASHBOARDS_DIR, load_rule_files
from tests.infra.k8s.test_dashboards import histograms, metric_names
from tests.support.vllm import VllmServer
from workloads.common import metrics


def _referenced() -> dict[str, set[str]]:
    """Where each `vllm:` name is read: alert rules, dashboard panels, the HPA's adapter rule, metrics.py."""
    out: dict[str, set[str]] = {}

    def add(names: set[str], where: str) -> None:
        for name in names:
            if name.startswith("vllm:"):
                out.setdefault(name, set()).add(where)

    for stem, groups in load_rule_files().items():
        for group in groups:
            for rule in group["rules"]:
                add(metric_names(rule["expr"]), f"rules/{stem}.yaml {rule.get('alert') or rule.get('record')}")
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        board = json.loads(path.read_text())
        for panel in board["panels"]:
            for target in panel.get("targets", []):
                add(metric_names(target["expr"]), f"dashboards/{path.name} {panel['title']!r}")
        for variable in board["templating"]["list"]:
            if isinstance(variable.get("query"), dict):
                add(metric_names(variable["query"]["query"].removeprefix("label_values(")), f"{path.name} variables")
    add({metrics.VLLM_REQUESTS_WAITING}, "the HPA's prometheus-adapter rule")
    add({value for value in metrics.ALL if value.startswith("vllm:")}, "workloads/common/metrics.py")
    return out


def test_the_rules_and_dashboards_read_vllm_series_at_all() -> None:
    referenced = _referenced()
    assert any(where.startswith("rules/") for wheres in referenced.values() for where in wheres)
    assert any(where.startswith("dashboards/") for wheres in referenced.values() for where in wheres)


def test_every_referenced_vllm_series_exists_on_a_real_vllm(vllm: VllmServer) -> None:
    client = OpenAI(base_url=f"{vllm.base_url}/v1", api_key="unused")
    completion = client.completions.create(model=vllm.model, prompt="The platform", max_tokens=8, temperature=0)
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    text = httpx.get(f"{vllm.base_url}/metrics", timeout=10.0).text
    exported = {sample.name for family in text_string_to_metric_families(text) for sample in family.samples}
    # metrics.py declares a histogram by its family name; its series are _bucket, _sum and _count.
    families = histograms()
    missing = {name: sorted(where) for name, where in _referenced().items()
               if name not in exported and not (name in families and all(
                   f"{name}{suffix}" in exported for suffix in ("_bucket", "_sum", "_count")))}
    assert not missing, (f"referenced vLLM series the real vLLM does not export: {missing}\n"
                         f"it exports: {sorted(n for n in exported if n.startswith('vllm:'))}")
