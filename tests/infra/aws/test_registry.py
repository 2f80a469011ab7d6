"""ImageRegistry: one immutable, scanned, KMS-encrypted ECR repository per image with a lifecycle policy; the stacks
pull our images from there, by digest."""

import json
import re

from infra import versions
from infra.aws.registry import ImageRegistry
from infra.config.registry import RegistryConfig
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_all_have_props, assert_count, assert_has_props, manifest_objects, render_variant

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"
PROD_ECR = "123456789012.dkr.ecr.us-east-1.amazonaws.com/modelplane/prod/"


def _render(section: dict) -> Graph:
    config = RegistryConfig.model_validate(section)
    return render_program("test", lambda: ImageRegistry("images", config, stack="test", protect=False) and None)


def test_one_hardened_repository_per_image_encrypted_with_the_registry_key() -> None:
    graph = _render({})
    assert_count(graph, REPOSITORY, len(versions.MODELPLANE_IMAGES))
    names = sorted(r.inputs["name"] for r in graph.of_type(REPOSITORY))
    assert names == sorted(f"modelplane/test/{image}" for image in versions.MODELPLANE_IMAGES)
    assert_all_have_props(graph, REPOSITORY, {"imageTagMutability": "IMMUTABLE",
                                              "imageScanningConfiguration": {"scanOnPush": True}})
    key = graph.one("aws:kms/key:Key")
    assert key.inputs["enableKeyRotation"] is True and key.inputs["deletionWindowInDays"] == 30
    for repo in graph.of_type(REPOSITORY):
        [encryption] = repo.inputs["encryptionConfigurations"]
        assert encryption["encryptionType"] == "KMS" and encryption["kmsKey"].startswith("arn:aws:kms:")


def test_the_lifecycle_policy_takes_its_counts_from_the_section() -> None:
    # What the policy keeps (pinned images, the newest builds): tests/infra/aws/test_h6_registry_pins.py.
    graph = _render({"keepTaggedImages": 12, "untaggedExpiryDays": 3, "kmsDeletionWindowDays": 7})
    assert_count(graph, LIFECYCLE, len(versions.MODELPLANE_IMAGES))
    assert_has_props(graph, "aws:kms/key:Key", {"deletionWindowInDays": 7})
    for policy in graph.of_type(LIFECYCLE):
        untagged, _pinned, builds = json.loads(policy.inputs["policy"])["rules"]
        assert untagged["selection"] == {"tagStatus": "untagged", "countType": "sinceImagePushed",
                                         "countUnit": "days", "countNumber": 3}
        assert builds["selection"]["countNumber"] == 12


def _images(graph: Graph) -> set[str]:
    found = set()
    for obj in manifest_objects(graph):
        found |= set(re.findall(r"'image': '([^']+)'", str(obj)))
    return found


def test_prod_has_the_repositories_and_runs_every_image_of_ours_by_its_recorded_digest(prod: Graph) -> None:
    assert {r.inputs["name"] for r in prod.of_type(REPOSITORY)} == {
        f"modelplane/prod/{image}" for image in versions.MODELPLANE_IMAGES}
    digests = versions.read_image_digests()
    ours = {image for image in _images(prod) if image.startswith(PROD_ECR)}
    assert ours and all("@sha256:" in image for image in ours)
    assert ours <= {f"{PROD_ECR}{name}@{digest}" for name, digest in digests.items()}
    assert not any(image.startswith(versions.MODELPLANE_IMAGE_REGISTRY) for image in _images(prod))


def test_without_a_recorded_digest_a_stack_pulls_the_release_tag(monkeypatch, tmp_path) -> None:
    (tmp_path / "digests.json").write_text("{}")
    monkeypatch.setenv(versions.IMAGE_DIGESTS_ENV, str(tmp_path / "digests.json"))
    graph = render_variant("dev", {})
    ours = {image for image in _images(graph) if "/modelplane/dev/" in image}
    assert f"123456789012.dkr.ecr.us-east-1.amazonaws.com/modelplane/dev/serve:{versions.MODELPLANE_IMAGE_TAG}" in ours
    assert not any("@sha256:" in image for image in ours)
