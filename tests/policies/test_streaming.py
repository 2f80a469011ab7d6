"""MSK rules: TLS only with a customer key, authenticated clients, broker logs, private brokers, three zones in
production."""

from typing import Any

import pytest

from policies.rules.streaming import (
    MSK_BROKER_LOGS,
    MSK_CLIENT_AUTH,
    MSK_ENCRYPTION,
    MSK_MULTI_AZ_PRODUCTION,
    MSK_PRIVATE,
    POLICIES,
)
from tests.policies.helpers import violations
from tests.support.graph import deep_merge

CLUSTER = "aws:msk/cluster:Cluster"
SECURE: dict[str, Any] = {
    "numberOfBrokerNodes": 3,
    "brokerNodeGroupInfo": {"clientSubnets": ["subnet-a", "subnet-b", "subnet-c"],
                            "connectivityInfo": {"publicAccess": {"type": "DISABLED"}}},
    "clientAuthentication": {"sasl": {"iam": True, "scram": False}, "unauthenticated": False},
    "encryptionInfo": {"encryptionAtRestKmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/k",
                       "encryptionInTransit": {"clientBroker": "TLS", "inCluster": True}},
    "loggingInfo": {"brokerLogs": {"cloudwatchLogs": {"enabled": True, "logGroup": "/aws/msk/c"}}},
}


def _with(changes: dict[str, Any]) -> dict[str, Any]:
    return deep_merge(SECURE, changes)


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_production_shaped_msk_complies(policy) -> None:  # type: ignore[no-untyped-def]
    assert violations(policy, CLUSTER, SECURE, production=True) == []


@pytest.mark.parametrize(("changes", "part"), [
    ({"encryptionInfo": {"encryptionInTransit": {"clientBroker": "TLS_PLAINTEXT"}}}, "client_broker TLS_PLAINTEXT"),
    ({"encryptionInfo": {"encryptionInTransit": {"clientBroker": "PLAINTEXT"}}}, "client_broker PLAINTEXT"),
    ({"encryptionInfo": {"encryptionInTransit": {"inCluster": False}}}, "in_cluster false"),
    ({"encryptionInfo": {"encryptionAtRestKmsKeyArn": None}}, "AWS-managed key"),
])
def test_plaintext_or_aws_keyed_msk_is_reported(changes: dict[str, Any], part: str) -> None:
    found = violations(MSK_ENCRYPTION, CLUSTER, _with(changes), name="streaming-kafka")
    assert len(found) == 1 and part in found[0] and "streaming-kafka" in found[0] and "Fix:" in found[0]


def test_msk_transit_defaults_count_as_tls() -> None:
    props = _with({"encryptionInfo": {"encryptionInTransit": None}})
    assert violations(MSK_ENCRYPTION, CLUSTER, props) == []


@pytest.mark.parametrize(("changes", "part"), [
    ({"clientAuthentication": None}, "unauthenticated access on"),
    ({"clientAuthentication": {"unauthenticated": True}}, "unauthenticated access on"),
    ({"clientAuthentication": {"sasl": {"iam": False}}}, "no SASL/IAM, SCRAM or TLS client auth"),
])
def test_msk_without_client_auth_is_reported(changes: dict[str, Any], part: str) -> None:
    found = violations(MSK_CLIENT_AUTH, CLUSTER, _with(changes))
    assert len(found) == 1 and part in found[0]


@pytest.mark.parametrize("auth", [{"sasl": {"scram": True}}, {"tls": {"certificateAuthorityArns": ["arn:ca"]}}])
def test_scram_or_mutual_tls_count_as_client_auth(auth: dict[str, Any]) -> None:
    assert violations(MSK_CLIENT_AUTH, CLUSTER, {**SECURE, "clientAuthentication": auth}) == []


@pytest.mark.parametrize("logging", [None, {"brokerLogs": {"cloudwatchLogs": {"enabled": False}}}])
def test_msk_without_broker_logs_is_reported(logging: Any) -> None:
    found = violations(MSK_BROKER_LOGS, CLUSTER, {**SECURE, "loggingInfo": logging})
    assert len(found) == 1 and "keeps no broker logs" in found[0]


def test_broker_logs_to_s3_count() -> None:
    props = {**SECURE, "loggingInfo": {"brokerLogs": {"s3": {"enabled": True, "bucket": "b"}}}}
    assert violations(MSK_BROKER_LOGS, CLUSTER, props) == []


def test_public_msk_is_reported() -> None:
    props = _with({"brokerNodeGroupInfo": {"connectivityInfo": {"publicAccess": {"type": "SERVICE_PROVIDED_EIPS"}}}})
    found = violations(MSK_PRIVATE, CLUSTER, props)
    assert len(found) == 1 and "SERVICE_PROVIDED_EIPS" in found[0]


def test_two_zone_msk_is_reported_in_production_only() -> None:
    props = _with({"numberOfBrokerNodes": 2, "brokerNodeGroupInfo": {"clientSubnets": ["subnet-a", "subnet-b"]}})
    assert violations(MSK_MULTI_AZ_PRODUCTION, CLUSTER, props, production=False) == []
    found = violations(MSK_MULTI_AZ_PRODUCTION, CLUSTER, props, production=True)
    assert len(found) == 1 and "spans 2 zones with 2 brokers" in found[0] and "zones: 3" in found[0]


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.name)
def test_rules_ignore_other_resources(policy) -> None:  # type: ignore[no-untyped-def]
    assert violations(policy, "aws:elasticache/replicationGroup:ReplicationGroup", {}, production=True) == []
