"""The four real stacks pass the pack, offline and through `modelplane policy`."""

import json
from collections.abc import Callable

import pytest
from typer.testing import CliRunner

from infra.review.cli import app
from infra.review.engine import list_stacks, load_stack_config
from infra.review.graph import Graph
from infra.review.policy import evaluate

runner = CliRunner()
STACKS = list_stacks()


def test_every_environment_is_checked() -> None:
    assert STACKS == ["dev", "local", "prod", "staging"]


@pytest.mark.parametrize("stack", STACKS)
def test_real_stack_has_no_mandatory_violation(stack: str, stack_graph: Callable[[str], Graph]) -> None:
    production = load_stack_config(stack).get("modelplane:production")
    mandatory = [v for v in evaluate(stack_graph(stack), production=production) if v.level == "mandatory"]
    assert mandatory == [], "\n".join(f"{v.rule} {v.urn}: {v.message}" for v in mandatory)


@pytest.mark.parametrize("stack", STACKS)
def test_modelplane_policy_passes_on_real_stacks(stack: str) -> None:
    result = runner.invoke(app, ["policy", "--stack", stack])
    assert result.exit_code == 0, result.output
    assert f"policy {stack}: " in result.output


def test_modelplane_policy_json_is_one_document() -> None:
    result = runner.invoke(app, ["policy", "--stack", "prod", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["stack"] == "prod" and doc["passed"] is True and doc["rules"] >= 20 and doc["mandatory"] == 0
