"""Logging rules: log groups expire and use a KMS key; OpenSearch domains are private and encrypted."""

import pytest
from pulumi_policy import EnforcementLevel

from infra.review.policy import evaluate
from policies.rules.logging import LOG_GROUP_KMS, LOG_GROUP_RETENTION, OPENSEARCH_PRIVATE_ENCRYPTED
from tests.policies.helpers import violations

GROUP = "aws:cloudwatch/logGroup:LogGroup"
DOMAIN = "aws:opensearch/domain:Domain"
GOOD_GROUP = {"name": "/modelplane/dev/inference", "retentionInDays": 30,
              "kmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/abc"}
GOOD_DOMAIN = {"vpcOptions": {"subnetIds": ["subnet-a"], "securityGroupIds": ["sg-1"]},
               "encryptAtRest": {"enabled": True}, "nodeToNodeEncryption": {"enabled": True},
               "domainEndpointOptions": {"enforceHttps": True}}


def test_a_good_log_group_and_domain_comply() -> None:
    assert violations(LOG_GROUP_RETENTION, GROUP, GOOD_GROUP) == []
    assert violations(LOG_GROUP_KMS, GROUP, GOOD_GROUP) == []
    assert violations(OPENSEARCH_PRIVATE_ENCRYPTED, DOMAIN, GOOD_DOMAIN) == []


@pytest.mark.parametrize("retention", [None, 0])
def test_a_log_group_that_never_expires_is_reported(retention) -> None:
    found = violations(LOG_GROUP_RETENTION, GROUP, {**GOOD_GROUP, "retentionInDays": retention}, name="logs-x")
    assert len(found) == 1 and "logs-x" in found[0] and "retention_in_days" in found[0]


def test_a_log_group_without_kms_is_reported() -> None:
    props = {k: v for k, v in GOOD_GROUP.items() if k != "kmsKeyId"}
    found = violations(LOG_GROUP_KMS, GROUP, props, name="logs-x")
    assert len(found) == 1 and "kms_key_id" in found[0]


def test_a_public_unencrypted_domain_is_reported_with_every_problem() -> None:
    found = violations(OPENSEARCH_PRIVATE_ENCRYPTED, DOMAIN, {"domainEndpointOptions": {"enforceHttps": False}},
                       name="search")
    assert len(found) == 1
    for part in ("public endpoint", "encrypt_at_rest is off", "node_to_node_encryption is off", "enforce_https is off"):
        assert part in found[0]


@pytest.mark.parametrize("key", ["encryptAtRest", "nodeToNodeEncryption"])
def test_each_missing_encryption_is_reported(key) -> None:
    found = violations(OPENSEARCH_PRIVATE_ENCRYPTED, DOMAIN, {**GOOD_DOMAIN, key: {"enabled": False}})
    assert len(found) == 1


def test_rules_ignore_other_resource_types() -> None:
    assert violations(OPENSEARCH_PRIVATE_ENCRYPTED, GROUP, {}) == []
    assert violations(LOG_GROUP_RETENTION, DOMAIN, {}) == []


def test_real_prod_stack_passes_the_logging_rules(stack_graph) -> None:
    prod = stack_graph("prod")
    rules = {LOG_GROUP_RETENTION.name, LOG_GROUP_KMS.name, OPENSEARCH_PRIVATE_ENCRYPTED.name}
    assert [v for v in evaluate(prod, production=True) if v.rule in rules] == []
    # Every log group of the stack is checked, the EKS control plane's and the flow logs' included.
    assert {"cluster-control-plane", "network-flow-logs"} <= {r.name for r in prod.of_type(GROUP)}


def test_kms_on_log_groups_is_mandatory_and_non_production_stacks_pass_it(stack_graph) -> None:
    # Mandatory, so the config has no switch to turn the logs' key off (modelplane:logging.kms is an unknown key).
    assert LOG_GROUP_KMS.enforcement_level == EnforcementLevel.MANDATORY
    dev = stack_graph("dev")
    assert [v for v in evaluate(dev) if v.rule == LOG_GROUP_KMS.name] == []
    assert any("modelplane:logging:LogStore$" in r.urn for r in dev.of_type(GROUP))
