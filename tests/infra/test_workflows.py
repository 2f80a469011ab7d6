"""The CI/CD workflows: valid GitHub workflow files that wire the offline preview and the policy pack."""

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.review.engine import render

WORKFLOWS = Path(__file__).resolve().parents[2] / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    # PyYAML reads the `on:` key as True (YAML 1.1); the jobs are all these tests look at.
    return yaml.safe_load((WORKFLOWS / name).read_text())


def steps(job: dict[str, Any], uses: str) -> list[dict[str, Any]]:
    return [s for s in job["steps"] if str(s.get("uses", "")).startswith(uses)]


@pytest.mark.parametrize("name", ["pr.yml", "deploy.yml"])
def test_workflow_validates_against_the_github_workflow_schema(name: str) -> None:
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                             str(WORKFLOWS / name)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pr_lints_and_tests() -> None:
    runs = [s.get("run", "") for s in load("pr.yml")["jobs"]["lint-and-test"]["steps"]]
    assert "make lint" in runs and "make test" in runs


def test_pr_posts_the_offline_preview_of_every_stack_against_main() -> None:
    job = load("pr.yml")["jobs"]["offline-preview"]
    script = "\n".join(s.get("run", "") for s in job["steps"])
    assert "modelplane preview --stack all --base origin/main" in script
    assert steps(job, "actions/checkout")[0]["with"]["fetch-depth"] == 0
    assert steps(job, "actions/github-script") and job["permissions"]["pull-requests"] == "write"


def test_pr_runs_pulumi_preview_with_the_policy_pack_only_where_oidc_is_configured() -> None:
    job = load("pr.yml")["jobs"]["pulumi-preview"]
    assert "vars.AWS_ROLE_ARN" in job["if"] and "vars.PULUMI_BACKEND_URL" in job["if"]
    assert job["permissions"]["id-token"] == "write"
    assert job["strategy"]["matrix"]["stack"] == ["dev", "staging", "prod"]
    [pulumi] = steps(job, "pulumi/actions")
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["policyPacks"] == "policies" and pulumi["with"]["comment-on-pr"] is True


def test_pr_previews_against_the_state_backend_that_deploy_writes() -> None:
    [preview] = steps(load("pr.yml")["jobs"]["pulumi-preview"], "pulumi/actions")
    for stack in ("dev", "staging", "prod"):
        [up] = steps(load("deploy.yml")["jobs"][stack], "pulumi/actions")
        assert preview["with"]["cloud-url"] == up["with"]["cloud-url"] == "${{ vars.PULUMI_BACKEND_URL }}"
        assert preview["with"]["pulumi-version"] == up["with"]["pulumi-version"]
    # An S3 backend: no Pulumi Cloud token anywhere in the job.
    assert "PULUMI_ACCESS_TOKEN" not in (WORKFLOWS / "pr.yml").read_text()


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_pr_preview_leaves_out_the_kubernetes_half_behind_the_private_endpoint(stack: str) -> None:
    job = load("pr.yml")["jobs"]["pulumi-preview"]
    [preview] = steps(job, "pulumi/actions")
    # The matrix value stands in for the stack: the excluded URN is that stack's Kubernetes provider.
    exclude = preview["with"]["exclude"].replace("${{ matrix.stack }}", stack)
    assert exclude == render(stack).one("pulumi:providers:kubernetes").urn
    assert preview["with"]["exclude-dependents"] is True
    # ... and the offline preview covers that half for every stack, with no cloud access.
    offline = load("pr.yml")["jobs"]["offline-preview"]
    assert "id-token" not in offline["permissions"]
    assert not steps(offline, "aws-actions/configure-aws-credentials")


USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<action>\S+?)@(?P<ref>\S+)(?P<comment>\s+#.*)?$")


@pytest.mark.parametrize("name", sorted(p.name for p in WORKFLOWS.glob("*.yml")))
def test_every_action_is_pinned_to_a_full_commit_sha_with_its_version(name: str) -> None:
    lines = [line for line in (WORKFLOWS / name).read_text().splitlines() if re.match(r"^\s*(-\s+)?uses:", line)]
    assert lines
    for line in lines:
        found = USES.match(line)
        assert found, f"{name}: unparsable `uses:` line: {line.strip()}"
        assert re.fullmatch(r"[0-9a-f]{40}", found["ref"]), \
            f"{name}: {found['action']}@{found['ref']} is not pinned to a commit SHA (tags and branches move)"
        assert found["comment"] and re.match(r"\s+#\s*v\d+\.\d+\.\d+$", found["comment"]), \
            f"{name}: {found['action']}@{found['ref']} needs its release as a trailing comment, e.g. `# v4.4.0`"


def test_deploy_goes_dev_then_staging_then_prod_through_environments() -> None:
    jobs = load("deploy.yml")["jobs"]
    assert jobs["dev"]["needs"] == "preview" and jobs["staging"]["needs"] == "dev" and jobs["prod"]["needs"] == "staging"
    assert jobs["dev"]["environment"] == "dev"
    assert jobs["staging"]["environment"] == "staging" and jobs["prod"]["environment"] == "production"
    for stack in ("dev", "staging", "prod"):
        [pulumi] = steps(jobs[stack], "pulumi/actions")
        assert pulumi["with"]["command"] == "up" and pulumi["with"]["stack-name"] == stack
        assert pulumi["with"]["policyPacks"] == "policies"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_deploy_runs_the_kubernetes_half_from_codebuild_inside_the_vpc(stack: str) -> None:
    job = load("deploy.yml")["jobs"][stack]
    [pulumi] = steps(job, "pulumi/actions")
    # The hosted runner leaves out the Kubernetes provider and everything on it: it cannot reach a private endpoint.
    provider = render(stack).one("pulumi:providers:kubernetes")
    assert pulumi["with"]["exclude"] == provider.urn and pulumi["with"]["exclude-dependents"] is True
    assert pulumi["with"]["pulumi-version"] == version("pulumi")
    [in_vpc] = [s for s in job["steps"] if s.get("run") == ".github/scripts/in-vpc-deploy.sh"]
    outputs = f"steps.{pulumi['id']}.outputs"
    assert in_vpc["env"]["PROJECT"] == f"${{{{ {outputs}.deployer_project }}}}"
    assert in_vpc["env"]["BUCKET"] == f"${{{{ {outputs}.deployer_source_bucket }}}}"
    assert job["steps"].index(in_vpc) > job["steps"].index(pulumi)
    assert job["permissions"]["id-token"] == "write"


def test_deploy_runs_only_on_main() -> None:
    triggers = load("deploy.yml")[True]
    assert triggers["push"]["branches"] == ["main"]
