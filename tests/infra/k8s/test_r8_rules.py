"""Rules and dashboards judge only user traffic: every selector of a per-request series names its routes (review R8).

Probes and scrapes hit the same servers: /v2/health/ready answers 503 while a pod loads or drains, and the gateway's
and recommendation service's /health and /metrics are counted too. A selector without a route matcher mixes them in.
"""

from __future__ import annotations

import json
import re

import pytest

from infra.k8s.observability import DASHBOARDS_DIR, load_rule_files
from workloads.common import metrics

PER_REQUEST = {
    metrics.INFERENCE_REQUESTS_TOTAL, f"{metrics.INFERENCE_REQUEST_DURATION}_bucket",
    metrics.GATEWAY_REQUESTS_TOTAL, f"{metrics.GATEWAY_REQUEST_DURATION}_bucket",
    metrics.RECOMMEND_REQUESTS_TOTAL, f"{metrics.RECOMMEND_REQUEST_DURATION}_bucket",
}
USER_ROUTES = 'route=~"/v1/.*"'
"""A matcher keeping only the OpenAI routes; otherwise a `route!~` matcher must leave out scrapes and probes."""
NOT_USER = ("/metrics", "/v2/health/ready", "/v2/health/live")
"""Routes a `route!~` matcher must exclude to count as a user-route filter."""


def _user_routes_only(matcher: str) -> bool:
    """True for a matcher that keeps scrapes and probes out: `route=~"/v1/.*"`, or `route!~"RE"` with RE matching
    every route of NOT_USER (Prometheus regexes are fully anchored)."""
    if matcher == USER_ROUTES:
        return True
    excluded = re.fullmatch(r'route!~"(.*)"', matcher)
    return excluded is not None and all(re.fullmatch(excluded.group(1), route) for route in NOT_USER)


def _queries() -> list[tuple[str, str]]:
    out = [(f"rule {rule['alert']}", rule["expr"]) for groups in load_rule_files().values() for group in groups
           for rule in group["rules"] if "alert" in rule]
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out += [(f"{path.stem} / {panel['title']}", target["expr"]) for target in panel.get("targets", [])]
    return out


def unfiltered_selectors(expr: str) -> list[str]:
    """The selectors of per-request series in `expr` that carry no user-route matcher."""
    found = []
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?", expr):
        if match.group(1) in PER_REQUEST:
            matchers = {m.strip() for m in (match.group(2) or "{}")[1:-1].split(",")}
            if not any(_user_routes_only(matcher) for matcher in matchers):
                found.append(match.group(0))
    return found


def test_the_check_sees_a_selector_without_a_route_matcher() -> None:
    expr = ('sum(rate(modelplane_inference_requests_total{status=~"5.."}[5m])) / '
            'sum(rate(modelplane_inference_requests_total{route!~"/metrics|/v2/health/.*"}[5m]))')
    assert unfiltered_selectors(expr) == ['modelplane_inference_requests_total{status=~"5.."}']
    assert unfiltered_selectors("rate(modelplane_gateway_requests_total[5m])") == ["modelplane_gateway_requests_total"]


@pytest.mark.parametrize(("where", "expr"), _queries(), ids=[w for w, _ in _queries()])
def test_per_request_series_are_filtered_to_user_routes(where: str, expr: str) -> None:
    assert unfiltered_selectors(expr) == [], f"{where}: probes and scrapes count as user requests"
