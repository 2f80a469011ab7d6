"""Ingress routes: each service answers under its own host and prefix, and two services whose routes overlap on one
host are a config error naming both; the rendered VirtualService carries the configured host and prefix."""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import render_variant, stack_config_with

LM = {"name": "lm", "model": "lm-small", "minReplicas": 1, "maxReplicas": 2}
DIGITS = {"name": "digits", "runtime": "tf-serving", "model": "digits-cnn", "minReplicas": 1, "maxReplicas": 2}
FIX = ("Istio does not order merged routes by prefix length, so which service answers would depend on creation "
       "order. Give each service its own host or a disjoint prefix (ingress.host, ingress.pathPrefix)")


def _issues(services: list[dict[str, Any]]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", {"modelplane:inference": {"services": services}}))
    return [str(issue) for issue in info.value.issues]


def test_two_services_at_the_root_of_one_host_are_rejected_naming_both() -> None:
    # The audit's case: lm on /v1/ and digits on /v1/models/, both on host "*".
    issues = _issues([{**LM, "ingress": {"pathPrefix": ""}}, {**DIGITS, "ingress": {"pathPrefix": ""}}])
    assert issues == [f"modelplane:inference.services[1].ingress: route /v1/models/ of 'digits' overlaps route /v1/ of "
                      f"'lm' (services[0]) on host '*'; {FIX}"]


def test_a_prefix_that_claims_another_services_path_overlaps() -> None:
    # digits under /lm serves /lm/v1/models/..., which lm's default /lm/v1/ route also matches.
    issues = _issues([LM, {**DIGITS, "ingress": {"pathPrefix": "/lm"}}])
    assert issues == [f"modelplane:inference.services[1].ingress: route /lm/v1/models/ of 'digits' overlaps route "
                      f"/lm/v1/ of 'lm' (services[0]) on host '*'; {FIX}"]


@pytest.mark.parametrize("ingress", [
    ({"host": "lm.example.com", "pathPrefix": ""}, {"host": "digits.example.com", "pathPrefix": ""}),
    ({"pathPrefix": ""}, {"host": "digits.example.com", "pathPrefix": ""}),
    ({}, {}),
], ids=["own hosts", "one on the wildcard host", "default per-service prefixes"])
def test_services_on_their_own_host_or_prefix_pass(ingress: tuple[dict[str, str], dict[str, str]]) -> None:
    raw = stack_config_with("dev", {"modelplane:inference": {"services": [
        {**LM, "ingress": ingress[0]}, {**DIGITS, "ingress": ingress[1]}]}})
    assert [s.name for s in parse_config("dev", raw).inference.services] == ["lm", "digits"]


@pytest.mark.parametrize(("ingress", "key", "fragment"), [
    ({"host": "LM.example.com"}, "host", "String should match pattern"),
    ({"pathPrefix": "lm/"}, "pathPrefix", "String should match pattern"),
])
def test_a_malformed_host_or_prefix_is_rejected(ingress: dict[str, str], key: str, fragment: str) -> None:
    issues = _issues([{**LM, "ingress": ingress}])
    assert any(i.startswith(f"modelplane:inference.services[0].ingress.{key}: {fragment}") for i in issues), issues


def test_the_virtual_service_answers_on_the_configured_host_and_prefix() -> None:
    graph = render_variant("dev", {"modelplane:inference": {"services": [
        {**LM, "ingress": {"host": "lm.example.com", "pathPrefix": ""}}, DIGITS]}})
    specs = {r.name: r.inputs["spec"] for r in graph.kubernetes_objects() if r.inputs.get("kind") == "VirtualService"
             and r.name in ("lm-vs", "digits-vs")}
    assert specs["lm-vs"]["hosts"] == ["lm.example.com"]
    assert [(h["match"][0]["uri"]["prefix"], h["rewrite"]["uri"]) for h in specs["lm-vs"]["http"]] == [
        ("/v1/", "/v1/"), ("/v2/", "/v2/")]
    assert specs["digits-vs"]["hosts"] == ["*"]
    assert [(h["match"][0]["uri"]["prefix"], h["rewrite"]["uri"]) for h in specs["digits-vs"]["http"]] == [
        ("/digits/v1/models/", "/v1/models/")]
