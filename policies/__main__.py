"""The CrossGuard entry point: `pulumi preview|up --policy-pack policies` runs this file.

It only assembles the PolicyPack; constructing one starts the analyzer's gRPC server and
blocks, so nothing else (tests, the CLI) may import this module.
"""

import sys
from pathlib import Path

# Pulumi runs this file with policies/ itself first on sys.path; the pack's modules import each other as
# `policies.*` (the names the offline adapter uses too), so the folder holding the pack must be importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policies.rules import ALL_POLICIES

PolicyPack(
    name="modelplane",
    policies=list(ALL_POLICIES),
    enforcement_level=EnforcementLevel.ADVISORY,
    description="modelplane guardrails: security, reliability and cost rules for the ML platform.",
    tags=["aws", "eks", "kubernetes", "ml"],
)
