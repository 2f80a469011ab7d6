"""The images workflow: valid, builds every image with buildx, attestations and cache, pushes to the stacks' ECR
repositories by OIDC, and records the digests in images/digests.json through a pull request."""

import subprocess
import sys
import textwrap

from infra import versions
from infra.aws.registry import repository_path
from tests.infra.test_workflows import WORKFLOWS, load, steps


def test_images_workflow_validates_against_the_github_workflow_schema() -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             str(WORKFLOWS / "images.yml")], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_runs_on_image_and_workload_changes_but_not_on_its_own_digests() -> None:
    push = load("images.yml")[True]["push"]
    assert push["branches"] == ["main"]
    assert {"images/**", "workloads/**", "!images/digests.json"} == set(push["paths"])


def test_every_image_is_built_with_cache_sbom_and_provenance_and_pushed_through_oidc() -> None:
    job = load("images.yml")["jobs"]["build"]
    assert set(job["strategy"]["matrix"]["image"]) == set(versions.MODELPLANE_IMAGES)
    assert job["permissions"]["id-token"] == "write"
    assert steps(job, "aws-actions/configure-aws-credentials")[0]["with"]["role-to-assume"]
    assert steps(job, "aws-actions/amazon-ecr-login") and steps(job, "docker/setup-buildx-action")
    [build] = steps(job, "docker/build-push-action")
    options = build["with"]
    assert options["push"] is True and options["sbom"] is True and options["provenance"] == "mode=max"
    assert options["cache-from"].startswith("type=gha") and options["cache-to"].startswith("type=gha")
    assert options["file"] == "images/${{ matrix.image }}/Dockerfile"
    tags = next(s for s in job["steps"] if s.get("id") == "tags")["run"]
    # The repositories the workflow pushes to are the ones infra/aws/registry.py declares.
    assert f'repo="{repository_path("${stack}")}/${{IMAGE}}"' in tags and "sha-${GITHUB_SHA}" in tags


def test_the_digests_go_back_to_the_file_the_stacks_read_through_a_pull_request() -> None:
    job = load("images.yml")["jobs"]["record"]
    assert job["needs"] == "build" and job["permissions"]["pull-requests"] == "write"
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert str(versions.IMAGE_DIGESTS_FILE.relative_to(versions.IMAGE_DIGESTS_FILE.parents[1])) in script
    [pr] = steps(job, "peter-evans/create-pull-request")
    assert pr["with"]["add-paths"] == "images/digests.json"


def test_the_record_step_writes_a_file_the_stacks_accept(tmp_path) -> None:
    run = next(s["run"] for s in load("images.yml")["jobs"]["record"]["steps"] if "digests.json" in s.get("run", ""))
    script = textwrap.dedent(run.split("<<'EOF'\n", 1)[1].split("\nEOF", 1)[0])
    (tmp_path / "digests").mkdir()
    (tmp_path / "images").mkdir()
    digest = "sha256:" + "b" * 64
    for image in versions.MODELPLANE_IMAGES:
        (tmp_path / "digests" / image).write_text(digest)
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True)
    assert versions.read_image_digests(tmp_path / "images" / "digests.json") == dict.fromkeys(
        versions.MODELPLANE_IMAGES, digest)
