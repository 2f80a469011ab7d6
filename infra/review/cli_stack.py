"""The single-stack commands: `modelplane render`, `modelplane policy` and `modelplane up`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

from infra.review import report as verdicts
from infra.review.cli_common import (
    JsonOption,
    PolicyConfigOption,
    StackOption,
    StacksDirOption,
    check,
    checked_stacks_dir,
    err_console,
    out_console,
    policy_config,
    project,
    render_or_exit,
)
from infra.review.manifests import write_manifests
from policies.rules import ALL_POLICIES


def render_cmd(
    stack: StackOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for graph.json and manifests/.")],
    as_json: JsonOption = False,
    stacks_dir: StacksDirOption = None,
) -> None:
    """Render one stack offline into OUT/graph.json and OUT/manifests/."""
    graph = render_or_exit(stack, checked_stacks_dir(stacks_dir))
    out.mkdir(parents=True, exist_ok=True)
    (out / "graph.json").write_text(graph.to_json())
    manifests = out / "manifests"
    if manifests.exists():
        shutil.rmtree(manifests)
    written = write_manifests(graph, manifests)
    summary = {"stack": stack, "resources": len(graph.resources), "manifests": len(written), "out": str(out)}
    if as_json:
        out_console.print_json(json.dumps(summary))
    else:
        out_console.print(f"rendered [bold]{stack}[/]: {len(graph.resources)} resources, "
                          f"{len(written)} manifest files → {out}")


def policy(
    stack: Annotated[str | None, typer.Option("--stack", "-s", help="Stack name (not needed with --list).")] = None,
    as_json: JsonOption = False,
    output: Annotated[verdicts.Format, typer.Option("--format", help="sarif: code scanning; junit: CI test reports.")]
    = verdicts.Format.TEXT,
    list_rules: Annotated[bool, typer.Option("--list", help="List the pack's rules with level and description.")] = False,
    stacks_dir: StacksDirOption = None,
    policy_config_file: PolicyConfigOption = None,
) -> None:
    """Evaluate the policy pack's rules over a stack's offline graph; exit 1 on any mandatory violation."""
    if list_rules:
        out_console.print(verdicts.rule_table(ALL_POLICIES))
        return
    if stack is None:
        err_console.print("error: policy needs --stack NAME (or --list)", markup=False, highlight=False)
        raise typer.Exit(code=2)
    config = policy_config(policy_config_file)
    folder = checked_stacks_dir(stacks_dir)
    violations = check(render_or_exit(stack, folder), folder, config)
    if output in (verdicts.Format.SARIF, verdicts.Format.JUNIT):
        text = verdicts.to_sarif(stack, violations, ALL_POLICIES, f"{folder.name}/Pulumi.{stack}.yaml") \
            if output == verdicts.Format.SARIF else verdicts.to_junit(stack, violations, ALL_POLICIES)
        out_console.print(text, markup=False, highlight=False, soft_wrap=True)
    elif as_json or output == verdicts.Format.JSON:
        out_console.print_json(json.dumps(verdicts.to_dict(stack, violations, len(ALL_POLICIES))))
    else:
        out_console.print(verdicts.to_text(stack, violations, len(ALL_POLICIES)), soft_wrap=True, highlight=False)
    if not verdicts.passed(violations):
        raise typer.Exit(code=1)


def up(stack: StackOption, stacks_dir: StacksDirOption = None) -> None:
    """Run `pulumi up` for a stack with the policy pack, when the Pulumi CLI is installed."""
    pulumi_cli = shutil.which("pulumi")
    if pulumi_cli is None:
        err_console.print("the Pulumi CLI is not installed: see https://www.pulumi.com/docs/install/ "
                          "(`modelplane preview` works without it)")
        raise typer.Exit(code=127)
    found = project()
    render_or_exit(stack, checked_stacks_dir(stacks_dir, found))  # fail fast on invalid config before the cloud
    result = subprocess.run(
        [pulumi_cli, "up", "--stack", stack, "--policy-pack", str(found.root / "policies")], cwd=found.root,
        check=False,
    )
    raise typer.Exit(code=result.returncode)
