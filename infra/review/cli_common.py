"""What every `modelplane` command shares: the consoles, the option types, finding the project and its stacks,
rendering with config errors as exit 2, the validated policy config, and the per-stack policy and cost runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

import infra
from infra.config.errors import ConfigError
from infra.review import baseline
from infra.review.cost import estimate as costs
from infra.review.engine import load_stack_config, render
from infra.review.graph import Graph
from infra.review.policy import PolicyConfigError, Violation, evaluate, validate_config
from infra.review.project import PROJECT_FILE, Project, ProjectNotFoundError, find_project

out_console = Console()
"""Results (stdout)."""
err_console = Console(stderr=True)
"""Errors and warnings (stderr)."""

StackOption = Annotated[str, typer.Option(
    "--stack", "-s", help="Stack name (Pulumi.<stack>.yaml in the project's stackConfigDir).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
StacksDirOption = Annotated[Path | None, typer.Option(
    "--stacks-dir", help="Folder of Pulumi.<stack>.yaml files. Defaults to the project's stackConfigDir.")]
PolicyConfigOption = Annotated[Path | None, typer.Option(
    "--policy-config", help="Policy pack config JSON, as for `pulumi preview --policy-pack-config`.")]
BaseOption = Annotated[str, typer.Option("--base", "-b", help="Git ref to diff against (a branch, tag or commit).")]
SpotDiscountOption = Annotated[float | None, typer.Option(
    "--spot-discount", min=0, max=0.99, help="Fraction off On-Demand for spot capacity. Defaults to the price table's.")]
S3GbOption = Annotated[float | None, typer.Option(
    "--s3-gb", min=0, help="Assumed GB stored per S3 bucket. Defaults to the price table's.")]
NatGbOption = Annotated[float | None, typer.Option(
    "--nat-gb", min=0, help="Assumed GB processed per NAT gateway per month. Defaults to the price table's.")]


def fail(message: str) -> NoReturn:
    """Print `error: MESSAGE` on stderr (markup off: messages hold brackets) and exit 2, the usage-error code."""
    err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def project() -> Project:
    """The project holding the current directory, found like `pulumi` does; exit 2 when there is none, or when the
    imported program is another checkout's."""
    try:
        found = find_project()
    except ProjectNotFoundError as exc:
        fail(str(exc))
    program = Path(infra.__file__).resolve().parent.parent
    if program != found.root:
        # The program renders from the imported `infra` package: rendering another checkout's code would show
        # results that are not this project's.
        fail(f"this modelplane runs the program installed from {program}, not the one of the project in "
             f"{found.root}. Fix: run that project's own venv ({found.root}/.venv/bin/modelplane), or install it "
             f"into this one with `pip install -e {found.root}`")
    return found


def checked_stacks_dir(stacks_dir: Path | None, found: Project | None = None) -> Path:
    """`--stacks-dir`, or the project's stackConfigDir; exit 2 naming the folder and the fix when it is missing."""
    if stacks_dir is not None:
        if not stacks_dir.is_dir():
            fail(f"--stacks-dir {stacks_dir}: no such directory. Fix: pass the folder that holds the "
                 f"Pulumi.<stack>.yaml files, or leave --stacks-dir out to use the project's stackConfigDir")
        return stacks_dir
    found = found or project()
    if not found.stacks_dir.is_dir():
        fail(f"stackConfigDir {found.stacks_dir} (from {found.root / PROJECT_FILE}) is not a directory. Fix: create "
             f"it with the Pulumi.<stack>.yaml files, or correct `stackConfigDir` in {PROJECT_FILE}")
    return found.stacks_dir


def render_or_exit(stack: str, stacks_dir: Path) -> Graph:
    """The stack's offline graph; exit 2 with every config issue when its config is invalid."""
    try:
        return render(stack, stacks_dir)
    except ConfigError as exc:
        # Markup off: config messages contain brackets ("[on-demand]", "[0]") that Rich would eat.
        fail(str(exc))


def policy_config(path: Path | None) -> dict[str, object]:
    """The `--policy-config` file, validated against each rule's config schema; exit 2 naming the problem."""
    if path is None:
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        fail(f"--policy-config {path}: {exc}")
    if not isinstance(config, dict):
        err_console.print(f"[bold red]error:[/] --policy-config {path}: must be a JSON object keyed by rule name")
        raise typer.Exit(code=2)
    try:
        validate_config(config)
    except PolicyConfigError as exc:
        fail(f"--policy-config {path}: {exc}")
    return config


def _stack_setting(stack: str, stacks_dir: Path, key: str) -> object:
    # Read straight from the stack file, as `pulumi.Config` does under the real analyzer: an unset key is None.
    return load_stack_config(stack, stacks_dir).get(key)


def check(graph: Graph, stacks_dir: Path, config: dict[str, object]) -> list[Violation]:
    """The policy pack's violations for a rendered stack (its `modelplane:production` setting applied)."""
    production = _stack_setting(graph.stack, stacks_dir, "modelplane:production")
    return evaluate(graph, config, production=production if isinstance(production, bool) else None)


def estimate(graph: Graph, stacks_dir: Path, spot_discount: float | None, s3_gb: float | None,
             nat_gb: float | None) -> costs.CostReport:
    """The monthly cost of a rendered stack in its region, from the dated price table and these usage assumptions."""
    prices = costs.load_prices()
    assumptions = costs.Assumptions.defaults(prices, spot_discount=spot_discount, s3_gb_per_bucket=s3_gb,
                                             nat_gb_per_month=nat_gb)
    region = _stack_setting(graph.stack, stacks_dir, "aws:region")
    return costs.estimate(graph, prices, assumptions, region=region if isinstance(region, str) else None)


def close(job: baseline.BaseRenderJob | baseline.DiffError) -> None:
    """Stop a base render: whatever happened to the working-tree render, its subprocess and worktree must not
    outlive the command."""
    if isinstance(job, baseline.BaseRenderJob):
        job.close()
