"""Helm: every chart from a repository is pinned to one exact version (the chart analogue of image pinning)."""

from __future__ import annotations

import re
from typing import Final

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies.rules.mesh import HELM_TYPES

_EXACT_VERSION: Final = re.compile(r"^v?[0-9]+\.[0-9]+\.[0-9]+([-+][0-9A-Za-z.-]+)?$")


def _validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in HELM_TYPES:
        return
    chart = str(args.props.get("chart") or "")
    if chart.startswith((".", "/")):
        return  # a chart in this repository is pinned by the commit
    version = str(args.props.get("version") or "")
    if not _EXACT_VERSION.match(version):
        report(f"Helm release '{args.name}' installs chart {chart!r} at version {version or '(latest)'!r}, so a "
               f"chart release changes the cluster without a diff. Fix: set an exact version (pin it in "
               f"infra/versions.py).", args.urn)


HELM_CHART_PINNED = ResourceValidationPolicy(
    name="helm-chart-pinned",
    description="Helm releases pin an exact chart version (no ranges, no latest).",
    validate=_validate, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://helm.sh/docs/chart_best_practices/dependencies/#versions",
)

POLICIES: Final = (HELM_CHART_PINNED,)
"""The Helm rules."""
