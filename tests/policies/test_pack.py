"""The pack as a whole: enough rules, well-formed, documented, each tested, served by __main__ only."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, StackValidationPolicy

from infra.aws.karpenter import CAPACITY_TYPE_LABEL
from policies import kube
from policies.rules import ALL_POLICIES
from policies.rules.reliability import INFERENCE_MIN_REPLICAS
from workloads.common import vocab

POLICIES_DIR = Path(__file__).resolve().parents[2] / "policies"
TESTS = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))


def test_the_pack_has_at_least_twenty_rules_with_unique_names() -> None:
    names = [p.name for p in ALL_POLICIES]
    assert len(names) >= 20
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: p.name)
def test_every_rule_is_a_crossguard_policy_with_a_level_and_a_description(policy) -> None:
    assert isinstance(policy, (ResourceValidationPolicy, StackValidationPolicy))
    assert policy.enforcement_level in (EnforcementLevel.MANDATORY, EnforcementLevel.ADVISORY)
    assert policy.description.endswith(".")


@pytest.mark.parametrize("policy", [p for p in ALL_POLICIES if p.config_schema], ids=lambda p: p.name)
def test_config_schema_defaults_satisfy_their_own_schema(policy) -> None:
    for key, spec in policy.config_schema.properties.items():
        assert spec.get("description"), f"{policy.name}.{key} has no description"
        if "default" in spec:
            jsonschema.validate(spec["default"], spec)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=lambda p: p.name)
def test_every_rule_has_tests(policy) -> None:
    constant = policy.name.upper().replace("-", "_")
    assert constant in TESTS or policy.name in TESTS, f"no test mentions {policy.name}"


def test_main_only_assembles_the_pack() -> None:
    tree = ast.parse((POLICIES_DIR / "__main__.py").read_text())
    calls = [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    assert calls.count("PolicyPack") == 1
    assert "ALL_POLICIES" in {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}


def test_pulumi_policy_yaml_points_at_the_repo_venv() -> None:
    manifest = yaml.safe_load((POLICIES_DIR / "PulumiPolicy.yaml").read_text())
    assert manifest["runtime"]["name"] == "python"
    assert (POLICIES_DIR / manifest["runtime"]["options"]["virtualenv"]).resolve() == POLICIES_DIR.parent / ".venv"
    assert manifest["version"]


def test_the_pack_loads_and_runs_without_the_rest_of_the_repository(tmp_path: Path) -> None:
    """Published alone, the pack has only its own folder: importing infra, workloads or tests must not be needed."""
    shutil.copytree(POLICIES_DIR, tmp_path / "policies", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; sys.modules.update(infra=None, workloads=None, tests=None)\n"
            "from policies.rules import ALL_POLICIES\n"
            "from policies.aws import is_taggable\n"
            "from policies.kube import image_is_pinned\n"
            "assert is_taggable('aws:s3/bucket:Bucket') and not is_taggable('aws:ec2/route:Route')\n"
            "assert image_is_pinned('nginx:1.27') and not image_is_pinned('nginx') and not image_is_pinned('reg:5000/nginx')\n"
            "print(len(ALL_POLICIES))\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) == len(ALL_POLICIES)


def test_the_packs_own_copies_of_platform_names_match_the_platform() -> None:
    # The pack is self-contained (it never imports infra or workloads), so it keeps copies; this keeps them true.
    assert kube.GPU_RESOURCE == vocab.GPU_RESOURCE
    assert kube.CAPACITY_TYPE_KEY == CAPACITY_TYPE_LABEL
    assert INFERENCE_MIN_REPLICAS.config_schema is not None
    schema = INFERENCE_MIN_REPLICAS.config_schema.properties
    assert schema["exemptLabels"]["default"] == {vocab.TRACK_LABEL: "canary"}
    assert schema["inferenceLabels"]["default"] == {vocab.COMPONENT_LABEL: "inference"}
