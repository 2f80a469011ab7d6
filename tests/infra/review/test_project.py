"""The CLI works on the project it is run in: it walks up from the current directory to Pulumi.yaml, like `pulumi`."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from infra.review.project import ProjectNotFoundError, find_project
from tests.policies.helpers import REPO, edit, scratch_copy

INSTALLED = Path(sys.executable).parent / "modelplane"
"""The `modelplane` command of the venv running the tests (an editable install of this checkout)."""


def run_cli(cwd: Path, *args: str, code: Path = REPO) -> subprocess.CompletedProcess[str]:
    """`modelplane ARGS` run in `cwd`, with the program imported from `code`."""
    env = {**os.environ, "PYTHONPATH": str(code), "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "250"}
    return subprocess.run([sys.executable, "-m", "infra.review.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False, timeout=600)


def test_the_project_is_found_from_any_folder_below_it() -> None:
    project = find_project(REPO / "stacks")
    assert (project.root, project.name, project.stacks_dir) == (REPO, "modelplane", REPO / "stacks")


def test_stack_files_default_to_the_project_folder(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("name: other\nruntime: python\n")
    (tmp_path / "deep" / "er").mkdir(parents=True)
    assert find_project(tmp_path / "deep" / "er").stacks_dir == tmp_path


def test_a_project_file_without_a_name_is_an_error_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.yaml").write_text("runtime: python\n")
    with pytest.raises(ProjectNotFoundError, match=r"Pulumi.yaml: must be a map with a string 'name'"):
        find_project(tmp_path)


def test_render_from_the_stacks_folder_renders_the_project_it_is_in(tmp_path: Path) -> None:
    """`cd stacks && modelplane render --stack dev --out DIR`, with the installed command."""
    result = subprocess.run([str(INSTALLED), "render", "--stack", "dev", "--out", str(tmp_path / "out")],
                            cwd=REPO / "stacks", capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    graph = json.loads((tmp_path / "out" / "graph.json").read_text())
    assert graph["stack"] == "dev" and graph["resources"]


def test_stack_files_come_from_the_projects_stack_config_dir(tmp_path: Path) -> None:
    tree = scratch_copy(tmp_path / "tree")
    (tree / "stacks").rename(tree / "config")
    edit(tree / "Pulumi.yaml", "stackConfigDir: stacks", "stackConfigDir: config")
    edit(tree / "config" / "Pulumi.dev.yaml", "gpuLimit: 4\n", "gpuLimit: 8\n")
    result = run_cli(tree / "config", "render", "--stack", "dev", "--out", str(tmp_path / "out"), code=tree)
    assert result.returncode == 0, result.stdout + result.stderr
    graph = json.loads((tmp_path / "out" / "graph.json").read_text())
    [pool] = [r for r in graph["resources"] if r["name"] == "gpu-pool-gpu-train"]
    assert pool["inputs"]["spec"]["limits"]["nvidia.com/gpu"] == 8


def test_outside_any_project_the_cli_exits_2_saying_no_pulumi_yaml_was_found(tmp_path: Path) -> None:
    assert not [p for p in (tmp_path, *tmp_path.parents) if (p / "Pulumi.yaml").exists()]
    result = run_cli(tmp_path, "render", "--stack", "dev", "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"no Pulumi.yaml found in {tmp_path.resolve()} or any parent directory" in result.stderr
    assert "Fix: run modelplane inside the project" in result.stderr
    assert not (tmp_path / "out").exists()


def test_running_another_checkouts_program_exits_2_naming_both_and_the_fix(tmp_path: Path) -> None:
    tree = scratch_copy(tmp_path / "tree")
    result = subprocess.run([str(INSTALLED), "render", "--stack", "local", "--out", str(tmp_path / "out")], cwd=tree,
                            capture_output=True, text=True, check=False, timeout=600)
    assert result.returncode == 2, result.stdout + result.stderr
    stderr = " ".join(result.stderr.split())
    assert f"runs the program installed from {REPO}, not the one of the project in {tree.resolve()}" in stderr
    assert f"Fix: run that project's own venv ({tree.resolve()}/.venv/bin/modelplane)" in stderr
    assert f"`pip install -e {tree.resolve()}`" in stderr
    assert not (tmp_path / "out").exists()
