"""`modelplane cost --base REF`: the monthly change per resource and in total, in text, JSON and Markdown."""

import json
from pathlib import Path

import pytest

from infra.review.cost import delta as deltas
from infra.review.cost import estimate as costs
from infra.review.cost.prices import load_prices
from infra.review.graph import Graph, Resource
from tests.policies.helpers import gpu_limit_repo, modelplane

PRICES = load_prices()
HOURS = PRICES.hours_per_month
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"


def report(*resources: tuple[str, str, dict]) -> costs.CostReport:
    graph = Graph("dev", [Resource(urn=f"urn:pulumi:dev::modelplane::{t}::{n}", type=t, name=n, parent="", provider="",
                                   inputs=i) for t, n, i in resources])
    return costs.estimate(graph, PRICES)


def test_delta_lists_changed_added_and_removed_resources_and_the_total() -> None:
    before = report((REDIS, "cache", {"nodeType": "cache.r7g.large", "numCacheClusters": 2}),
                    ("aws:kms/key:Key", "old-key", {}), ("aws:eks/cluster:Cluster", "eks", {}))
    after = report((REDIS, "cache", {"nodeType": "cache.r7g.large", "numCacheClusters": 3}),
                   ("aws:ec2/natGateway:NatGateway", "nat", {}), ("aws:eks/cluster:Cluster", "eks", {}))
    found = deltas.cost_delta(before, after, base="main")
    by_name = {line.label: line.delta() for line in found.lines}
    node = PRICES.elasticache["cache.r7g.large"] * HOURS
    assert set(by_name) == {"ReplicationGroup cache", "Key old-key", "NatGateway nat"}
    assert by_name["ReplicationGroup cache"] == (pytest.approx(node), pytest.approx(node))
    assert by_name["Key old-key"] == (-PRICES.kms_key_monthly, -PRICES.kms_key_monthly)
    low, high = found.total()
    assert high is not None
    assert low == pytest.approx(after.total_min - before.total_min) and high == pytest.approx(low)
    doc = found.to_dict()
    assert doc["delta"]["max"] == round(high, 2) and doc["base"] == "main"
    removed = next(line for line in doc["lines"] if line["resource"] == "Key old-key")
    assert removed["after"] is None and removed["before"] == {"min": PRICES.kms_key_monthly, "max": PRICES.kms_key_monthly}


def test_a_stack_new_since_the_base_is_all_added() -> None:
    after = report(("aws:eks/cluster:Cluster", "eks", {}))
    found = deltas.cost_delta(None, after, base="main")
    assert found.total() == (after.total_min, after.total_max) and found.to_dict()["before"] is None


def test_signed_money() -> None:
    assert [deltas.signed(v) for v in (12, -3.5, 0.0, None)] == ["+$12.00", "-$3.50", "$0.00", "unbounded"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The program at HEAD~1, then a commit raising dev gpu-train's GPU limit 4 → 8."""
    return gpu_limit_repo(tmp_path_factory.mktemp("repo"))


def test_cost_base_shows_the_gpu_pool_delta_in_json_text_and_markdown(repo: Path) -> None:
    result = modelplane(repo, "cost", "--stack", "dev", "--base", "HEAD~1", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    [line] = doc["lines"]
    assert line["resource"] == "NodePool gpu-pool-gpu-train" and line["delta"]["max"] > 0
    assert line["before"]["min"] == line["after"]["min"] == 0, "a pool scales from zero either way"
    assert doc["delta"]["max"] == line["delta"]["max"] and doc["delta"]["min"] == 0
    assert doc["after"]["max"] == pytest.approx(doc["before"]["max"] + doc["delta"]["max"], abs=0.02)
    text = modelplane(repo, "cost", "--stack", "dev", "--base", "HEAD~1")
    assert "monthly change against HEAD~1" in text.stdout and "NodePool gpu-pool-gpu-train" in text.stdout
    assert f"+${line['delta']['max']:,.2f}" in text.stdout
    markdown = modelplane(repo, "cost", "--stack", "dev", "--base", "HEAD~1", "--markdown")
    assert markdown.stdout.startswith("**") and "| `NodePool gpu-pool-gpu-train` |" in markdown.stdout


def test_cost_base_with_an_unknown_ref_exits_2(repo: Path) -> None:
    result = modelplane(repo, "cost", "--stack", "dev", "--base", "no-such-ref")
    assert result.returncode == 2
    assert "no-such-ref" in result.stderr
