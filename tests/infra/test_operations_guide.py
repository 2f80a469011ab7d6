"""The day-2 guide (docs/operations.md and the README's deploy section): shell that parses, and AWS CLI calls that exist;
the README's local TrainJob path names what the local stack renders.

Every `aws SERVICE OPERATION --flag` is checked against botocore's service models (what the AWS CLI is generated
from): the operation must exist and each flag must be one of its input members. The CLI's hand-written commands
(`aws s3 cp`, `aws eks update-kubeconfig`, waiters) have no model and are only parsed.
"""

import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path

import botocore.session
import pytest

from infra.review.graph import Graph

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "operations.md"
README = ROOT / "README.md"
DEPLOY_SCRIPT = ROOT / ".github" / "scripts" / "in-vpc-deploy.sh"
GLOBAL_FLAGS = {"--query", "--output", "--region", "--profile", "--no-paginate", "--cli-input-json"}
"""AWS CLI options every command takes."""
CUSTOM = {("s3", "cp"), ("s3", "ls"), ("eks", "update-kubeconfig"), ("eks", "wait")}
"""Hand-written AWS CLI commands (no botocore operation)."""
SERVICE_MODEL = {"s3api": "s3"}
"""CLI service names that differ from botocore's."""


def _blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def _readme_deploy_section() -> str:
    text = README.read_text()
    start = text.index("## Deploying for real")
    return text[start:text.index("\n## ", start + 1)]


def _commands(block: str) -> list[list[str]]:
    """Each `aws ...` invocation of a block, continuation lines joined, comments and pipes cut off."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for line in joined.splitlines():
        for match in re.finditer(r"(?:^|[;(|&]\s*|\$\(|\s)(aws\s+[a-z0-9-]+\s+[a-z0-9-]+[^|;)#]*)", line):
            try:
                found.append(shlex.split(match.group(1)))
            except ValueError:  # an unbalanced quote inside $( ... ): the outer command is still checked
                found.append(match.group(1).split())
    return found


BLOCKS = _blocks(GUIDE.read_text()) + _blocks(_readme_deploy_section())
AWS_CALLS = [c for block in [*BLOCKS, DEPLOY_SCRIPT.read_text()] for c in _commands(block)]


@pytest.mark.parametrize("block", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_every_block_is_valid_bash(block: str) -> None:
    result = subprocess.run(["bash", "-n"], input=block, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr + block


def test_the_guide_covers_each_step_of_the_issue() -> None:
    text = GUIDE.read_text()
    for needle in ("pulumi stack init", "--secrets-provider", "docs/deployer-policy.json", "aws service-quotas",
                   "aws eks update-kubeconfig", "port-forward", "-api-key", "aws s3 cp", "trainjob",
                   "update-nodegroup-version", "KARPENTER_AMI_ALIASES", "kubectl delete nodepools",
                   "LoadBalancer", "pulumi state unprotect", "pulumi destroy", "What to check"):
        assert needle in text, needle
    assert "docs/operations.md" in _readme_deploy_section()


def test_there_are_aws_calls_to_check() -> None:
    assert len(AWS_CALLS) > 25


@pytest.mark.parametrize("call", AWS_CALLS, ids=[" ".join(c[:3]) for c in AWS_CALLS])
def test_aws_calls_name_real_operations_and_flags(call: list[str]) -> None:
    service, command = call[1], call[2]
    if (service, command) in CUSTOM:
        return
    model = botocore.session.get_session().get_service_model(SERVICE_MODEL.get(service, service))
    names = {re.sub(r"(?<!^)(?=[A-Z])", "-", op).lower().replace("i-d", "id"): op for op in model.operation_names}
    by_compact = {op.lower(): op for op in model.operation_names}
    operation = names.get(command) or by_compact.get(command.replace("-", ""))
    assert operation, f"aws {service} {command}: no such operation"
    members = {m.lower() for m in model.operation_model(operation).input_shape.members}
    for token in call[3:]:
        if not token.startswith("--"):
            continue
        flag = token.split("=", 1)[0]
        if flag in GLOBAL_FLAGS:
            continue
        assert flag.removeprefix("--").removeprefix("no-").replace("-", "") in members, (
            f"aws {service} {command}: no flag {flag} (inputs: {sorted(members)})")


def test_the_readmes_local_trainjob_path_names_what_the_local_stack_renders(stack_graph: Callable[[str], Graph]) -> None:
    text = README.read_text()
    start = text.index("### A TrainJob admitted through a LocalQueue")
    section = text[start:text.index("\n## ", start)]
    rendered = {(r.inputs.get("kind"), r.inputs["metadata"].get("namespace"), r.inputs["metadata"]["name"]): r.inputs
                for r in stack_graph("local").resources if r.inputs.get("kind") and "metadata" in r.inputs}
    [(_, namespace, queue)] = [key for key in rendered if key[0] == "LocalQueue"]
    [runtime] = [name for kind, _, name in rendered if kind == "ClusterTrainingRuntime"]
    job = rendered[("TrainJob", namespace, "tiny-lm")]
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == queue
    assert job["spec"]["runtimeRef"]["name"] == runtime
    for name in (f"`{namespace}`", f"-n {namespace}", f"LocalQueue `{queue}`", f"queue-name: {queue}", f"`{runtime}`"):
        assert name in section, name
