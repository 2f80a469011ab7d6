"""`modelplane policy` and `modelplane preview` end to end, including on scratch copies with broken guardrails."""

import json
from pathlib import Path
from xml.etree import ElementTree

import pytest
from typer.testing import CliRunner

from infra.review.cli import app
from infra.review.policy import validate_config
from policies.rules import ALL_POLICIES
from tests.policies.helpers import edit, modelplane, scratch_copy

runner = CliRunner()
PAB_URN = ("urn:pulumi:dev::modelplane::modelplane:storage:ModelStore$"
           "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock::models-datasets")
GPU_POOL_URN = ("urn:pulumi:dev::modelplane::modelplane:gpu:GpuNodePools$"
                "kubernetes:karpenter.sh/v1:NodePool::gpu-pool-gpu-train")


def test_public_bucket_fails_policy_naming_urn_and_rule(tmp_path: Path) -> None:
    tree = scratch_copy(tmp_path)
    edit(tree / "infra" / "aws" / "storage.py", "block_public_acls=True", "block_public_acls=False")
    result = modelplane(tree, "policy", "--stack", "dev")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "s3-public-access-blocked" in result.stdout
    assert PAB_URN in result.stdout
    assert "MANDATORY" in result.stdout


def test_unlimited_gpu_pool_fails_policy_naming_urn_and_rule(tmp_path: Path) -> None:
    tree = scratch_copy(tmp_path)
    edit(tree / "infra" / "k8s" / "gpu_specs.py", "limits: dict[str, Any] = {GPU_RESOURCE: pool.gpu_limit}",
         "limits: dict[str, Any] = {}")
    result = modelplane(tree, "policy", "--stack", "dev", "--json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = {(v["rule"], v["urn"]) for v in json.loads(result.stdout)["violations"]}
    assert ("gpu-nodepool-limit", GPU_POOL_URN) in found
    assert any(rule == "gpu-budget" for rule, _ in found)


def test_policy_config_can_downgrade_a_rule(tmp_path: Path) -> None:
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"all": "advisory"}))
    tree = scratch_copy(tmp_path / "tree")
    edit(tree / "infra" / "aws" / "storage.py", "block_public_acls=True", "block_public_acls=False")
    result = modelplane(tree, "policy", "--stack", "dev", "--policy-config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ADVISORY" in result.stdout and "s3-public-access-blocked" in result.stdout


def test_unreadable_policy_config_is_a_usage_error(tmp_path: Path) -> None:
    bad = tmp_path / "policy.json"
    bad.write_text("{not json")
    result = runner.invoke(app, ["policy", "--stack", "local", "--policy-config", str(bad)])
    assert result.exit_code == 2
    assert f"error: --policy-config {bad}:" in result.output


def test_preview_of_a_stack_runs_policy_diff_and_cost() -> None:
    result = runner.invoke(app, ["preview", "--stack", "dev", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["passed"] is True and doc["base"] == "HEAD"
    stack = doc["stacks"][0]
    assert stack["stack"] == "dev" and stack["resources"] > 0
    assert stack["policy"]["mandatory"] == 0
    assert "summary" in stack["diff"] and stack["cost"]["total"]["max"] > 0


def test_preview_markdown_is_one_document_for_a_pr_comment() -> None:
    result = runner.invoke(app, ["preview", "--stack", "local", "--markdown"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("## modelplane preview")
    assert "| local |" in result.stdout and "<details>" in result.stdout


def test_preview_exits_1_on_a_mandatory_violation(tmp_path: Path) -> None:
    tree = scratch_copy(tmp_path)
    edit(tree / "infra" / "aws" / "storage.py", "block_public_acls=True", "block_public_acls=False")
    result = modelplane(tree, "preview", "--stack", "dev", "--base", "no-such-ref")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "s3-public-access-blocked" in result.stdout
    assert "diff unavailable" in result.stdout  # a broken base never hides the policy verdict


def test_a_misspelt_rule_name_in_the_policy_config_exits_2_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"gpu-budjet": {"maxGpus": 8}, "gpu-budget": "advisory"}))
    result = runner.invoke(app, ["policy", "--stack", "local", "--policy-config", str(config)])
    assert result.exit_code == 2, result.output
    assert "gpu-budjet: no such rule in the pack" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(("entry", "named"), [
    ({"maxGpus": "eight"}, "gpu-budget.maxGpus: 'eight' is invalid"),
    ({"maxGpus": -1}, "gpu-budget.maxGpus: -1 is invalid"),
    ({"maxGpusByStack": {"dev": "many"}}, "gpu-budget.maxGpusByStack:"),
    ({"maxGPUs": 8}, "gpu-budget.maxGPUs: the rule has no such setting"),
    ({"enforcementLevel": "strict"}, "gpu-budget.enforcementLevel: 'strict' is not a level"),
])
def test_a_bad_policy_config_value_exits_2_naming_rule_and_key(tmp_path: Path, entry: dict, named: str) -> None:
    config = tmp_path / "policy.json"
    config.write_text(json.dumps({"gpu-budget": entry}))
    result = runner.invoke(app, ["policy", "--stack", "local", "--policy-config", str(config)])
    assert result.exit_code == 2, result.output
    assert named in result.output


def test_a_valid_policy_config_is_accepted() -> None:
    validate_config({"all": "advisory", "gpu-budget": {"enforcementLevel": "mandatory", "maxGpus": 8,
                                                        "maxGpusByStack": {"dev": 4}}})


def test_policy_list_shows_every_rule_with_level_and_description() -> None:
    result = runner.invoke(app, ["policy", "--list"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for policy in ALL_POLICIES:
        assert policy.name in result.output
    assert "gpu-budget" in result.output and "mandatory" in result.output


def test_policy_sarif_has_one_result_per_violation(tmp_path: Path) -> None:
    tree = scratch_copy(tmp_path)
    edit(tree / "infra" / "aws" / "storage.py", "block_public_acls=True", "block_public_acls=False")
    result = modelplane(tree, "policy", "--stack", "dev", "--format", "sarif")
    assert result.returncode == 1, result.stdout + result.stderr
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    [run] = log["runs"]
    assert {r["id"] for r in run["tool"]["driver"]["rules"]} == {p.name for p in ALL_POLICIES}
    found = [r for r in run["results"] if r["ruleId"] == "s3-public-access-blocked"]
    assert found and found[0]["level"] == "error"
    assert found[0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] == "stacks/Pulumi.dev.yaml"
    junit = modelplane(tree, "policy", "--stack", "dev", "--format", "junit")
    suite = ElementTree.fromstring(junit.stdout.encode())
    assert suite.tag == "testsuite" and int(suite.get("tests", "0")) == len(ALL_POLICIES)
    failed = {case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None}
    assert "s3-public-access-blocked" in failed and int(suite.get("failures", "0")) >= 1


@pytest.mark.parametrize("command", [["render", "--stack", "dev", "--out", "OUT"], ["policy", "--stack", "dev"],
                                     ["cost", "--stack", "dev"], ["preview"], ["preview", "--stack", "dev"]])
def test_a_stacks_dir_that_does_not_exist_is_named_with_the_fix(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "no-such-stacks"
    args = [str(tmp_path / "out") if arg == "OUT" else arg for arg in command]
    result = runner.invoke(app, [*args, "--stacks-dir", str(missing)])
    assert result.exit_code == 2, result.output
    assert f"error: --stacks-dir {missing}: no such directory. Fix: pass the folder that holds the " \
           "Pulumi.<stack>.yaml files" in " ".join(result.output.split())
    assert "--stack:" not in result.output and "known stacks" not in result.output
    assert not (tmp_path / "out").exists()


def test_an_unknown_stack_in_an_existing_stacks_dir_still_names_the_stack(tmp_path: Path) -> None:
    result = runner.invoke(app, ["policy", "--stack", "nope", "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    assert f"--stack: no stack file {tmp_path / 'Pulumi.nope.yaml'} (known stacks: none)" in " ".join(result.output.split())
