"""`modelplane:teams`: quotas that Karpenter could never supply, unknown pools and teams, duplicates, GPU quotas on
the local stack: each an error naming the key path and the team (or job), reported before anything renders."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from infra.config.base import cpu_cores
from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from infra.config.teams import RESERVED_NAMESPACE_PREFIX, RESERVED_NAMESPACES, TEAM_NAME_MAX
from infra.k8s.podspec import cpu_threads
from infra.review.cli import app
from tests.support.graph import load_platform_config, manifest_objects, render_variant, stack_config_with

runner = CliRunner()


def _team(name: str, *quotas: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "quotas": list(quotas), **extra}


GPU_TRAIN = {"pool": "gpu-train", "gpus": 2, "cpu": "16", "memory": "96Gi"}
CPU = {"pool": "cpu", "cpu": "8", "memory": "32Gi"}
TEAMS = [_team("research", GPU_TRAIN, CPU), _team("product", GPU_TRAIN, CPU)]

# (description, stack, changes, expected key path, expected message fragment)
INVALID: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("GPU quotas over the pool's gpuLimit", "dev",
     {"modelplane:teams": [_team("research", GPU_TRAIN), _team("product", {**GPU_TRAIN, "gpus": 3})]},
     "modelplane:teams[1].quotas[0].gpus",
     "nominal gpus quotas on pool 'gpu-train' sum to 5 (teams research, product), more than the pool's gpuLimit 4: "
     "Karpenter could never supply it"),
    ("CPU quotas over the CPU pool's cpuLimit", "dev",
     {"modelplane:teams": [_team("research", {**CPU, "cpu": "20"}), _team("product", {**CPU, "cpu": "20"})]},
     "modelplane:teams[1].quotas[0].cpu", "sum to 40 (teams research, product), more than the pool's cpuLimit 32"),
    ("memory quotas over the CPU pool's memoryLimit", "dev",
     {"modelplane:teams": [_team("research", {**CPU, "memory": "100Gi"}), _team("product", CPU)]},
     "modelplane:teams[1].quotas[0].memory", "sum to 132Gi (teams research, product), more than the pool's "
                                             "memoryLimit 128Gi"),
    ("unknown pool", "dev", {"modelplane:teams": [_team("research", {**GPU_TRAIN, "pool": "gpu-trian"})]},
     "modelplane:teams[0].quotas[0].pool",
     "team 'research': no node pool named 'gpu-trian' (pools: cpu, gpu-infer, gpu-train); did you mean 'gpu-train'?"),
    ("duplicate team name", "dev", {"modelplane:teams": [_team("research", CPU), _team("research", CPU,
                                                                                          namespace="other")]},
     "modelplane:teams[1].name", "duplicate team name 'research' (also teams[0])"),
    ("duplicate namespace", "dev", {"modelplane:teams": [_team("research", CPU),
                                                         _team("product", CPU, namespace="team-research")]},
     "modelplane:teams[1].namespace", "team 'product': duplicate namespace 'team-research' (also teams[0])"),
    ("GPU quota on the local stack", "local", {"modelplane:teams": [_team("ml", {"pool": "gpu-train", "gpus": 1})]},
     "modelplane:teams[0].quotas[0].pool",
     "team 'ml': the local stack has no pool 'gpu-train' (no GPU pools: CPU only); use pool 'cpu'"),
    ("GPUs on the CPU pool", "local", {"modelplane:teams": [_team("ml", {"pool": "cpu", "gpus": 1, "cpu": "2"})]},
     "modelplane:teams[0].quotas[0].gpus", "team 'ml': pool 'cpu' has no GPUs (got 1)"),
    ("lending more than the nominal quota", "dev",
     {"modelplane:teams": [_team("research", {**GPU_TRAIN, "lendingLimit": {"gpus": 3}})]},
     "modelplane:teams[0].quotas[0].lendingLimit.gpus", "team 'research': must be <= the nominal quota gpus (got 3 > 2)"),
    ("bad quantity", "dev", {"modelplane:teams": [_team("research", {**CPU, "memory": "32GB"})]},
     "modelplane:teams[0].quotas[0].memory", "team 'research': must be a Kubernetes memory quantity"),
    ("unknown preemption policy", "dev",
     {"modelplane:teams": [_team("research", CPU, preemption={"reclaimWithinCohort": "LowerOrNewerEqualPriority"})]},
     "modelplane:teams[0].preemption.reclaimWithinCohort", "'Never', 'LowerPriority' or 'Any'"),
    ("team name not a DNS label", "dev", {"modelplane:teams": [_team("Research", CPU)]},
     "modelplane:teams[0].name", "should match pattern"),
    ("team name too long for its trainer's IAM role", "dev", {"modelplane:teams": [_team("r" * 38, CPU)]},
     "modelplane:teams[0].name", f"team {'r' * 38!r}: name is 38 characters, more than 37: its trainer's IAM role "
                                 f"'teams-{'r' * 38}-trainer-role' plus Pulumi's 8-character suffix must fit IAM's 64"),
    *[(f"reserved namespace {ns}", "dev", {"modelplane:teams": [_team("research", CPU, namespace=ns)]},
       "modelplane:teams[0].namespace", f"team 'research': namespace {ns!r} is reserved for the platform")
      for ns in ("training", "inference", "kube-system", "kube-anything", "monitoring", "kueue-system", "istio-system",
                 "default")],
    ("GPU quotas over a time-sliced pool's slices", "dev",
     {"modelplane:inference": {"services": []}, "modelplane:teams": [_team("research", {"pool": "gpu-infer", "gpus": 9})]},
     "modelplane:teams[0].quotas[0].gpus", "sum to 9 (teams research), more than the pool's gpuLimit 2 × 4 "
                                           "time-slicing replicas = 8 GPU slices"),
    ("CPU quota bound is node capacity", "dev",
     {"modelplane:teams": [_team("research", {**CPU, "cpu": "40"})]},
     "modelplane:teams[0].quotas[0].cpu", "cpuLimit 32 (node capacity, not allocatable: an upper bound)"),
]


def _parse(stack: str, changes: dict[str, Any]) -> None:
    parse_config(stack, stack_config_with(stack, changes))


@pytest.mark.parametrize(("stack", "changes", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_teams_name_the_key_and_the_team(stack: str, changes: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        _parse(stack, changes)
    messages = [issue.message for issue in info.value.issues if issue.path == path]
    assert messages, f"{path} not named in:\n{info.value}"
    assert any(fragment in message for message in messages), messages


def test_a_job_naming_an_unknown_team_is_an_error_naming_the_job() -> None:
    config = stack_config_with("dev", {})
    config["modelplane:training"]["jobs"][0]["team"] = "reserch"
    with pytest.raises(ConfigError) as info:
        parse_config("dev", config)
    assert [str(i) for i in info.value.issues] == [
        "modelplane:training.jobs[0].team: job 'lm-small': no teams entry named 'reserch' (teams: product, research); "
        "did you mean 'research'?"]


def test_a_job_whose_team_has_no_quota_on_its_pool_could_never_be_admitted() -> None:
    with pytest.raises(ConfigError) as info:
        _parse("dev", {"modelplane:teams": [_team("research", CPU)]})
    assert [str(i) for i in info.value.issues] == [
        "modelplane:training.jobs[0].team: job 'lm-small': team 'research' has no quota on pool 'gpu-train' (its "
        "quotas: cpu), so the job could never be admitted; add a quotas entry for it"]


def test_quotas_that_fill_the_pool_exactly_are_valid() -> None:
    config = parse_config("dev", stack_config_with("dev", {"modelplane:teams": TEAMS}))
    assert [(t.name, t.namespace_name, [q.gpus for q in t.quotas]) for t in config.teams] == [
        ("research", "team-research", [2, 0]), ("product", "team-product", [2, 0])]


def test_render_exits_2_naming_the_team_and_writes_nothing(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    over = {"modelplane:teams": [_team("research", GPU_TRAIN), _team("product", {**GPU_TRAIN, "gpus": 3})]}
    (stacks / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": stack_config_with("dev", over)}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", "--stack", "bad", "--out", str(out), "--stacks-dir", str(stacks)])
    assert result.exit_code == 2, result.output
    assert "modelplane:teams[1].quotas[0].gpus: nominal gpus quotas on pool 'gpu-train' sum to 5" in result.stderr
    assert not out.exists()


def test_a_job_bigger_than_its_team_can_ever_borrow_would_wait_for_ever() -> None:
    # research may borrow nothing: its 1 GPU < the 2 x 1 GPUs lm-small needs, though product has 1 to lend.
    small = {**GPU_TRAIN, "gpus": 1, "borrowingLimit": {"gpus": 0}}
    with pytest.raises(ConfigError) as info:
        _parse("dev", {"modelplane:teams": [_team("research", small, CPU), _team("product", {**GPU_TRAIN, "gpus": 1})]})
    assert [str(i) for i in info.value.issues] == [
        "modelplane:training.jobs[0].team: job 'lm-small' needs 2 gpus on pool 'gpu-train' (2 replicas), more than "
        "team 'research' can ever be admitted there (1: its nominal quota and what it may borrow), so it would wait "
        "for ever; raise the team's quota or shrink the job"]


def test_a_job_may_count_on_what_the_other_teams_lend() -> None:
    lender = {**GPU_TRAIN, "gpus": 3, "lendingLimit": {"gpus": 1}}
    config = parse_config("dev", stack_config_with("dev", {"modelplane:teams": [
        _team("research", {**GPU_TRAIN, "gpus": 1}, CPU), _team("product", lender)]}))
    assert [t.name for t in config.teams] == ["research", "product"]


def test_a_job_cannot_count_on_quota_the_other_teams_keep() -> None:
    keeper = {**GPU_TRAIN, "gpus": 3, "lendingLimit": {"gpus": 0}}
    with pytest.raises(ConfigError) as info:
        _parse("dev", {"modelplane:teams": [_team("research", {**GPU_TRAIN, "gpus": 1}, CPU), _team("product", keeper)]})
    assert [i.path for i in info.value.issues] == ["modelplane:training.jobs[0].team"]
    assert "team 'research' can ever be admitted there (1: its nominal quota" in info.value.issues[0].message


def test_a_bad_team_does_not_hide_the_others_nor_misreport_the_jobs_team() -> None:
    # teams[0] (research, lm-small's team) fails to parse; teams[1] still gets checked, and the job's team is not
    # reported as missing on top of the real error.
    teams = [_team("research", CPU, preemption={"withinClusterQueue": "Sometimes"}),
             _team("product", {**GPU_TRAIN, "pool": "gpu-trian"})]
    with pytest.raises(ConfigError) as info:
        _parse("dev", {"modelplane:teams": teams})
    paths = [i.path for i in info.value.issues]
    assert paths == ["modelplane:teams[0].preemption.withinClusterQueue", "modelplane:teams[1].quotas[0].pool"], paths


def test_fractional_millicore_quotas_parse() -> None:
    config = parse_config("dev", stack_config_with("dev", {"modelplane:teams": [
        _team("research", GPU_TRAIN, {**CPU, "cpu": "1.5m"}), _team("product", GPU_TRAIN, CPU)]}))
    assert [q.cpu for q in config.teams[0].quotas] == ["16", "1.5m"]
    assert (cpu_cores("1.5m"), cpu_cores("2500m"), cpu_cores("1.5")) == (0.0015, 2.5, 1.5)
    assert (cpu_threads("1.5m"), cpu_threads("2500m"), cpu_threads("4")) == (1, 2, 4)


def test_a_team_name_of_the_longest_length_fits_its_trainer_role() -> None:
    name = "r" * TEAM_NAME_MAX
    config = parse_config("dev", stack_config_with("dev", {"modelplane:teams": [
        _team("research", GPU_TRAIN, CPU), _team(name, GPU_TRAIN, CPU)]}))
    assert config.teams[1].name == name
    # infra/k8s/teams.py's `teams-<team>-trainer` WorkloadIdentity names its role `<name>-role`; Pulumi adds 8.
    assert len(f"teams-{name}-trainer-role") + 8 == 64


def test_quotas_on_a_time_sliced_pool_count_slices() -> None:
    # gpu-infer: gpuLimit 2 with timeSlicingReplicas 4, so Kueue sees 8 nvidia.com/gpu.
    config = parse_config("dev", stack_config_with("dev", {
        "modelplane:inference": {"services": []},
        "modelplane:teams": [_team("research", GPU_TRAIN, CPU, {"pool": "gpu-infer", "gpus": 8}),
                             _team("product", GPU_TRAIN, CPU)]}))
    assert [q.gpus for q in config.teams[0].quotas] == [2, 0, 8]


def test_a_gpu_job_without_a_team_on_a_pool_teams_hold_quota_on_is_an_error() -> None:
    config = stack_config_with("dev", {"modelplane:teams": TEAMS})
    del config["modelplane:training"]["jobs"][0]["team"]
    with pytest.raises(ConfigError) as info:
        parse_config("dev", config)
    assert [str(i) for i in info.value.issues] == [
        "modelplane:training.jobs[0].team: job 'lm-small' has no team but runs on pool 'gpu-train', where teams "
        "research, product hold GPU quota: Kueue does not count its GPUs, so it would admit quota Karpenter cannot "
        "place; give it a team, or move the teams' quota off the pool"]


def test_a_gpu_service_on_a_pool_teams_hold_quota_on_is_an_error() -> None:
    teams = [_team("research", GPU_TRAIN, CPU, {"pool": "gpu-infer", "gpus": 4}), _team("product", GPU_TRAIN, CPU)]
    with pytest.raises(ConfigError) as info:
        _parse("dev", {"modelplane:teams": teams})
    assert [i.path for i in info.value.issues] == ["modelplane:inference.services[0].gpuPool",
                                                   "modelplane:inference.services[1].gpuPool"]
    assert info.value.issues[0].message.startswith(
        "service 'lm' runs on pool 'gpu-infer', where teams research hold GPU quota")
    assert info.value.issues[0].message.endswith("move it to another pool, or move the teams' quota off the pool")


@pytest.mark.parametrize("stack", ["dev", "staging", "prod", "local"])
def test_reserved_namespaces_cover_every_namespace_the_stacks_render(stack: str) -> None:
    graph = render_variant(stack, {})
    objects = manifest_objects(graph)
    rendered = {str(m["metadata"]["name"]) for m in objects if m.get("kind") == "Namespace"}
    rendered |= {str(m["metadata"]["namespace"]) for m in objects
                 if isinstance(m.get("metadata"), dict) and m["metadata"].get("namespace")}
    # Helm releases name their namespace as an input of their own.
    rendered |= {str(r.inputs["namespace"]) for r in graph.resources if isinstance(r.inputs.get("namespace"), str)}
    teams = {t.namespace_name for t in load_platform_config(stack).teams}
    uncovered = {ns for ns in rendered - teams
                 if ns not in RESERVED_NAMESPACES and not ns.startswith(RESERVED_NAMESPACE_PREFIX)}
    assert not uncovered, f"add {sorted(uncovered)} to infra/config/teams.py RESERVED_NAMESPACES"
