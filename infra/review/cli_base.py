"""The commands that compare a stack with its render at a git ref: `modelplane diff` and `modelplane cost`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from infra.review import baseline, reads
from infra.review import diff as diffs
from infra.review.cli_common import (
    BaseOption,
    JsonOption,
    NatGbOption,
    S3GbOption,
    SpotDiscountOption,
    StackOption,
    StacksDirOption,
    checked_stacks_dir,
    close,
    err_console,
    estimate,
    out_console,
    project,
    render_or_exit,
)
from infra.review.cost import delta as deltas
from infra.review.cost import estimate as costs

DIFF_REJECTED_EXIT = 1
"""The exit code of `modelplane diff` and `modelplane preview` when a change is one the cloud rejects."""


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
    found_project = project()
    folder = checked_stacks_dir(stacks_dir, found_project)
    job = baseline.start(base, [stack], repo=found_project.root, stacks_dir=folder)
    try:
        with reads.recording(found_project.root) as read:
            graph = render_or_exit(stack, folder)
        found = diffs.diff_stacks({stack: graph}, base, job, read)[stack]
    finally:
        close(job)
    if as_json:
        out_console.print_json(json.dumps(found.to_dict()))
    else:
        out_console.print(diffs.to_text(found), soft_wrap=True, highlight=False)
    if found.error:
        raise typer.Exit(code=2)
    if found.rejected:
        raise typer.Exit(code=DIFF_REJECTED_EXIT)
    if exit_code and found.changes:
        raise typer.Exit(code=3)


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
    folder = checked_stacks_dir(stacks_dir)
    if base is not None:
        _cost_delta(stack, folder, base, as_json, markdown, (spot_discount, s3_gb, nat_gb))
        return
    report = estimate(render_or_exit(stack, folder), folder, spot_discount, s3_gb, nat_gb)
    if markdown:
        out_console.print(costs.to_markdown(report), markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    if as_json:
        out_console.print_json(json.dumps(report.to_dict()))
        return
    out_console.print(costs.to_table(report))
    for warning in report.warnings:
        out_console.print(f"warning: {warning}", style="yellow", highlight=False, soft_wrap=True)


def _cost_delta(stack: str, folder: Path, base: str, as_json: bool, markdown: bool,
                usage: tuple[float | None, float | None, float | None]) -> None:
    found_project = project()
    job = baseline.start(base, [stack], repo=found_project.root, stacks_dir=folder)
    try:
        with reads.recording(found_project.root) as read:
            graph = render_or_exit(stack, folder)
        found = diffs.collect_base({stack: graph}, job, read).get(stack, baseline.BaseRender(None))
    except baseline.DiffError as exc:
        found = baseline.BaseRender(None, error=str(exc))
    finally:
        close(job)
    if found.error:
        err_console.print(f"error: no base for {stack} at {base}: {found.error}", markup=False, soft_wrap=True)
        raise typer.Exit(code=2)
    before = estimate(found.graph, folder, *usage) if found.graph is not None else None
    delta = deltas.cost_delta(before, estimate(graph, folder, *usage), base=base)
    if as_json:
        out_console.print_json(json.dumps(delta.to_dict()))
    elif markdown:
        out_console.print(deltas.to_markdown(delta), markup=False, highlight=False, emoji=False, soft_wrap=True)
    else:
        out_console.print(deltas.to_table(delta))
