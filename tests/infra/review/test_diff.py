"""`modelplane diff`: property paths, resource-level changes, and renders of a git ref in a worktree."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from infra.review import baseline
from infra.review import diff as diffs
from infra.review.graph import Graph, Resource
from tests.policies.helpers import edit, git, gpu_limit_repo, modelplane, scratch_copy


def resource(name: str, inputs: dict, type_: str = "aws:s3/bucket:Bucket", provider: str = "") -> Resource:
    return Resource(urn=f"urn:pulumi:dev::modelplane::{type_}::{name}", type=type_, name=name, parent="",
                    provider=provider, inputs=inputs)


@pytest.mark.parametrize(("parts", "expected"), [
    (("spec", "limits", "nvidia.com/gpu"), 'spec.limits["nvidia.com/gpu"]'),
    (("tags", "cost-center"), 'tags["cost-center"]'),
    (("rules", 0, "applyServerSideEncryptionByDefault", "sseAlgorithm"),
     "rules[0].applyServerSideEncryptionByDefault.sseAlgorithm"),
    (("metadata", "labels", "app.kubernetes.io/name"), 'metadata.labels["app.kubernetes.io/name"]'),
])
def test_property_paths_read_like_pulumis(parts, expected) -> None:
    assert diffs.format_path(parts) == expected


def test_property_changes_name_each_leaf_with_old_and_new() -> None:
    old = {"a": 1, "b": {"c": [1, 2]}, "gone": "x", "flag": 1}
    new = {"a": 2, "b": {"c": [1, 3, 4]}, "added": True, "flag": True}
    found = {c.path: (c.old, c.new) for c in diffs.property_changes(old, new)}
    assert found == {"a": (1, 2), "b.c[1]": (2, 3), "b.c[2]": (diffs.MISSING, 4), "gone": ("x", diffs.MISSING),
                     "added": (diffs.MISSING, True), "flag": (1, True)}


def test_json_string_properties_are_diffed_as_documents() -> None:
    old = {"policy": json.dumps({"Statement": [{"Action": ["s3:GetObject"]}]})}
    new = {"policy": json.dumps({"Statement": [{"Action": ["s3:GetObject", "s3:PutObject"]}]})}
    [change] = diffs.property_changes(old, new)
    assert (change.path, change.old, change.new) == ("policy.Statement[0].Action[1]", diffs.MISSING, "s3:PutObject")


def test_secrets_stay_masked() -> None:
    old = Graph("dev", [resource("cache", {"authToken": "[secret]", "port": 6379})])
    new = Graph("dev", [resource("cache", {"authToken": "[secret]", "port": 6380})])
    found = diffs.diff_graphs(old, new, stack="dev", base="HEAD")
    assert [c.to_dict() for c in found.changes[0].changes] == [
        {"path": "port", "kind": "change", "old": 6379, "new": 6380}]


def test_graphs_diff_into_creates_updates_deletes_and_unchanged() -> None:
    old = Graph("dev", [resource("kept", {"x": 1}), resource("changed", {"x": 1}), resource("removed", {})])
    new = Graph("dev", [resource("kept", {"x": 1}), resource("changed", {"x": 2}), resource("added", {})])
    found = diffs.diff_graphs(old, new, stack="dev", base="main")
    assert {(c.op, c.name) for c in found.changes} == {("update", "changed"), ("delete", "removed"), ("create", "added")}
    assert found.counts() == {"create": 1, "update": 1, "replace": 0, "delete": 1, "same": 1}
    assert diffs.summary_line(found) == "1 to update, 0 to replace, 1 to create, 1 to delete, 1 unchanged"


def test_provider_changes_are_updates() -> None:
    old = Graph("dev", [resource("ns", {}, provider="urn:a")])
    new = Graph("dev", [resource("ns", {}, provider="urn:b")])
    assert diffs.diff_graphs(old, new, stack="dev", base="main").changes[0].changes[0].path == "(provider)"


def test_a_stack_new_since_the_base_is_all_creates() -> None:
    found = diffs.diff_graphs(None, Graph("qa", [resource("a", {})]), stack="qa", base="main")
    assert found.counts()["create"] == 1 and "does not exist at main" in found.notes[0]


def test_text_output_marks_each_resource_once_and_each_property_below_it() -> None:
    old = Graph("dev", [resource("b", {"versioning": "Suspended"})])
    new = Graph("dev", [resource("b", {"versioning": "Enabled"}), resource("c", {})])
    lines = [line for _, line in diffs.change_lines(diffs.diff_graphs(old, new, stack="dev", base="main"))]
    assert lines == ["(stack):", "  ~ Bucket b", '      versioning: "Suspended" → "Enabled"', "  + Bucket c"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A scratch git repo: the program at HEAD~1, then a commit raising one GPU pool's GPU limit."""
    return gpu_limit_repo(tmp_path_factory.mktemp("repo"))


def test_diff_against_the_previous_commit_shows_exactly_the_gpu_limit_update(repo: Path) -> None:
    result = modelplane(repo, "diff", "--stack", "dev", "--base", "HEAD~1")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    updates = [line for line in lines if line.startswith("  ~ ")]
    assert updates == ["  ~ NodePool gpu-pool-gpu-train"], result.stdout
    assert lines[lines.index(updates[0]) - 1] == "gpu:", "changes are grouped under their component"
    assert not [line for line in lines if line.startswith(("  + ", "  - ", "  +- "))]
    assert '      spec.limits["nvidia.com/gpu"]: 4 → 8' in lines
    assert "urn:pulumi" not in result.stdout, "the text diff shows short names"
    assert "1 to update, 0 to replace, 0 to create, 0 to delete" in result.stdout
    assert not git(repo, "worktree", "list").strip().count("\n"), "the temporary worktree was left behind"


def test_diff_json_is_one_document(repo: Path) -> None:
    result = modelplane(repo, "diff", "--stack", "dev", "--base", "HEAD~1", "--json")
    doc = json.loads(result.stdout)
    assert doc["summary"]["update"] == 1 and doc["error"] is None
    [change] = doc["changes"]
    assert change["changes"] == [{"path": 'spec.limits["nvidia.com/gpu"]', "kind": "change", "old": 4, "new": 8}]


def test_unchanged_tree_reuses_the_working_render(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_base_render(*args: object, **kwargs: object) -> None:
        raise AssertionError("the base should not be rendered again")

    monkeypatch.setattr(baseline, "_start_render", no_base_render)
    job = baseline.start("HEAD", ["dev"], repo=repo, stacks_dir=repo / "stacks")
    assert isinstance(job, baseline.BaseRenderJob) and job.reuse
    graph = Graph("dev", [resource("a", {})])
    assert job.collect({"dev": graph}, read=[repo / "infra" / "program.py"])["dev"].graph is graph


def test_a_change_the_render_did_not_read_stops_the_base_render(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    started: list[subprocess.Popen[str]] = []

    def slow_base_render(*args: object) -> subprocess.Popen[str]:
        started.append(subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], text=True))
        return started[0]

    monkeypatch.setattr(baseline, "_start_render", slow_base_render)
    notes = repo / "NOTES.md"
    notes.write_text("not read by any render\n")
    try:
        job = baseline.start("HEAD", ["dev"], repo=repo, stacks_dir=repo / "stacks")
        assert isinstance(job, baseline.BaseRenderJob) and not job.reuse and started
        graph = Graph("dev", [resource("a", {})])
        assert job.collect({"dev": graph}, read=[repo / "infra" / "program.py"])["dev"].graph is graph
    finally:
        notes.unlink()
    assert started[0].returncode is not None, "the base render was left running"
    assert not git(repo, "worktree", "list").strip().count("\n"), "the temporary worktree was left behind"


def test_only_the_paths_read_decide_whether_the_base_changed(repo: Path) -> None:
    head, previous = git(repo, "rev-parse", "HEAD").strip(), git(repo, "rev-parse", "HEAD~1").strip()
    stack_file, program = repo / "stacks" / "Pulumi.dev.yaml", repo / "infra" / "program.py"
    assert baseline.unchanged_since(head, repo, [stack_file, program])
    assert not baseline.unchanged_since(previous, repo, [stack_file])
    assert baseline.unchanged_since(previous, repo, [program])
    assert baseline.unchanged_since(previous, repo, [Path("/outside/the/repository")])


def test_untracked_files_under_a_path_read_count_as_changes(repo: Path) -> None:
    extra = repo / "infra" / "new_component.py"
    extra.write_text('"""A component not committed yet."""\n')
    try:
        head = git(repo, "rev-parse", "HEAD").strip()
        assert not baseline.unchanged_since(head, repo, [repo / "infra"])
        assert baseline.unchanged_since(head, repo, [repo / "infra" / "program.py"])
    finally:
        extra.unlink()


def test_a_metric_renamed_in_the_workloads_shows_in_the_diff(tmp_path: Path) -> None:
    """The program imports metric names from workloads/common/metrics.py: renaming one there changes rendered inputs."""
    tree = scratch_copy(tmp_path)
    git(tree, "init", "--quiet", "--initial-branch=main")
    git(tree, "add", ".")
    git(tree, "commit", "--quiet", "-m", "base")
    edit(tree / "workloads" / "common" / "metrics.py", 'INFERENCE_QUEUE_DEPTH: Final = "modelplane_inference_queue_depth"',
         'INFERENCE_QUEUE_DEPTH: Final = "modelplane_inference_queue_length"')
    result = modelplane(tree, "diff", "--stack", "dev", "--base", "HEAD", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    renamed = {(c["type"], p["path"]) for c in doc["changes"] for p in c.get("changes", [])
               if p.get("old") == "modelplane_inference_queue_depth" and p.get("new") == "modelplane_inference_queue_length"}
    assert ("kubernetes:autoscaling/v2:HorizontalPodAutoscaler", "spec.metrics[0].pods.metric.name") in renamed, doc


def test_unknown_ref_is_an_error_with_the_ref_named(repo: Path) -> None:
    result = modelplane(repo, "diff", "--stack", "local", "--base", "no-such-branch")
    assert result.returncode == 2
    assert "unknown git ref 'no-such-branch'" in result.stdout
