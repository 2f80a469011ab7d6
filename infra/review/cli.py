"""`modelplane`: render, preview and deploy the platform, offline first.

This module is the Typer app and `modelplane preview`; the other commands live in `cli_stack` (render, policy,
up) and `cli_base` (diff, cost), and are registered here in the order `--help` lists them.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Annotated

import typer
from rich.table import Table

from infra.config.errors import ConfigError
from infra.review import baseline, cli_base, cli_stack, reads
from infra.review import diff as diffs
from infra.review import report as verdicts
from infra.review.cli_common import (
    BaseOption,
    JsonOption,
    PolicyConfigOption,
    StacksDirOption,
    check,
    checked_stacks_dir,
    close,
    err_console,
    estimate,
    out_console,
    policy_config,
    project,
)
from infra.review.cost import estimate as costs
from infra.review.engine import list_stacks, render
from infra.review.graph import Graph
from infra.review.policy import Violation
from policies.rules import ALL_POLICIES

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Render, review and deploy modelplane stacks.")


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


def preview(
    stack: Annotated[str, typer.Option("--stack", "-s", help="A stack name, or 'all'.")] = "all",
    base: BaseOption = "HEAD",
    as_json: JsonOption = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="One Markdown document (for PR comments).")] = False,
    stacks_dir: StacksDirOption = None,
    policy_config_file: PolicyConfigOption = None,
) -> None:
    """For every stack (or one): render offline, check the policy pack, diff against BASE, estimate cost.

    Exit 2 when a stack's config is invalid; 1 when a mandatory policy is violated or the diff holds a change the
    cloud rejects (as `modelplane diff`); else 0.
    """
    config = policy_config(policy_config_file)
    found_project = project()
    stacks_dir = checked_stacks_dir(stacks_dir, found_project)
    stacks = list_stacks(stacks_dir) if stack == "all" else [stack]
    # The base renders in a subprocess while this process renders the working tree.
    job = baseline.start(base, stacks, repo=found_project.root, stacks_dir=stacks_dir)
    graphs: dict[str, Graph] = {}
    seconds: dict[str, float] = {}
    failed = False
    try:
        with reads.recording(found_project.root) as read:
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
        close(job)
    report, rows, sections = [], [], []
    mandatory = 0
    for name, graph in graphs.items():
        violations = check(graph, stacks_dir, config)
        cost = estimate(graph, stacks_dir, None, None, None)
        mandatory += verdicts.counts(violations)["mandatory"]
        report.append({"stack": name, "resources": len(graph.resources), "seconds": round(seconds[name], 3),
                       "types": dict(sorted(Counter(r.type for r in graph.resources).items())),
                       "policy": verdicts.to_dict(name, violations, len(ALL_POLICIES)),
                       "diff": found_diffs[name].to_dict(), "cost": cost.to_dict()})
        rows.append({"stack": name, "resources": len(graph.resources), "policy": verdicts.summary_line(violations),
                     "changes": _changes_cell(found_diffs[name]),
                     "cost": costs.span(cost.total_min, cost.total_max)})
        sections.append((name, violations, found_diffs[name], cost))
    rejected = [f"{name}: {reason}" for name in graphs for reason in found_diffs[name].rejected]
    if as_json:
        passed = mandatory == 0 and not rejected and not failed
        out_console.print_json(json.dumps({"base": base, "passed": passed, "stacks": report}))
    elif markdown:
        out_console.print(_markdown(base, rows, sections), markup=False, highlight=False, emoji=False, soft_wrap=True)
    else:
        _print_preview(rows, sections)
    if failed:
        raise typer.Exit(code=2)
    for line in rejected:
        err_console.print(f"error: rejected by the cloud: {line}", markup=False, highlight=False, soft_wrap=True)
    if rejected:
        raise typer.Exit(code=cli_base.DIFF_REJECTED_EXIT)
    if mandatory:
        raise typer.Exit(code=1)


Section = tuple[str, list[Violation], diffs.StackDiff, costs.CostReport]


def _print_preview(rows: list[dict[str, object]], sections: list[Section]) -> None:
    out_console.print(_overview(rows))
    for name, violations, found, cost in sections:
        out_console.rule(f"[bold]{name}")
        out_console.print(verdicts.to_text(name, violations, len(ALL_POLICIES)), soft_wrap=True, highlight=False)
        out_console.print(diffs.to_text(found), soft_wrap=True, highlight=False)
        scaling = [line for line in cost.lines if line.is_range]
        out_console.print(f"cost {name}: {costs.span(cost.total_min, cost.total_max)} per month "
                          f"(`modelplane cost --stack {name}` for every line)", markup=False, highlight=False, emoji=False)
        for line in scaling:
            out_console.print(f"  {line.name}: {costs.span(line.monthly_min, line.monthly_max)}  {line.basis}",
                              markup=False, highlight=False, emoji=False, soft_wrap=True)
        for warning in cost.warnings:
            out_console.print(f"  warning: {warning}", style="yellow", markup=False, highlight=False, emoji=False, soft_wrap=True)


def _markdown(base: str, rows: list[dict[str, object]], sections: list[Section]) -> str:
    lines = ["## modelplane preview", "", f"Offline render of every stack, diffed against `{base}`.", "",
             "| stack | resources | policy | changes | monthly cost |", "|---|---|---|---|---|"]
    lines += [f"| {r['stack']} | {r['resources']} | {r['policy']} | {r['changes']} | {r['cost']} |" for r in rows]
    for name, violations, found, cost in sections:
        lines += ["", f"<details><summary><b>{name}</b>: {verdicts.summary_line(violations)}, "
                      f"{_changes_cell(found)}</summary>", ""]
        if violations:
            lines += [verdicts.to_markdown(violations), ""]
        lines += [diffs.to_markdown(found), "", costs.to_markdown(cost), "", "</details>"]
    return "\n".join(lines)


# Registered in this order, the order `modelplane --help` lists them.
app.command("render")(cli_stack.render_cmd)
app.command("policy")(cli_stack.policy)
app.command("diff")(cli_base.diff)
app.command("cost")(cli_base.cost)
app.command("preview")(preview)
app.command("up")(cli_stack.up)


if __name__ == "__main__":
    app()
