"""The offline renderer keeps each NetworkPolicy's own inputs when two share a type and logical name under
different parents (a legal Pulumi reuse: their URNs differ), even when their registrations run in parallel."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pytest
from typer.testing import CliRunner

from infra.review import engine
from infra.review.cli import app
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.netpol import NETWORK_POLICY

TWIN = "twin-netpol"


class _Parent(pulumi.ComponentResource):
    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"modelplane:test:{kind}", name, None, None)
        k8s.networking.v1.NetworkPolicy(TWIN, metadata={"name": kind.lower(), "namespace": kind.lower()},
                                        spec={"podSelector": {"matchLabels": {"owner": kind}}},
                                        opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({})


def test_same_type_and_name_under_different_parents_keep_their_own_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Hold both registrations between storing their transformed inputs and reading them back, so the renderer's
    # lookup is exercised with both stored: a (type, name) key hands both the last one's inputs.
    both_stored = threading.Barrier(2, timeout=20)
    synthesize = engine.synthesize_outputs

    def synthesize_together(typ: str, name: str, inputs: dict[str, Any], region: str) -> Any:
        if name == TWIN:
            both_stored.wait()
        return synthesize(typ, name, inputs, region)

    monkeypatch.setattr(engine, "synthesize_outputs", synthesize_together)

    def program() -> None:
        _Parent("Training", "a")
        _Parent("Inference", "b")

    twins = [r for r in render_program("t", program).of_type(NETWORK_POLICY) if r.name == TWIN]
    assert len(twins) == 2
    for resource in twins:
        kind = resource.urn.split("::")[2].split("$")[0].rsplit(":", 1)[1]
        assert resource.inputs["metadata"]["namespace"] == kind.lower(), resource.urn
        assert resource.inputs["spec"]["podSelector"]["matchLabels"] == {"owner": kind}, resource.urn


@pytest.mark.parametrize("stack", ["local", "dev", "staging", "prod"])
def test_no_two_network_policies_share_a_logical_name(stack: str, stack_graph: Callable[[str], Graph]) -> None:
    names = Counter(r.name for r in stack_graph(stack).of_type(NETWORK_POLICY))
    assert [name for name, count in names.items() if count > 1] == []


def test_local_renders_the_same_policies_twice_through_the_cli(tmp_path: Path) -> None:
    runs = []
    for run in ("a", "b"):
        result = CliRunner().invoke(app, ["render", "--stack", "local", "--out", str(tmp_path / run)])
        assert result.exit_code == 0, result.output
        graph = json.loads((tmp_path / run / "graph.json").read_text())
        runs.append({r["urn"]: r["inputs"] for r in graph["resources"] if r["type"] == NETWORK_POLICY})
    assert runs[0] == runs[1]
    trainer = next(inputs for urn, inputs in runs[0].items() if "TrainingJob$" in urn and "tiny-lm" in urn)
    # tiny-lm queues on team ml's LocalQueue, so it runs (and its policy lives) in the team's namespace.
    assert trainer["metadata"]["namespace"] == "team-ml"
