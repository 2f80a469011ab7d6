"""The ingress routes of inference services, and the rule that no two services claim the same requests.

Every service's VirtualService binds the one ingress gateway. Istio merges the VirtualServices of one host into one
route table in creation order, not by prefix length (istio/istio#10464; "Split large virtual services and
destination rules into multiple resources" in Istio's traffic-management best practices), so of two services whose
prefixes overlap on a host, which one answers depends on which was created first. Envoy picks the most specific
host first, so routes on different hosts (`*` included) never compete.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, NamedTuple

from pydantic import Field

from infra.config.base import Section
from infra.config.errors import ConfigIssue
from infra.config.issues import NAMESPACE
from workloads.common.vocab import RECOMMENDATIONS_ROUTE

RUNTIME_PATHS: Final = {"modelplane-serve": ("/v1/", "/v2/"), "tf-serving": ("/v1/models/",), "vllm": ("/v1/",),
                        "recommend": (RECOMMENDATIONS_ROUTE,)}
"""The API paths of each runtime that the ingress exposes; nothing else of a service is reachable from outside."""


class IngressConfig(Section):
    """Where a service answers on the ingress gateway."""

    host: str = Field(default="*", pattern=r"^(\*|(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*)$")
    """Host the service answers for, e.g. lm.example.com. Defaults to * (every host)."""
    path_prefix: str | None = Field(default=None, pattern=r"^(/[A-Za-z0-9._~-]+)*$")
    """Path the runtime's API paths are served under (stripped before the service sees it). Defaults to /<service
    name>. Valid values: '' (the API at the root: give the service its own host) or /segment[/segment...]."""


class Route(NamedTuple):
    """One ingress route of a service."""

    host: str
    """The host it answers for."""
    prefix: str
    """The request path prefix it matches (Istio `uri.prefix`)."""
    rewrite: str
    """The runtime's path the prefix is rewritten to."""


def routes_for(name: str, runtime: str, ingress: IngressConfig) -> list[Route]:
    """The ingress routes of service `name`: each of its runtime's API paths under its path prefix, on its host."""
    base = f"/{name}" if ingress.path_prefix is None else ingress.path_prefix
    return [Route(ingress.host, f"{base}{path}", path) for path in RUNTIME_PATHS[runtime]]


def route_overlap_issues(services: Sequence[tuple[str, list[Route]]]) -> list[ConfigIssue]:
    """One issue per pair of `modelplane:inference.services` entries (name, routes) with routes on one host where one
    prefix starts the other (Istio's prefix match is a plain string prefix)."""
    issues = []
    for i, (name, routes) in enumerate(services):
        for j, (other, their_routes) in enumerate(services[:i]):
            clash = next(((ours, theirs) for ours in routes for theirs in their_routes
                          if ours.host == theirs.host and (ours.prefix.startswith(theirs.prefix)
                                                           or theirs.prefix.startswith(ours.prefix))), None)
            if clash is None:
                continue
            ours, theirs = clash
            issues.append(ConfigIssue(f"{NAMESPACE}:inference.services[{i}].ingress", (
                f"route {ours.prefix} of {name!r} overlaps route {theirs.prefix} of {other!r} "
                f"(services[{j}]) on host {ours.host!r}; Istio does not order merged routes by prefix length, so "
                "which service answers would depend on creation order. Give each service its own host or a "
                "disjoint prefix (ingress.host, ingress.pathPrefix)")))
    return issues
