"""Call rule objects directly, as CrossGuard does, with hand-made wire-format props."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

from infra.review.graph import Graph, Resource
from infra.review.policy import rule_config
from policies.environment import StackContext, stack_context

OPTIONS = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def urn(type_: str, name: str, stack: str = "dev") -> str:
    """A plausible URN for a top-level resource."""
    return f"urn:pulumi:{stack}::modelplane::{type_}::{name}"


def violations(policy: Policy, type_: str, props: Mapping[str, Any], *, name: str = "subject",
               config: Mapping[str, Any] | None = None, stack: str = "dev",
               production: bool | None = None) -> list[str]:
    """Messages a resource rule reports for one resource (config: the rule's own properties)."""
    assert isinstance(policy, ResourceValidationPolicy)
    found: list[str] = []
    values = rule_config(policy, {policy.name: dict(config or {})})
    args = ResourceValidationArgs(type_, props, urn(type_, name, stack), name, OPTIONS, None, values)
    with stack_context(StackContext(stack=stack, production=production)):
        policy.validate(args, lambda message, _urn=None: found.append(message))
    return found


@dataclass
class Res:
    """A resource for a stack rule: type, name, props and an optional parent."""

    type: str
    name: str
    props: dict[str, Any]
    parent: Res | None = None
    deps: dict[str, list[Res]] = field(default_factory=dict)


def stack_violations(policy: Policy, resources: Sequence[Res], *, config: Mapping[str, Any] | None = None,
                     stack: str = "dev", production: bool | None = None) -> list[tuple[str, str]]:
    """(urn, message) pairs a stack rule reports for these resources."""
    assert isinstance(policy, StackValidationPolicy)
    built: dict[int, PolicyResource] = {}
    for res in resources:
        built[id(res)] = PolicyResource(res.type, res.props, urn(res.type, res.name, stack), res.name, OPTIONS, None,
                                        None, [], {})
    for res in resources:
        resource = built[id(res)]
        resource.parent = built.get(id(res.parent)) if res.parent else None
        resource.property_dependencies = {key: [built[id(d)] for d in deps] for key, deps in res.deps.items()}
    found: list[tuple[str, str]] = []
    values = rule_config(policy, {policy.name: dict(config or {})})
    with stack_context(StackContext(stack=stack, production=production)):
        policy.validate(StackValidationArgs(list(built.values()), values),
                        lambda message, u=None: found.append((u or "", message)))
    return found


def graph(stack: str, resources: Sequence[Res]) -> Graph:
    """An offline Graph holding these resources (for engine and CLI tests)."""
    return Graph(stack=stack, resources=sorted((Resource(
        urn=urn(r.type, r.name, stack), type=r.type, name=r.name,
        parent=urn(r.parent.type, r.parent.name, stack) if r.parent else "", provider="", inputs=r.props,
    ) for r in resources), key=lambda r: r.urn))


def k8s(api_version: str, kind: str, name: str, spec: dict[str, Any], *, namespace: str | None = "apps",
        labels: dict[str, str] | None = None) -> dict[str, Any]:
    """A Kubernetes object in the wire format."""
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    if labels:
        meta["labels"] = labels
    return {"apiVersion": api_version, "kind": kind, "metadata": meta, "spec": spec}


def k8s_type(obj: Mapping[str, Any]) -> str:
    """The Pulumi type token of a Kubernetes object (`kubernetes:apps/v1:Deployment`)."""
    api_version = str(obj["apiVersion"])
    group_version = api_version if "/" in api_version else f"core/{api_version}"
    return f"kubernetes:{group_version}:{obj['kind']}"


REPO = Path(__file__).resolve().parents[2]
SCRATCH_PATHS = ("infra", "policies", "workloads", "stacks", "Pulumi.yaml")
"""What a render needs: the program, the policy pack, the workloads' contracts the program imports, the stack files
and the project file."""


def scratch_copy(destination: Path) -> Path:
    """A copy of the repository's program, pack and stacks to edit freely (no caches)."""
    destination.mkdir(parents=True, exist_ok=True)
    for name in SCRATCH_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def edit(path: Path, old: str, new: str) -> None:
    """Replace one exact snippet in a file, failing loudly when the snippet is not there."""
    text = path.read_text()
    assert text.count(old) == 1, f"expected exactly one {old!r} in {path}"
    path.write_text(text.replace(old, new))


def git(repo: Path, *args: str) -> str:
    """Run git in `repo` with a fixed identity; returns stdout, raises on failure."""
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
                          check=True, capture_output=True, text=True).stdout


def gpu_limit_repo(destination: Path) -> Path:
    """A scratch git repo: the program at HEAD~1, then one commit raising the dev gpu-train pool's GPU limit 4 → 8."""
    tree = scratch_copy(destination)
    git(tree, "init", "--quiet", "--initial-branch=main")
    git(tree, "add", ".")
    git(tree, "commit", "--quiet", "-m", "base")
    edit(tree / "stacks" / "Pulumi.dev.yaml", "gpuLimit: 4\n", "gpuLimit: 8\n")
    git(tree, "commit", "--quiet", "-am", "raise the gpu-train GPU limit")
    return tree


def modelplane(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m infra.review.cli ARGS` with the code in `cwd` (not the installed tree)."""
    env = {**os.environ, "PYTHONPATH": str(cwd), "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "infra.review.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False, timeout=600)
