"""Image registry rules: ECR repositories are hardened; pods and TrainJobs pull private-ECR images by digest."""

import pytest
from pulumi_policy import EnforcementLevel

from policies.rules import ALL_POLICIES
from policies.rules.registry import ECR_IMAGE_BY_DIGEST, ECR_REPOSITORY_HARDENED
from tests.policies.helpers import violations

REPO = "aws:ecr/repository:Repository"
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
GOOD_REPO = {"name": "modelplane/prod/serve", "imageTagMutability": "IMMUTABLE",
             "imageScanningConfiguration": {"scanOnPush": True},
             "encryptionConfigurations": [{"encryptionType": "KMS",
                                           "kmsKey": "arn:aws:kms:us-east-1:123456789012:key/abc"}]}
ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelplane/prod/serve"
DIGEST = "sha256:" + "a" * 64


def _deployment(image: str) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "lm", "namespace": "inference"},
            "spec": {"template": {"spec": {"containers": [{"name": "server", "image": image}]}}}}


def test_both_rules_are_mandatory_and_in_the_pack() -> None:
    for rule in (ECR_REPOSITORY_HARDENED, ECR_IMAGE_BY_DIGEST):
        assert rule.enforcement_level == EnforcementLevel.MANDATORY and rule in ALL_POLICIES


def test_a_hardened_repository_complies() -> None:
    assert violations(ECR_REPOSITORY_HARDENED, REPO, GOOD_REPO) == []


@pytest.mark.parametrize(("change", "problem"), [
    ({"imageTagMutability": "MUTABLE"}, "tags are mutable (imageTagMutability MUTABLE)"),
    ({"imageTagMutability": None}, "tags are mutable (imageTagMutability MUTABLE)"),
    ({"imageScanningConfiguration": {"scanOnPush": False}}, "images are not scanned on push"),
    ({"encryptionConfigurations": [{"encryptionType": "AES256"}]}, "not encrypted with a customer KMS key"),
    ({"encryptionConfigurations": [{"encryptionType": "KMS"}]}, "not encrypted with a customer KMS key"),
])
def test_each_weakness_of_a_repository_is_reported(change, problem) -> None:
    found = violations(ECR_REPOSITORY_HARDENED, REPO, {**GOOD_REPO, **change}, name="images-serve")
    assert len(found) == 1 and "images-serve" in found[0] and problem in found[0]


def test_with_require_digest_pods_pull_private_ecr_images_by_digest() -> None:
    on = {"requireDigest": True}
    found = violations(ECR_IMAGE_BY_DIGEST, DEPLOYMENT, _deployment(f"{ECR}:0.1.0"), stack="prod", config=on)
    assert len(found) == 1 and f"{ECR}:0.1.0" in found[0] and "images workflow" in found[0]
    assert violations(ECR_IMAGE_BY_DIGEST, DEPLOYMENT, _deployment(f"{ECR}@{DIGEST}"), stack="prod", config=on) == []


def test_other_registries_and_the_default_are_left_to_k8s_image_pinned() -> None:
    # Off by default, production included: until the first image build records digests, prod renders tags.
    assert violations(ECR_IMAGE_BY_DIGEST, DEPLOYMENT, _deployment("tensorflow/serving:2.20.0"), stack="prod",
                      config={"requireDigest": True}) == []
    assert violations(ECR_IMAGE_BY_DIGEST, DEPLOYMENT, _deployment(f"{ECR}:0.1.0"), stack="prod",
                      production=True) == []


@pytest.mark.parametrize(("stack", "require", "expected"), [("dev", True, 1), ("prod", False, 0)])
def test_require_digest_decides_on_any_stack(stack, require, expected) -> None:
    found = violations(ECR_IMAGE_BY_DIGEST, DEPLOYMENT, _deployment(f"{ECR}:0.1.0"), stack=stack,
                       config={"requireDigest": require})
    assert len(found) == expected


def test_with_require_digest_a_trainjobs_trainer_image_is_pulled_by_digest() -> None:
    trainjob = "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob"

    def job(image: str) -> dict:
        return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                "metadata": {"name": "lm", "namespace": "team-ml"},
                "spec": {"runtimeRef": {"name": "modelplane-torch"}, "trainer": {"image": image}}}

    on = {"requireDigest": True}
    found = violations(ECR_IMAGE_BY_DIGEST, trainjob, job(f"{ECR}:0.1.0"), stack="prod", config=on)
    assert len(found) == 1 and "TrainJob team-ml/lm spec.trainer.image pulls" in found[0]
    assert violations(ECR_IMAGE_BY_DIGEST, trainjob, job(f"{ECR}@{DIGEST}"), stack="prod", config=on) == []
