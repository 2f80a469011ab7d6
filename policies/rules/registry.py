"""Images: ECR repositories are immutable, scanned and KMS-encrypted; production pulls private-ECR images by digest.

Property names are pulumi-aws's `aws.ecr.Repository` wire names (`imageTagMutability`,
`imageScanningConfiguration.scanOnPush`, `encryptionConfigurations[].encryptionType`, valid `AES256` or `KMS`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from policies.kube import containers, describe, kind_of, pod_specs, trainjob_trainer
from policies.wire import as_list

REPOSITORY: Final = "aws:ecr/repository:Repository"
PRIVATE_ECR: Final = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/")
"""A private ECR registry host (`<account>.dkr.ecr.<region>.amazonaws.com/`): where our own images live."""


def _hardened(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != REPOSITORY:
        return
    props = args.props
    problems = []
    if props.get("imageTagMutability") != "IMMUTABLE":
        problems.append(f"tags are mutable (imageTagMutability {props.get('imageTagMutability') or 'MUTABLE'})")
    if (props.get("imageScanningConfiguration") or {}).get("scanOnPush") is not True:
        problems.append("images are not scanned on push")
    encryption = [e for e in as_list(props.get("encryptionConfigurations")) if isinstance(e, Mapping)]
    if not any(e.get("encryptionType") == "KMS" and e.get("kmsKey") for e in encryption):
        problems.append("it is not encrypted with a customer KMS key")
    if problems:
        report(f"ECR repository '{args.name}': {'; '.join(problems)}, so a tag can be repointed to unreviewed code, "
               f"vulnerabilities go unnoticed, or the layers are readable without our key. Fix: "
               f"image_tag_mutability IMMUTABLE, image_scanning_configuration scan_on_push, encryption_configurations "
               f"KMS with kms_key (ImageRegistry in infra/aws/registry.py does all three).", args.urn)


_DIGEST_SCHEMA = PolicyConfigSchema(properties={
    "requireDigest": {
        "type": "boolean",
        "description": "Require @sha256 digests on private-ECR images. Defaults to off: turn it on (per stack, "
                       "e.g. prod) once images/digests.json holds the first build's digests.",
    },
})


def _requires_digest(config: Mapping[str, Any]) -> bool:
    # Off until switched on: a production default would fail every preview of prod before the first image build.
    return bool(config.get("requireDigest", False))


def _by_digest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("kubernetes:") or not kind_of(args.props):
        return
    if not _requires_digest(args.get_config() or {}):
        return
    images = [(f"{path}.{field}", str(container.get("image") or ""))
              for path, spec in pod_specs(args.props) for field, container in containers(spec)]
    trainer = trainjob_trainer(args.props)
    if "image" in trainer:  # a TrainJob's image replaces its runtime's trainer image
        images.append(("spec.trainer.image", str(trainer.get("image") or "")))
    for where, image in images:
        if PRIVATE_ECR.match(image) and "@sha256:" not in image:
            report(f"{describe(args.props, args.name)} {where} pulls {image!r} by tag, so what runs is "
                   f"whatever was pushed last under it, not the reviewed build. Fix: run the images workflow "
                   f"(.github/workflows/images.yml) so images/digests.json records the digest (the stack then "
                   f"renders <repository>@sha256:...).", args.urn)


ECR_REPOSITORY_HARDENED = ResourceValidationPolicy(
    name="ecr-repository-hardened",
    description="ECR repositories have immutable tags, scan on push and a customer KMS key.",
    validate=_hardened, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://docs.aws.amazon.com/AmazonECR/latest/userguide/security-best-practices.html",
)
ECR_IMAGE_BY_DIGEST = ResourceValidationPolicy(
    name="ecr-image-by-digest",
    description="Pods and TrainJob trainer images pull private-ECR images by @sha256 digest (with requireDigest on).",
    validate=_by_digest, enforcement_level=EnforcementLevel.MANDATORY, config_schema=_DIGEST_SCHEMA,
    url="https://docs.aws.amazon.com/AmazonECR/latest/userguide/docker-pull-ecr-image.html",
)

POLICIES: Final = (ECR_REPOSITORY_HARDENED, ECR_IMAGE_BY_DIGEST)
"""The image registry rules."""
