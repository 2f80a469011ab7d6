"""`modelplane`: render, preview and deploy the platform, offline first."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

import infra
from infra.config.errors import ConfigError
from infra.review import baseline, reads
from infra.review import diff as diffs
from infra.review import report as verdicts
from infra.review.cost import delta as deltas
from infra.review.cost import estimate as costs
from infra.review.engine import list_stacks, load_stack_config, render
from infra.review.graph import Graph
from infra.review.manifests import write_manifests
from infra.review.policy import PolicyConfigError, Violation, evaluate, validate_config
from infra.review.project import Project, ProjectNotFoundError, find_project
from policies.rules import ALL_POLICIES

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Render, review and deploy modelplane stacks.")
out_console = Console()
err_console = Console(stderr=True)

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


def _project() -> Project:
    """The project holding the current directory, found like `pulumi` does; exit 2 when there is none, or when the
    imported program is another checkout's."""
    try:
        project = find_project()
    except ProjectNotFoundError as exc:
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc
    program = Path(infra.__file__).resolve().parent.parent
    if program != project.root:
        # The program renders from the imported `infra` package: rendering another checkout's code would show
        # results that are not this project's.
        err_console.print(f"error: this modelplane runs the program installed from {program}, not the one of the "
                          f"project in {project.root}. Fix: run that project's own venv ({project.root}/.venv/bin/"
                          f"modelplane), or install it into this one with `pip install -e {project.root}`",
                          markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2)
    return project


def _stacks(stacks_dir: Path | None) -> Path:
    return stacks_dir or _project().stacks_dir


def _render_or_exit(stack: str, stacks_dir: Path) -> Graph:
    try:
        return render(stack, stacks_dir)
    except ConfigError as exc:
        # Markup off: config messages contain brackets ("[on-demand]", "[0]") that Rich would eat.
        err_console.print(f"error: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc


@app.command("render")
def render_cmd(
    stack: StackOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for graph.json and manifests/.")],
    as_json: JsonOption = False,
    stacks_dir: StacksDirOption = None,
) -> None:
    """Render one stack offline into OUT/graph.json and OUT/manifests/."""
    graph = _render_or_exit(stack, _stacks(stacks_dir))
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


def _policy_config(path: Path | None) -> dict[str, object]:
    if path is None:
        return {}
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        err_console.print(f"error: --policy-config {path}: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc
    if not isinstance(config, dict):
        err_console.print(f"[bold red]error:[/] --policy-config {path}: must be a JSON object keyed by rule name")
        raise typer.Exit(code=2)
    try:
        validate_config(config)
    except PolicyConfigError as exc:
        err_console.print(f"error: --policy-config {path}: {exc}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc
    return config


def _stack_setting(stack: str, stacks_dir: Path, key: str) -> object:
    # Read straight from the stack file, as `pulumi.Config` does under the real analyzer: an unset key is None.
    return load_stack_config(stack, stacks_dir).get(key)


def _check(graph: Graph, stacks_dir: Path, config: dict[str, object]) -> list[Violation]:
    production = _stack_setting(graph.stack, stacks_dir, "modelplane:production")
    return evaluate(graph, config, production=production if isinstance(production, bool) else None)


def _estimate(graph: Graph, stacks_dir: Path, spot_discount: float | None, s3_gb: float | None,
              nat_gb: float | None) -> costs.CostReport:
    prices = costs.load_prices()
    assumptions = costs.Assumptions.defaults(prices, spot_discount=spot_discount, s3_gb_per_bucket=s3_gb,
                                             nat_gb_per_month=nat_gb)
    region = _stack_setting(graph.stack, stacks_dir, "aws:region")
    return costs.estimate(graph, prices, assumptions, region=region if isinstance(region, str) else None)


@app.command()
def policy(
    stack: Annotated[str | None, typer.Option("--stack", "-s", help="Stack name (not needed with --list).")] = None,
    as_json: JsonOption = False,
    output: Annotated[verdicts.Format, typer.Option("--format", help="sarif: code scanning; junit: CI test reports.")]
    = verdicts.Format.TEXT,
    list_rules: Annotated[bool, typer.Option("--list", help="List the pack's rules with level and description.")] = False,
    stacks_dir: StacksDirOption = None,
    policy_config: PolicyConfigOption = None,
) -> None:
    """Evaluate the policy pack's rules over a stack's offline graph; exit 1 on any mandatory violation."""
    if list_rules:
        out_console.print(verdicts.rule_table(ALL_POLICIES))
        return
    if stack is None:
        err_console.print("error: policy needs --stack NAME (or --list)", markup=False, highlight=False)
        raise typer.Exit(code=2)
    config = _policy_config(policy_config)
    folder = _stacks(stacks_dir)
    violations = _check(_render_or_exit(stack, folder), folder, config)
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


def _close(job: baseline.BaseRenderJob | baseline.DiffError) -> None:
    # Whatever happened to the working-tree render, the base subprocess and worktree must not outlive us.
    if isinstance(job, baseline.BaseRenderJob):
        job.close()


@app.command()
def diff(
    stack: StackOption,
    base: BaseOption = "HEAD",
    as_json: JsonOption = False,
    stacks_dir: StacksDirOption = None,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="Exit 3 when there are changes (for CI gates).")] = False,
) -> None:
    """Diff a stack's offline render against its render at git ref BASE: + create, - delete, ~ update, +- replace.

    Exit 2 when the diff cannot be computed, 1 when a change is one the cloud rejects, 3 with --exit-code on changes.
    """
    project = _project()
    folder = stacks_dir or project.stacks_dir
    job = baseline.start(base, [stack], repo=project.root, stacks_dir=folder)
    try:
        with reads.recording(project.root) as read:
            graph = _render_or_exit(stack, folder)
        found = diffs.diff_stacks({stack: graph}, base, job, read)[stack]
    finally:
        _close(job)
    if as_json:
        out_console.print_json(json.dumps(found.to_dict()))
    else:
        out_console.print(diffs.to_text(found), soft_wrap=True, highlight=False)
    if found.error:
        raise typer.Exit(code=2)
    if found.rejected:
        raise typer.Exit(code=1)
    if exit_code and found.changes:
        raise typer.Exit(code=3)


@app.command()
def cost(
    stack: StackOption,
    as_json: JsonOption = False,
    stacks_dir: StacksDirOption = None,
    spot_discount: SpotDiscountOption = None,
    s3_gb: S3GbOption = None,
    nat_gb: NatGbOption = None,
    base: Annotated[str | None, typer.Option("--base", "-b", help="Git ref: show the monthly change against it.")] = None,
    markdown: Annotated[bool, typer.Option("--markdown", help="Markdown (for PR comments).")] = False,
) -> None:
    """Estimate a stack's monthly cost per resource and in total from the dated price table (or its change)."""
    folder = _stacks(stacks_dir)
    if base is not None:
        _cost_delta(stack, folder, base, as_json, markdown, (spot_discount, s3_gb, nat_gb))
        return
    estimate = _estimate(_render_or_exit(stack, folder), folder, spot_discount, s3_gb, nat_gb)
    if markdown:
        out_console.print(costs.to_markdown(estimate), markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    if as_json:
        out_console.print_json(json.dumps(estimate.to_dict()))
        return
    out_console.print(costs.to_table(estimate))
    for warning in estimate.warnings:
        out_console.print(f"warning: {warning}", style="yellow", highlight=False, soft_wrap=True)


def _cost_delta(stack: str, folder: Path, base: str, as_json: bool, markdown: bool,
                usage: tuple[float | None, float | None, float | None]) -> None:
    project = _project()
    job = baseline.start(base, [stack], repo=project.root, stacks_dir=folder)
    try:
        with reads.recording(project.root) as read:
            graph = _render_or_exit(stack, folder)
        found = diffs.collect_base({stack: graph}, job, read).get(stack, baseline.BaseRender(None))
    except baseline.DiffError as exc:
        found = baseline.BaseRender(None, error=str(exc))
    finally:
        _close(job)
    if found.error:
        err_console.print(f"error: no base for {stack} at {base}: {found.error}", markup=False, soft_wrap=True)
        raise typer.Exit(code=2)
    before = _estimate(found.graph, folder, *usage) if found.graph is not None else None
    delta = deltas.cost_delta(before, _estimate(graph, folder, *usage), base=base)
    if as_json:
        out_console.print_json(json.dumps(delta.to_dict()))
    elif markdown:
        out_console.print(deltas.to_markdown(delta), markup=False, highlight=False, emoji=False, soft_wrap=True)
    else:
        out_console.print(deltas.to_table(delta))


def _overview(rows: list[dict[str, object]]) -> Table:
    table = Table(title="modelplane preview", title_justify="left")
    table.add_column("stack")
    table.add_column("resources", justify="right")
    table.add_column("policy")
    table.add_column("changes")
    table.add_column("monthly cost", justify="right")
    for row in rows:
        table.add_row(*(str(row[key]) for key in ("stack", "resources", "policy", "changes", "cost")))
    return table


def _changes_cell(found: diffs.StackDiff) -> str:
    if found.error:
        return "diff unavailable"
    counts = found.counts()
    return f"+{counts['create']} ~{counts['update']} +-{counts['replace']} -{counts['delete']}"


@app.command()
def preview(
    stack: Annotated[str, typer.Option("--stack", "-s", help="A stack name, or 'all'.")] = "all",
    base: BaseOption = "HEAD",
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="One Markdown document (for PR comments).")] = False,
    stacks_dir: StacksDirOption = None,
    policy_config: PolicyConfigOption = None,
) -> None:
    """For every stack (or one): render offline, check the policy pack, diff against BASE, estimate cost.

    Exit 2 when a stack's config is invalid, 1 when a mandatory policy is violated, else 0.
    """
    config = _policy_config(policy_config)
    project = _project()
    stacks_dir = stacks_dir or project.stacks_dir
    stacks = list_stacks(stacks_dir) if stack == "all" else [stack]
    # The base renders in a subprocess while this process renders the working tree.
    job = baseline.start(base, stacks, repo=project.root, stacks_dir=stacks_dir)
    graphs: dict[str, Graph] = {}
    seconds: dict[str, float] = {}
    failed = False
    try:
        with reads.recording(project.root) as read:
            for name in stacks:
                started = time.perf_counter()
                try:
                    graphs[name] = render(name, stacks_dir)
                except ConfigError as exc:
                    err_console.print(f"{name}: {exc}", markup=False, highlight=False, soft_wrap=True)
                    failed = True
                    continue
                seconds[name] = time.perf_counter() - started
        found_diffs = diffs.diff_stacks(graphs, base, job, read)
    finally:
        _close(job)
    report, rows, sections = [], [], []
    mandatory = 0
    for name, graph in graphs.items():
        violations = _check(graph, stacks_dir, config)
        estimate = _estimate(graph, stacks_dir, None, None, None)
        mandatory += verdicts.counts(violations)["mandatory"]
        report.append({"stack": name, "resources": len(graph.resources), "seconds": round(seconds[name], 3),
                       "types": dict(sorted(Counter(r.type for r in graph.resources).items())),
                       "policy": verdicts.to_dict(name, violations, len(ALL_POLICIES)),
                       "diff": found_diffs[name].to_dict(), "cost": estimate.to_dict()})
        rows.append({"stack": name, "resources": len(graph.resources), "policy": verdicts.summary_line(violations),
                     "changes": _changes_cell(found_diffs[name]),
                     "cost": costs.span(estimate.total_min, estimate.total_max)})
        sections.append((name, violations, found_diffs[name], estimate))
    if as_json:
        out_console.print_json(json.dumps({"base": base, "passed": mandatory == 0 and not failed, "stacks": report}))
    elif markdown:
        out_console.print(_markdown(base, rows, sections), markup=False, highlight=False, emoji=False, soft_wrap=True)
    else:
        _print_preview(rows, sections)
    if failed:
        raise typer.Exit(code=2)
    if mandatory:
        raise typer.Exit(code=1)


Section = tuple[str, list[Violation], diffs.StackDiff, costs.CostReport]


def _print_preview(rows: list[dict[str, object]], sections: list[Section]) -> None:
    out_console.print(_overview(rows))
    for name, violations, found, estimate in sections:
        out_console.rule(f"[bold]{name}")
        out_console.print(verdicts.to_text(name, violations, len(ALL_POLICIES)), soft_wrap=True, highlight=False)
        out_console.print(diffs.to_text(found), soft_wrap=True, highlight=False)
        scaling = [line for line in estimate.lines if line.is_range]
        out_console.print(f"cost {name}: {costs.span(estimate.total_min, estimate.total_max)} per month "
                          f"(`modelplane cost --stack {name}` for every line)", markup=False, highlight=False, emoji=False)
        for line in scaling:
            out_console.print(f"  {line.name}: {costs.span(line.monthly_min, line.monthly_max)}  {line.basis}",
                              markup=False, highlight=False, emoji=False, soft_wrap=True)
        for warning in estimate.warnings:
            out_console.print(f"  warning: {warning}", style="yellow", markup=False, highlight=False, emoji=False, soft_wrap=True)


def _markdown(base: str, rows: list[dict[str, object]], sections: list[Section]) -> str:
    lines = ["## modelplane preview", "", f"Offline render of every stack, diffed against `{base}`.", "",
             "| stack | resources | policy | changes | monthly cost |", "|---|---|---|---|---|"]
    lines += [f"| {r['stack']} | {r['resources']} | {r['policy']} | {r['changes']} | {r['cost']} |" for r in rows]
    for name, violations, found, estimate in sections:
        lines += ["", f"<details><summary><b>{name}</b>: {verdicts.summary_line(violations)}, "
                      f"{_changes_cell(found)}</summary>", ""]
        if violations:
            lines += [verdicts.to_markdown(violations), ""]
        lines += [diffs.to_markdown(found), "", costs.to_markdown(estimate), "", "</details>"]
    return "\n".join(lines)


@app.command()
def up(stack: StackOption, stacks_dir: StacksDirOption = None) -> None:
    """Run `pulumi up` for a stack with the policy pack, when the Pulumi CLI is installed."""
    pulumi_cli = shutil.which("pulumi")
    if pulumi_cli is None:
        err_console.print("the Pulumi CLI is not installed: see https://www.pulumi.com/docs/install/ "
                          "(`modelplane preview` works without it)")
        raise typer.Exit(code=127)
    project = _project()
    _render_or_exit(stack, stacks_dir or project.stacks_dir)  # fail fast on invalid config before touching the cloud
    result = subprocess.run(
        [pulumi_cli, "up", "--stack", stack, "--policy-pack", str(project.root / "policies")], cwd=project.root,
        check=False,
    )
    raise typer.Exit(code=result.returncode)


if __name__ == "__main__":
    app()
