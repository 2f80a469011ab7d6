"""EKS rules: endpoint allowlist, secrets encryption, control-plane logging."""

import pytest

from policies.rules.eks import EKS_CONTROL_PLANE_LOGGING, EKS_ENDPOINT_ALLOWLIST, EKS_SECRETS_ENCRYPTION
from tests.policies.helpers import violations

CLUSTER = "aws:eks/cluster:Cluster"
COMPLIANT = {
    "vpcConfig": {"endpointPrivateAccess": True, "endpointPublicAccess": False},
    "encryptionConfig": {"provider": {"keyArn": "arn:aws:kms:us-east-1:1:key/k"}, "resources": ["secrets"]},
    "enabledClusterLogTypes": ["api", "audit", "authenticator"],
}


@pytest.mark.parametrize("policy", [EKS_ENDPOINT_ALLOWLIST, EKS_SECRETS_ENCRYPTION, EKS_CONTROL_PLANE_LOGGING])
def test_hardened_cluster_complies(policy) -> None:
    assert violations(policy, CLUSTER, COMPLIANT) == []


def test_public_endpoint_with_an_allowlist_complies() -> None:
    props = {**COMPLIANT, "vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]}}
    assert violations(EKS_ENDPOINT_ALLOWLIST, CLUSTER, props) == []


@pytest.mark.parametrize("vpc", [
    {"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]},
    {"endpointPublicAccess": True},
    {},  # EKS defaults: public, open to 0.0.0.0/0
])
def test_public_endpoint_open_to_the_internet_is_reported(vpc) -> None:
    found = violations(EKS_ENDPOINT_ALLOWLIST, CLUSTER, {**COMPLIANT, "vpcConfig": vpc}, name="cluster-eks")
    assert len(found) == 1 and "cluster-eks" in found[0] and "0.0.0.0/0" in found[0]


@pytest.mark.parametrize("encryption", [None, {"provider": {"keyArn": "arn"}, "resources": []},
                                        {"resources": ["secrets"]}])
def test_unencrypted_secrets_are_reported(encryption) -> None:
    found = violations(EKS_SECRETS_ENCRYPTION, CLUSTER, {**COMPLIANT, "encryptionConfig": encryption})
    assert len(found) == 1 and "encryption_config" in found[0]


def test_missing_audit_log_is_reported() -> None:
    found = violations(EKS_CONTROL_PLANE_LOGGING, CLUSTER, {**COMPLIANT, "enabledClusterLogTypes": ["api"]})
    assert len(found) == 1 and "audit, authenticator" in found[0]


def test_required_log_types_are_configurable() -> None:
    props = {**COMPLIANT, "enabledClusterLogTypes": ["api", "audit", "authenticator"]}
    found = violations(EKS_CONTROL_PLANE_LOGGING, CLUSTER, props, config={"requiredLogTypes": ["scheduler"]})
    assert len(found) == 1 and "scheduler" in found[0]


def test_other_types_are_ignored() -> None:
    assert violations(EKS_ENDPOINT_ALLOWLIST, "aws:eks/nodeGroup:NodeGroup", {}) == []
