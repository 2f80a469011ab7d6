"""Stack config for our container images: `modelplane:registry` (ECR repositories and images by digest).

Each aws stack declares one ECR repository per image in images/ (`modelplane/<stack>/<image>`), and its workloads
pull from there: by digest when images/digests.json records one (written by .github/workflows/images.yml), else
at the release tag. `requireDigest` (on in prod) turns a missing digest into a config error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final

from pydantic import Field, ValidationError

from infra import versions
from infra.config.base import Section
from infra.config.errors import ConfigIssue
from infra.config.issues import key_path, pydantic_issues

ACCOUNT_ID: Final = re.compile(r"^\d{12}$")
"""An AWS account id: twelve digits."""


class RegistryConfig(Section):
    """`modelplane:registry`: the stack's ECR repositories and how its workloads name our images."""

    account_id: str | None = None
    """The 12-digit AWS account of the stack (its ECR registry host). Required when the stack runs our images."""
    require_digest: bool = False
    """Every image of ours must be pulled by a digest recorded in images/digests.json. Defaults to false; prod sets
    true."""
    keep_tagged_images: int = Field(default=30, ge=1, le=1000)
    """Unpinned builds (`sha-<commit>` tags) the lifecycle policy keeps per repository; older ones expire. An image
    images/digests.json on main pins is tagged `pinned-` by the images workflow and never expires. Defaults to 30."""
    untagged_expiry_days: int = Field(default=7, ge=1, le=365)
    """Days before an untagged image (a build cache or orphaned layer set) expires. Defaults to 7."""
    kms_deletion_window_days: int = Field(default=30, ge=7, le=30)
    """Waiting period before the repositories' KMS key is deleted. Defaults to 30. Valid: 7 to 30."""

    def checks(self, runs_our_images: bool, digests: Mapping[str, str]) -> list[tuple[str, str]]:
        """An account id when workloads need the registry host; with requireDigest, a digest for every image."""
        problems = []
        if self.account_id is not None and not ACCOUNT_ID.match(self.account_id):
            problems.append(("accountId", f"must be a 12-digit AWS account id (got {self.account_id!r})"))
        elif self.account_id is None and runs_our_images:
            problems.append(("accountId", "is required when the stack runs modelplane images (training.jobs, "
                                          "inference.services or recommend) (got none); set it to the stack's "
                                          "12-digit AWS account id, whose ECR registry holds the images"))
        if self.require_digest:
            for name in versions.MODELPLANE_IMAGES:
                if name not in digests:
                    problems.append(("requireDigest", f"image {name!r} has no digest in images/digests.json; run "
                                                      "the images workflow (.github/workflows/images.yml) on main "
                                                      "so it records one, or set requireDigest: false"))
        return problems


def parse_registry(value: object, *, runs_our_images: bool, issues: list[ConfigIssue]) -> RegistryConfig | None:
    """`modelplane:registry` of an aws stack, checked against the digests images/digests.json records."""
    try:
        registry = RegistryConfig.model_validate(value)
    except ValidationError as exc:
        issues.extend(pydantic_issues("registry", RegistryConfig, exc, ()))
        return None
    try:
        digests = versions.read_image_digests()
    except ValueError as exc:
        issues.append(ConfigIssue(key_path("registry", ("requireDigest",)), str(exc)))
        return None
    issues.extend(ConfigIssue(key_path("registry", (key,)), message)
                  for key, message in registry.checks(runs_our_images, digests))
    return registry
