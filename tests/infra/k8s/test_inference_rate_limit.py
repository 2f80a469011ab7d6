"""The gateway's per-key rate limit as rendered for the runtimes behind it (vllm, recommend): off unless the service
sets rateLimitRps, since the generated key is one key shared by every client."""

from collections.abc import Callable
from typing import Any

import pytest

from infra.review.graph import Graph
from tests.infra.k8s import test_inference_recommend as recommend_case
from tests.infra.k8s import test_inference_vllm as vllm_case
from workloads.gateway.settings import GatewaySettings, env_name

RENDERS: dict[str, tuple[Callable[..., Graph], str]] = {
    "vllm": (vllm_case._render, "chat-stable"), "recommend": (recommend_case._render, "recs-stable")}
"""Each gated runtime's render helper and its gateway's Deployment."""


def _gateway(runtime: str, **overrides: Any) -> GatewaySettings:
    """The gateway's settings as its rendered env gives them (upstream and keys are the render's own)."""
    render, deployment = RENDERS[runtime]
    graph = render(**overrides)
    (container,) = graph.one(vllm_case.DEPLOYMENT, deployment).inputs["spec"]["template"]["spec"]["containers"]
    # The Secret files exist only in the pod: this checks the rest, as an open gateway.
    files = {env_name("api_keys_file"), env_name("redis_url_file")}
    env = {e["name"]: e["value"] for e in container["env"] if e["name"] not in files}
    return GatewaySettings.parse([], {**env, env_name("allow_anonymous"): "true"})


@pytest.mark.parametrize("runtime", sorted(RENDERS))
def test_a_service_sharing_the_generated_key_is_not_capped_by_the_gateways_own_default(runtime: str) -> None:
    # Without the rendered 0 the gateway's default (10/s per key, per replica) would cap the whole service.
    settings = _gateway(runtime)
    assert settings.rate_limit_rps == 0


@pytest.mark.parametrize("runtime", sorted(RENDERS))
def test_a_set_rate_limit_reaches_the_gateway_with_its_bucket(runtime: str) -> None:
    derived, given = _gateway(runtime, rateLimitRps=25), _gateway(runtime, rateLimitRps=2.5, rateLimitBurst=3)
    assert (derived.rate_limit_rps, derived.rate_limit_burst) == (25, 50)
    assert (given.rate_limit_rps, given.rate_limit_burst) == (2.5, 3)
