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

from infra.errors import ConfigError
from infra.manifests import write_manifests
from infra.render import REPO_ROOT, STACKS_DIR, Graph, list_stacks, render

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Render, review and deploy modelplane stacks.")
out_console = Console()
err_console = Console(stderr=True)

StackOption = Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
StacksDirOption = Annotated[Path, typer.Option("--stacks-dir", help="Folder of Pulumi.<stack>.yaml files.")]


def _render_or_exit(stack: str, stacks_dir: Path) -> Graph:
    try:
        return render(stack, stacks_dir)
    except ConfigError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from exc


@app.command("render")
def render_cmd(
    stack: StackOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder for graph.json and manifests/.")],
    as_json: JsonOption = False,
    stacks_dir: StacksDirOption = STACKS_DIR,
) -> None:
    """Render one stack offline into OUT/graph.json and OUT/manifests/."""
    graph = _render_or_exit(stack, stacks_dir)
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


def _summary_table(graph: Graph) -> Table:
    table = Table(title=f"stack {graph.stack}: {len(graph.resources)} resources", title_justify="left")
    table.add_column("type")
    table.add_column("count", justify="right")
    for type_, count in sorted(Counter(r.type for r in graph.resources).items()):
        table.add_row(type_, str(count))
    return table


@app.command()
def preview(
    stack: Annotated[str, typer.Option("--stack", "-s", help="A stack name, or 'all'.")] = "all",
    as_json: JsonOption = False,
    stacks_dir: StacksDirOption = STACKS_DIR,
) -> None:
    """Render every stack (or one) offline and summarise what each would declare."""
    stacks = list_stacks(stacks_dir) if stack == "all" else [stack]
    report = []
    failed = False
    for name in stacks:
        started = time.perf_counter()
        try:
            graph = render(name, stacks_dir)
        except ConfigError as exc:
            err_console.print(f"[bold red]{name}:[/] {exc}", highlight=False, soft_wrap=True)
            failed = True
            continue
        seconds = time.perf_counter() - started
        counts = Counter(r.type for r in graph.resources)
        report.append({"stack": name, "resources": len(graph.resources), "seconds": round(seconds, 3),
                       "types": dict(sorted(counts.items()))})
        if not as_json:
            out_console.print(_summary_table(graph))
            out_console.print(f"rendered in {seconds:.2f}s\n")
    if as_json:
        out_console.print_json(json.dumps({"stacks": report}))
    if failed:
        raise typer.Exit(code=2)


@app.command()
def up(stack: StackOption, stacks_dir: StacksDirOption = STACKS_DIR) -> None:
    """Run `pulumi up` for a stack with the policy pack, when the Pulumi CLI is installed."""
    pulumi_cli = shutil.which("pulumi")
    if pulumi_cli is None:
        err_console.print("the Pulumi CLI is not installed: see https://www.pulumi.com/docs/install/ "
                          "(`modelplane preview` works without it)")
        raise typer.Exit(code=127)
    _render_or_exit(stack, stacks_dir)  # fail fast on invalid config before touching the cloud
    result = subprocess.run(
        [pulumi_cli, "up", "--stack", stack, "--policy-pack", str(REPO_ROOT / "policies")], cwd=REPO_ROOT, check=False
    )
    raise typer.Exit(code=result.returncode)
