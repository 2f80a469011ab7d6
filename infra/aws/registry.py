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
    """Expire untagged images after `untaggedExpiryDays`, then keep the newest `keepTaggedImages`. A `tagStatus: any`
    rule must have the highest rulePriority (ECR User Guide, "Lifecycle policy properties", rulePriority)."""
    untagged = {"rulePriority": 1, "description": f"expire untagged images after {config.untagged_expiry_days} days",
                "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                              "countNumber": config.untagged_expiry_days},
                "action": {"type": "expire"}}
    newest = {"rulePriority": 2, "description": f"keep the newest {config.keep_tagged_images} images",
              "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                            "countNumber": config.keep_tagged_images},
              "action": {"type": "expire"}}
    return json.dumps({"rules": [untagged, newest]}, sort_keys=True)


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
