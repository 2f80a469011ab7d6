"""Pulumi entry point: build the platform from this stack's config."""

import pulumi

from infra.config.parse import from_pulumi_runtime
from infra.program import build

build(from_pulumi_runtime(pulumi.get_stack()))
