"""`ImageRegistry`: one private ECR repository per image in images/, which the images workflow pushes to by digest.

Arguments are pulumi-aws 7.51's `aws.ecr.Repository` (`image_tag_mutability`, `image_scanning_configuration.
scan_on_push`, `encryption_configurations[].encryption_type`/`kms_key`: "Valid values are `AES256` or `KMS`") and
`aws.ecr.LifecyclePolicy` (`repository`, `policy`). Nodes pull with the AWS-managed AmazonEC2ContainerRegistryPullOnly
policy that infra/aws/cluster.py and infra/k8s/gpu.py attach to every node role; ECR decrypts KMS-encrypted layers
through the grant it creates on the key at repository creation (ECR User Guide, "Encryption at rest"), so node roles
need no key permission and there is no `grant_pull`.
"""

from __future__ import annotations

import json
from typing import Final

import pulumi
import pulumi_aws as aws

from infra import versions
from infra.config.registry import RegistryConfig

TAG_MUTABILITY: Final = "IMMUTABLE"
"""A pushed tag never moves (ECR `imageTagMutability`), so a tag names one digest for good."""
BUILD_TAG_PREFIX: Final = "sha-"
"""The tag the images workflow pushes every build under (`sha-<commit>`); the newest `keepTaggedImages` are kept."""
PINNED_TAG_PREFIX: Final = "pinned-"
"""The tag the images workflow adds to each digest main's images/digests.json pins (`pinned-<sha256 hex>`), before
it pushes a new build: an image with it never expires, so a stack deploying any recorded digest can always pull it."""
PINNED_KEEP: Final = 100_000
"""The count the pinned rule keeps: ECR's default "Images per repository" quota (ECR User Guide, "Amazon ECR service
quotas"), so the rule, which a lifecycle policy needs to shield the pinned images, expires none of them."""


def repository_prefix(config: RegistryConfig, stack: str, region: str) -> str | None:
    """`<account>.dkr.ecr.<region>.amazonaws.com/modelplane/<stack>`: where the stack's images live; None without an
    account id (the stack runs none of our images)."""
    if config.account_id is None:
        return None
    return f"{versions.ecr_registry(config.account_id, region)}/{repository_path(stack)}"


def repository_path(stack: str) -> str:
    """The repository name prefix of a stack's images (`modelplane/<stack>`), shared with the images workflow."""
    return f"modelplane/{stack}"


def lifecycle_policy(config: RegistryConfig) -> str:
    """Keep every pinned image, the newest `keepTaggedImages` builds, and untagged images for `untaggedExpiryDays`.

    ECR evaluates rules by rulePriority, and "an image that matches the tagging requirements of a higher priority
    rule cannot be expired by a rule with a lower priority"; a `tagPatternList` selects an image when each pattern
    matches one of its tags (ECR User Guide, "Lifecycle policies" and "Lifecycle policy properties"). So rule 1
    selects the `pinned-*` images and keeps PINNED_KEEP of them: none expires, whatever its `sha-` tag, and a stack
    pinned to an old digest (images/digests.json at the commit it deploys) survives any number of later builds.
    Rule 2 expires `sha-*` builds beyond the newest `keepTaggedImages`; a build expires only if no digests.json on
    main ever pinned it. A count rather than an age bound: an age rule would expire an image a stack deployed long ago
    and still runs. Tags outside both prefixes (pushed by hand) are left alone, as no `tagStatus: any` rule exists.
    """
    untagged = {"rulePriority": 1, "description": f"expire untagged images after {config.untagged_expiry_days} days",
                "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                              "countNumber": config.untagged_expiry_days},
                "action": {"type": "expire"}}
    pinned = {"rulePriority": 2, "description": "keep every image a stack pins (images/digests.json)",
              "selection": {"tagStatus": "tagged", "tagPatternList": [f"{PINNED_TAG_PREFIX}*"],
                            "countType": "imageCountMoreThan", "countNumber": PINNED_KEEP},
              "action": {"type": "expire"}}
    builds = {"rulePriority": 3, "description": f"keep the newest {config.keep_tagged_images} unpinned builds",
              "selection": {"tagStatus": "tagged", "tagPatternList": [f"{BUILD_TAG_PREFIX}*"],
                            "countType": "imageCountMoreThan", "countNumber": config.keep_tagged_images},
              "action": {"type": "expire"}}
    return json.dumps({"rules": [untagged, pinned, builds]}, sort_keys=True)


class ImageRegistry(pulumi.ComponentResource):
    """An immutable-tag, scan-on-push, KMS-encrypted ECR repository with a lifecycle policy per image."""

    repository_urls: dict[str, pulumi.Output[str]]
    """Repository URL by image name."""
    kms_key_arn: pulumi.Output[str]
    """The key encrypting every repository."""

    def __init__(self, name: str, config: RegistryConfig, *, stack: str, protect: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """Repositories are named `modelplane/<stack>/<image>`; `protect` sets Pulumi `protect` on them and the
        key (the stack's deletion protection)."""
        super().__init__("modelplane:registry:ImageRegistry", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=protect)
        key = aws.kms.Key(f"{name}-kms", description=f"modelplane ECR repositories of {stack}",
                          enable_key_rotation=True, deletion_window_in_days=config.kms_deletion_window_days,
                          opts=child)
        self.kms_key_arn = key.arn
        self.repository_urls = {}
        for image in versions.MODELPLANE_IMAGES:
            repo = aws.ecr.Repository(
                f"{name}-{image}", name=f"{repository_path(stack)}/{image}", image_tag_mutability=TAG_MUTABILITY,
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS", "kms_key": key.arn}], opts=child)
            aws.ecr.LifecyclePolicy(f"{name}-{image}", repository=repo.name, policy=lifecycle_policy(config),
                                    opts=pulumi.ResourceOptions(parent=self))
            self.repository_urls[image] = repo.repository_url
        self.register_outputs({"repository_urls": self.repository_urls})
