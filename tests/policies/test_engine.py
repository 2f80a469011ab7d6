"""The offline engine runs the rule objects as CrossGuard would, with the same config semantics."""

import pytest
from pulumi_policy import EnforcementLevel

from infra.review.policy import Violation, enforcement_level, evaluate, rule_config
from policies.rules.cost import GPU_BUDGET, GPU_SPOT_NONPRODUCTION, REQUIRED_TAGS
from policies.rules.s3 import S3_VERSIONING_PRODUCTION
from tests.policies.helpers import Res, graph, urn

UNTAGGED = Res("aws:ec2/vpc:Vpc", "network-vpc", {"cidrBlock": "10.0.0.0/16"})
BUCKET = Res("aws:s3/bucket:Bucket", "logs", {"tags": {"environment": "dev", "owner": "o", "cost-center": "c"}})


def test_violations_carry_level_rule_urn_and_message() -> None:
    found = evaluate(graph("dev", [UNTAGGED]), policies=[REQUIRED_TAGS])
    assert found == [Violation("mandatory", "required-tags", urn(UNTAGGED.type, UNTAGGED.name), found[0].message)]
    assert "Fix:" in found[0].message


def test_enforcement_level_comes_from_the_config_then_all_then_the_rule() -> None:
    assert enforcement_level(REQUIRED_TAGS, {}) == EnforcementLevel.MANDATORY
    assert enforcement_level(REQUIRED_TAGS, {"all": "advisory"}) == EnforcementLevel.ADVISORY
    assert enforcement_level(REQUIRED_TAGS, {"all": "advisory", "required-tags": {"enforcementLevel": "mandatory"}}) \
        == EnforcementLevel.MANDATORY


def test_disabled_rules_do_not_run() -> None:
    assert evaluate(graph("dev", [UNTAGGED]), {"required-tags": "disabled"}, policies=[REQUIRED_TAGS]) == []


def test_downgraded_rules_report_as_advisory() -> None:
    found = evaluate(graph("dev", [UNTAGGED]), {"required-tags": {"enforcementLevel": "advisory"}},
                     policies=[REQUIRED_TAGS])
    assert [v.level for v in found] == ["advisory"]


def test_rule_config_overlays_the_config_file_on_schema_defaults() -> None:
    assert rule_config(REQUIRED_TAGS, {}) == {"requiredTags": ["environment", "owner", "cost-center"]}
    assert rule_config(REQUIRED_TAGS, {"required-tags": {"requiredTags": ["team"], "enforcementLevel": "advisory"}}) \
        == {"requiredTags": ["team"]}


def test_rule_properties_from_the_config_reach_the_rule() -> None:
    found = evaluate(graph("dev", [BUCKET]), {"required-tags": {"requiredTags": ["team"]}}, policies=[REQUIRED_TAGS])
    assert len(found) == 1 and "team" in found[0].message


@pytest.mark.parametrize(("stack", "production", "expected"), [
    ("prod", None, 1),   # stack config silent: the name decides
    ("prod", False, 0),  # modelplane:production: false wins over the name
    ("live", True, 1),   # modelplane:production: true makes any stack production
    ("dev", None, 0),
])
def test_production_comes_from_the_stack_config_then_the_stack_name(stack, production, expected) -> None:
    found = evaluate(graph(stack, [BUCKET]), production=production, policies=[S3_VERSIONING_PRODUCTION])
    assert len(found) == expected


def test_stack_rules_see_the_stack_name() -> None:
    pool = Res("kubernetes:karpenter.sh/v1:NodePool", "gpu", {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpu"},
        "spec": {"limits": {"nvidia.com/gpu": 24}, "template": {"spec": {"requirements": []}}}})
    assert evaluate(graph("staging", [pool]), policies=[GPU_BUDGET]) == []
    found = evaluate(graph("dev", [pool]), policies=[GPU_BUDGET])
    assert len(found) == 1 and found[0].urn == "" and "'dev'" in found[0].message


def test_advisory_rules_stay_advisory() -> None:
    pool = Res("kubernetes:karpenter.sh/v1:NodePool", "gpu", {
        "apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpu"},
        "spec": {"limits": {"nvidia.com/gpu": 2}, "template": {"spec": {
            "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}]}}}})
    assert [v.level for v in evaluate(graph("dev", [pool]), policies=[GPU_SPOT_NONPRODUCTION])] == ["advisory"]


def test_violations_sort_mandatory_first() -> None:
    a = Violation("advisory", "b", "u", "m")
    m = Violation("mandatory", "a", "u", "m")
    assert sorted([m, a]) == [a, m] and sorted([m, a], key=lambda v: v.level != "mandatory")[0] == m
