"""No lifecycle rule can expire an image a stack pins: the images workflow tags each digest main's
images/digests.json records `pinned-<hex>` before it pushes a new build, and the rendered policy keeps every pinned
image and only the newest `keepTaggedImages` `sha-` builds. The policy is checked against ECR's documented rules
(ECR User Guide, "Lifecycle policies": rules apply by rulePriority; an image matching a higher-priority rule's tag
requirements cannot be expired by a lower one; a tagPatternList selects an image when each pattern matches one of its
tags; counts keep the most recently pushed)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from infra.aws.registry import BUILD_TAG_PREFIX, PINNED_TAG_PREFIX, ImageRegistry, repository_path
from infra.config.registry import RegistryConfig
from infra.review.engine import render_program
from tests.infra.test_workflows import load, steps

LIFECYCLE = "aws:ecr/lifecyclePolicy:LifecyclePolicy"


@dataclass(frozen=True)
class Image:
    """One image of a repository: its tags and how many days ago it was pushed."""

    tags: tuple[str, ...]
    age_days: int


def _matches(rule: dict[str, Any], image: Image) -> bool:
    selection = rule["selection"]
    if selection["tagStatus"] == "untagged":
        return not image.tags
    if selection["tagStatus"] == "any":
        return True
    return all(any(fnmatchcase(tag, pattern) for tag in image.tags) for pattern in selection["tagPatternList"])


def _expired(policy: dict[str, Any], images: list[Image]) -> set[Image]:
    """What ECR's lifecycle evaluation expires from `images`."""
    expired: set[Image] = set()
    claimed: set[Image] = set()
    for rule in sorted(policy["rules"], key=lambda r: r["rulePriority"]):
        selection = rule["selection"]
        matched = [image for image in images if _matches(rule, image) and image not in claimed]
        if selection["countType"] == "imageCountMoreThan":
            doomed = sorted(matched, key=lambda i: i.age_days)[selection["countNumber"]:]
        else:
            doomed = [image for image in matched if image.age_days > selection["countNumber"]]
        expired |= set(doomed)
        claimed |= set(matched)
    return expired


def _policy(section: dict[str, Any]) -> dict[str, Any]:
    config = RegistryConfig.model_validate(section)

    def program() -> None:
        ImageRegistry("images", config, stack="test", protect=False)

    graph = render_program("test", program)
    policies = {policy.inputs["policy"] for policy in graph.of_type(LIFECYCLE)}
    assert len(policies) == 1 and len(graph.of_type(LIFECYCLE)) > 1  # one policy, on every repository
    return json.loads(policies.pop())


def _build(n: int, *, pinned: bool = False) -> Image:
    tags = (f"{BUILD_TAG_PREFIX}{n:040x}",) + ((f"{PINNED_TAG_PREFIX}{n:064x}",) if pinned else ())
    return Image(tags, age_days=1000 - n)


def test_a_pinned_image_survives_any_number_of_later_builds_while_unpinned_ones_expire() -> None:
    policy = _policy({"keepTaggedImages": 5, "untaggedExpiryDays": 3})
    prod_pin, staging_pin = _build(0, pinned=True), _build(40, pinned=True)
    builds = [prod_pin, staging_pin, *(_build(n) for n in range(1, 100) if n != 40)]
    hand_pushed = Image(("debug",), age_days=900)
    untagged_old, untagged_new = Image((), age_days=4), Image((), age_days=2)
    expired = _expired(policy, [*builds, hand_pushed, untagged_old, untagged_new])
    assert prod_pin not in expired and staging_pin not in expired
    newest_unpinned = sorted((b for b in builds if len(b.tags) == 1), key=lambda i: i.age_days)[:5]
    assert {b for b in builds if b not in expired} == {prod_pin, staging_pin, *newest_unpinned}
    assert untagged_old in expired and untagged_new not in expired and hand_pushed not in expired


def test_the_policy_is_one_ecr_accepts() -> None:
    rules = _policy({})["rules"]
    assert len({rule["rulePriority"] for rule in rules}) == len(rules)
    assert [rule["selection"]["tagStatus"] for rule in rules].count("untagged") == 1
    for rule in rules:
        selection = rule["selection"]
        assert selection["tagStatus"] != "any"  # one would select, and could expire, the pinned images
        assert rule["action"] == {"type": "expire"} and selection["countNumber"] >= 1
        if selection["tagStatus"] == "tagged":
            assert "tagPrefixList" not in selection and all(p.count("*") <= 4 for p in selection["tagPatternList"])
            assert selection["countType"] == "imageCountMoreThan"
    pinned, builds = (next(r for r in rules if r["selection"].get("tagPatternList") == [f"{prefix}*"])
                      for prefix in (PINNED_TAG_PREFIX, BUILD_TAG_PREFIX))
    assert pinned["rulePriority"] < builds["rulePriority"] and builds["selection"]["countNumber"] == 30


def test_the_workflow_pins_main_s_digests_before_it_pushes_a_build() -> None:
    jobs = load("images.yml")["jobs"]
    assert jobs["build"]["needs"] == "pin" and jobs["pin"]["permissions"]["id-token"] == "write"
    [checkout] = steps(jobs["pin"], "actions/checkout")
    assert checkout["with"]["ref"] == "main"
    tags = next(s for s in jobs["build"]["steps"] if s.get("id") == "tags")["run"]
    assert f":{BUILD_TAG_PREFIX}${{GITHUB_SHA}}" in tags


FAKE_AWS = '''#!{python}
"""A stand-in `aws` CLI: repositories and images from $FAKE_ECR (JSON), every put-image input appended to $PUTS."""
import json, os, sys
ecr = json.load(open(os.environ["FAKE_ECR"]))
args = sys.argv[1:]
def arg(name):
    return args[args.index(name) + 1]
command = args[1]
if command == "describe-repositories":
    sys.exit(0 if arg("--repository-names") in ecr else 254)
if command == "describe-images":
    tag = arg("--image-ids").removeprefix("imageTag=")
    sys.exit(0 if tag in ecr[arg("--repository-name")]["tags"] else 254)
if command == "batch-get-image":
    digest = arg("--image-ids").removeprefix("imageDigest=")
    manifest = ecr[arg("--repository-name")]["manifests"].get(digest)
    found = [dict(imageManifest=manifest, imageManifestMediaType="application/vnd.oci.image.index.v1+json")]
    print(json.dumps(dict(images=found if manifest else [], failures=[])))
    sys.exit(0)
if command == "put-image":
    with open(os.environ["PUTS"], "a") as puts:
        puts.write(arg("--cli-input-json") + "\\n")
    sys.exit(0)
sys.exit(f"unexpected aws call {{args}}")
'''


def test_the_pin_step_retags_each_recorded_digest_byte_for_byte_in_every_stack_repository(tmp_path: Path) -> None:
    digest, missing = "sha256:" + "a" * 64, "sha256:" + "c" * 64
    manifest = '{"schemaVersion": 2,\n  "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": []}\n'
    tag = f"{PINNED_TAG_PREFIX}{'a' * 64}"
    ecr = {f"{repository_path('dev')}/serve": {"tags": [], "manifests": {digest: manifest}},
           f"{repository_path('prod')}/serve": {"tags": [tag], "manifests": {digest: manifest}},
           f"{repository_path('dev')}/recommend": {"tags": [], "manifests": {}}}
    (tmp_path / "ecr.json").write_text(json.dumps(ecr))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "digests.json").write_text(json.dumps({"serve": digest, "recommend": missing}))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "aws").write_text(FAKE_AWS.format(python=sys.executable))
    (bin_dir / "aws").chmod(stat.S_IRWXU)
    script = next(s for s in load("images.yml")["jobs"]["pin"]["steps"] if s.get("id") == "pin")["run"]
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_ECR": str(tmp_path / "ecr.json"),
           "PUTS": str(tmp_path / "puts")}
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # dev/serve gets the tag; prod/serve has it already; staging has no repository; dev/recommend lacks the digest.
    [put] = [json.loads(line) for line in (tmp_path / "puts").read_text().splitlines()]
    assert put == {"repositoryName": f"{repository_path('dev')}/serve", "imageTag": tag, "imageDigest": digest,
                   "imageManifest": manifest, "imageManifestMediaType": "application/vnd.oci.image.index.v1+json"}
    assert f"::warning::{repository_path('dev')}/recommend has no image {missing} to pin" in result.stdout
