"""On aws, each workload that signs AWS calls is registered after its WorkloadIdentity: a pod admitted before its
EKS Pod Identity association exists never gets credentials (the webhook only injects them at admission)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.review import engine
from infra.review.engine import render


@pytest.fixture(scope="module")
def prod_dependencies() -> dict[str, list[str]]:
    """The explicit dependencies of each registration of the prod stack, by `type::name`."""
    recorded: dict[str, list[str]] = {}
    register = engine._RecordingMonitor.RegisterResource

    def recording(self: Any, request: Any) -> Any:
        recorded[f"{request.type}::{request.name}"] = list(request.dependencies)
        return register(self, request)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(engine._RecordingMonitor, "RegisterResource", recording)
        render("prod")
    return recorded


@pytest.mark.parametrize(("component", "identity"), [
    ("modelplane:streaming:KafkaTopics::kafka-topics", "kafka-topics"),
    ("modelplane:recommend:StreamProcessor::recommend-processor", "recommend-processor"),
    ("modelplane:logging:LogShipper::logging", "log-shipper"),
])
def test_aws_workloads_wait_for_their_pod_identity_association(prod_dependencies: dict[str, list[str]],
                                                                component: str, identity: str) -> None:
    dependencies = prod_dependencies[component]
    association = f"aws:eks/podIdentityAssociation:PodIdentityAssociation::{identity}-association"
    assert any(urn.endswith(association) for urn in dependencies), dependencies
