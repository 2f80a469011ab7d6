"""Stack config validation: every error names its key path, all are reported at once, nothing is written."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from infra.review.cli import app
from infra.review.engine import load_stack_config
from tests.support.graph import deep_merge

runner = CliRunner()

# (description, changes deep-merged into the dev stack, expected key path, expected message fragment)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("subnet outside the VPC", {"modelplane:network": {"privateSubnets": ["10.20.32.0/19", "10.99.0.0/19"]}},
     "modelplane:network.privateSubnets[1]", "must be inside network.cidr 10.20.0.0/16"),
    ("overlapping subnets", {"modelplane:network": {"publicSubnets": ["10.20.0.0/22", "10.20.32.0/22"]}},
     "modelplane:network.privateSubnets[0]", "overlaps network.publicSubnets[1]"),
    ("one AZ", {"modelplane:network": {"availabilityZones": ["us-east-1a"], "publicSubnets": ["10.20.0.0/22"],
                                       "privateSubnets": ["10.20.32.0/19"]}},
     "modelplane:network.availabilityZones", "must list 2 to 6 zones (got 1)"),
    ("subnet count differs from AZ count", {"modelplane:network": {"publicSubnets": ["10.20.0.0/22"]}},
     "modelplane:network.publicSubnets", "needs one CIDR per availability zone (2), got 1"),
    ("public endpoint without allowlist", {"modelplane:cluster": {"endpointPublicAccess": True}},
     "modelplane:cluster.publicAccessCidrs", "must list at least one CIDR"),
    ("whole internet in prod", {"modelplane:production": True,
                                "modelplane:cluster": {"publicAccessCidrs": ["0.0.0.0/0"]}},
     "modelplane:cluster.publicAccessCidrs[0]", "0.0.0.0/0 is not allowed in a production stack"),
    ("desired above max", {"modelplane:nodePools": [{"name": "system", "instanceTypes": ["t3.large"], "minSize": 1,
                                                     "desiredSize": 5, "maxSize": 3}]},
     "modelplane:nodePools[0].desiredSize", "must be <= maxSize (got 5 > 3)"),
    ("max below min", {"modelplane:nodePools": [{"name": "system", "instanceTypes": ["t3.large"], "minSize": 4,
                                                 "desiredSize": 4, "maxSize": 2}]},
     "modelplane:nodePools[0].maxSize", "must be >= minSize (got 2 < 4)"),
    ("duplicate pool names", {"modelplane:nodePools": [
        {"name": "system", "instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 1, "maxSize": 2},
        {"name": "system", "instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 1, "maxSize": 2}]},
     "modelplane:nodePools[1].name", "duplicate pool name 'system'"),
    ("failover on one node", {"modelplane:cache": {"automaticFailover": True, "numNodes": 1}},
     "modelplane:cache.numNodes", "must be >= 2 when automaticFailover is true (got 1)"),
    ("multi-AZ without failover", {"modelplane:cache": {"multiAz": True}},
     "modelplane:cache.multiAz", "requires automaticFailover: true"),
    ("unknown key with suggestion", {"modelplane:cluster": {"endpointPublicAcess": True}},
     "modelplane:cluster.endpointPublicAcess", "did you mean 'endpointPublicAccess'?"),
    ("unknown section", {"modelplane:netwrok": {}}, "modelplane:netwrok", "did you mean 'modelplane:network'?"),
    ("bad CIDR", {"modelplane:network": {"cidr": "10.20.0.0/33"}}, "modelplane:network.cidr", "10.20.0.0/33"),
    ("unsupported version", {"modelplane:cluster": {"version": "1.22"}},
     "modelplane:cluster.version", "must be one of 1.34, 1.35, 1.36 (got '1.22')"),
    ("negative size", {"modelplane:nodePools": [{"name": "system", "instanceTypes": ["t3.large"], "minSize": -1,
                                                 "desiredSize": 1, "maxSize": 2}]},
     "modelplane:nodePools[0].minSize", "greater than or equal to 0"),
    ("missing owner tag", {"modelplane:tags": {"owner": None}}, "modelplane:tags.owner", "is required"),
    ("reserved tag", {"modelplane:tags": {"environment": "prod"}}, "modelplane:tags.environment",
     "is set by modelplane itself"),
    ("bad log type", {"modelplane:cluster": {"logTypes": ["api", "audit", "authenticator", "audits"]}},
     "modelplane:cluster.logTypes[3]", "did you mean 'audit'?"),
    ("AWS section on a kubeconfig stack", {"modelplane:target": "kubeconfig"}, "modelplane:network",
     "has no effect with target 'kubeconfig'"),
    ("missing region", {"aws:region": None}, "aws:region", "is required"),
    ("no system pool", {"modelplane:nodePools": [{"name": "gpu-ish", "instanceTypes": ["t3.large"], "minSize": 1,
                                                  "desiredSize": 1, "maxSize": 2}]},
     "modelplane:nodePools", "must include a pool named 'system' (runs cluster add-ons; got ['"),
    ("GPU pool with an unknown capacity type", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "capacityTypes": ["spott"]}]},
     "modelplane:gpuPools[0].capacityTypes[0]", "must be one of spot, on-demand (got 'spott'); did you mean 'spot'?"),
    ("GPU pool with a zero GPU limit", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 0}]},
     "modelplane:gpuPools[0].gpuLimit", "must be > 0 (got 0)"),
    ("GPU pool with a negative GPU limit", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": -8}]},
     "modelplane:gpuPools[0].gpuLimit", "must be > 0 (got -8)"),
    ("GPU pool with an empty instance list", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": [], "gpuLimit": 4}]},
     "modelplane:gpuPools[0].instanceFamilies", "must list at least one instance family"),
    ("GPU pool with both families and types", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "instanceTypes": ["g6.xlarge"], "gpuLimit": 4}]},
     "modelplane:gpuPools[0].instanceTypes", "set instanceFamilies or instanceTypes, not both (got instanceFamilies "),
    ("GPU pool with a malformed instance family", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6.xlarge"], "gpuLimit": 4}]},
     "modelplane:gpuPools[0].instanceFamilies[0]", "must be an EC2 instance family"),
    ("GPU pool with min above max GPUs per node", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 8, "gpusPerNode": {"min": 4, "max": 1}}]},
     "modelplane:gpuPools[0].gpusPerNode.max", "must be >= gpusPerNode.min (got 1 < 4)"),
    ("GPU limit below one node's GPUs", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["p5"], "gpuLimit": 4, "gpusPerNode": {"min": 8, "max": 8}}]},
     "modelplane:gpuPools[0].gpuLimit", "the pool could never launch a node"),
    ("duplicate GPU pool names", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4},
        {"name": "gpu-train", "instanceFamilies": ["g5"], "gpuLimit": 4}]},
     "modelplane:gpuPools[1].name", "duplicate pool name 'gpu-train' (also in gpuPools[0])"),
    ("GPU pool named like a node group", {"modelplane:gpuPools": [
        {"name": "system", "instanceFamilies": ["g6"], "gpuLimit": 4}]},
     "modelplane:gpuPools[0].name", "duplicate pool name 'system' (also in nodePools)"),
    ("GPU pool named like the CPU pool", {"modelplane:gpuPools": [
        {"name": "cpu", "instanceFamilies": ["g6"], "gpuLimit": 4}]},
     "modelplane:gpuPools[0].name", "duplicate pool name 'cpu' (also in karpenter.cpuPool)"),
    ("bad consolidateAfter", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "consolidateAfter": "5 minutes"}]},
     "modelplane:gpuPools[0].consolidateAfter", "must be a duration like 30s, 10m, 1h30m or Never (got '5 minutes')"),
    ("bad expireAfter", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "expireAfter": "30d"}]},
     "modelplane:gpuPools[0].expireAfter", "must be a duration"),
    ("Never is no grace period", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "terminationGracePeriod": "Never"}]},
     "modelplane:gpuPools[0].terminationGracePeriod", "must be a duration like 30s, 10m, 1h30m (got 'Never')"),
    ("bad disruption budget", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "disruptionBudget": "half"}]},
     "modelplane:gpuPools[0].disruptionBudget", "must be a node count like 1 or a percentage like 10%"),
    ("time-slicing on Bottlerocket", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "amiFamily": "bottlerocket",
         "timeSlicingReplicas": 4}]},
     "modelplane:gpuPools[0].timeSlicingReplicas", "is not supported with amiFamily bottlerocket"),
    ("unknown AMI family", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "amiFamily": "ubuntu"}]},
     "modelplane:gpuPools[0].amiFamily", "'al2023' or 'bottlerocket'"),
    ("spot inference pool in production", {"modelplane:production": True, "modelplane:gpuPools": [
        {"name": "gpu-infer", "purpose": "inference", "instanceFamilies": ["g6"], "gpuLimit": 4,
         "capacityTypes": ["spot", "on-demand"]}]},
     "modelplane:gpuPools[0].capacityTypes", "must be only on-demand for an inference pool in a production stack"),
    ("unknown GPU pool key with suggestion", {"modelplane:gpuPools": [
        {"name": "gpu-train", "instanceFamilies": ["g6"], "gpuLimit": 4, "gpuLimt": 4}]},
     "modelplane:gpuPools[0].gpuLimt", "did you mean 'gpuLimit'?"),
    ("GPU pools on a kubeconfig stack", {"modelplane:target": "kubeconfig"}, "modelplane:gpuPools",
     "has no effect with target 'kubeconfig'"),
    ("bad Karpenter CPU", {"modelplane:karpenter": {"cpu": "one"}},
     "modelplane:karpenter.cpu", "must be a Kubernetes CPU quantity"),
    ("CPU pool with an unknown capacity type", {"modelplane:karpenter": {"cpuPool": {"capacityTypes": ["ondemand"]}}},
     "modelplane:karpenter.cpuPool.capacityTypes[0]", "did you mean 'on-demand'?"),
    ("bad DCGM scrape interval", {"modelplane:addons": {"dcgmScrapeInterval": "often"}},
     "modelplane:addons.dcgmScrapeInterval", "must be a duration like 15s or 1m"),
    ("unsupported Istio version", {"modelplane:mesh": {"version": "1.28.0"}},
     "modelplane:mesh.version",
     "every Istio chart installs at this one version, so it must be one of 1.29.6 (got '1.28.0'); did you mean '1.29.6'?"),
    ("per-chart Istio version", {"modelplane:mesh": {"istiodVersion": "1.29.5"}},
     "modelplane:mesh.istiodVersion", "unknown key 'istiodVersion'"),
    ("unknown gateway scheme", {"modelplane:mesh": {"gatewayScheme": "public"}},
     "modelplane:mesh.gatewayScheme", "'internal' or 'internet-facing' (got 'public')"),
    ("one istiod in production", {"modelplane:production": True, "modelplane:mesh": {"replicas": 1}},
     "modelplane:mesh.replicas", "must be >= 2 in a production stack (got 1)"),
    ("retention size above the volume", {"modelplane:observability": {"retentionSizeGb": 60, "storageGb": 50}},
     "modelplane:observability.retentionSizeGb", "must be below storageGb so the volume never fills (got 60 >= 50)"),
    ("retention size without a volume", {"modelplane:observability": {"retentionSizeGb": 10, "storageGb": 0}},
     "modelplane:observability.retentionSizeGb", "has no effect without a volume"),
    ("no Prometheus volume in production", {"modelplane:production": True, "modelplane:observability": {"storageGb": 0}},
     "modelplane:observability.storageGb", "must be > 0 in a production stack (got 0)"),
    ("no Alertmanager in production", {"modelplane:production": True,
                                       "modelplane:observability": {"alertmanager": False}},
     "modelplane:observability.alertmanager", "must be true in a production stack (got false)"),
    ("zero retention", {"modelplane:observability": {"retentionDays": 0}},
     "modelplane:observability.retentionDays", "greater than or equal to 1"),
    ("unknown target", {"modelplane:target": "gcp"}, "modelplane:target", "must be one of 'aws', 'kubeconfig' (got 'gcp')"),
    ("production not a boolean", {"modelplane:production": "yes"}, "modelplane:production",
     "must be true or false (got 'yes')"),
    ("deletion protection not a boolean", {"modelplane:deletionProtection": 1}, "modelplane:deletionProtection",
     "must be true or false (got 1)"),
    ("empty kube context", {"modelplane:kubeContext": ""}, "modelplane:kubeContext",
     "must be a non-empty kubeconfig context name (got '')"),
    ("tags not a map", {"modelplane:tags": ["owner"]}, "modelplane:tags",
     "must be a map of string keys to string values (got ['owner'])"),
    ("no network on aws", {"modelplane:network": None}, "modelplane:network",
     "is required when modelplane:target is 'aws' (got no modelplane:network); add a modelplane:network section"),
    ("no cluster on aws", {"modelplane:cluster": None}, "modelplane:cluster",
     "is required when modelplane:target is 'aws' (got no modelplane:cluster); add a modelplane:cluster section"),
    ("no node pools on aws", {"modelplane:nodePools": None}, "modelplane:nodePools",
     "is required when modelplane:target is 'aws' (got no modelplane:nodePools); add a modelplane:nodePools section"),
    ("no tags on aws", {"modelplane:tags": None}, "modelplane:tags",
     "is required and must include owner, cost-center; add a modelplane:tags map"),
    ("CPU pool named like a node group", {"modelplane:karpenter": {"cpuPool": {"name": "system"}}},
     "modelplane:karpenter.cpuPool.name", "duplicate pool name 'system' (also in nodePools)"),
    ("GPU pools not a list", {"modelplane:gpuPools": {"name": "gpu-train"}}, "modelplane:gpuPools",
     "must be a list of GPU pools (got {'name': 'gpu-train'})"),
    ("GPU add-on on a kubeconfig stack", {"modelplane:target": "kubeconfig", "modelplane:network": None,
                                          "modelplane:cluster": None, "modelplane:nodePools": None,
                                          "modelplane:gpuPools": None, "modelplane:karpenter": None,
                                          "modelplane:storage": None, "modelplane:cache": None,
                                          "modelplane:addons": {"dcgmExporter": False, "trainer": False}},
     "modelplane:addons.dcgmExporter", "has no effect with target 'kubeconfig' (only trainer applies); remove it"),
    ("retired training operator switch", {"modelplane:addons": {"trainingOperator": False}},
     "modelplane:addons.trainingOperator", "has moved to modelplane:addons.trainer; set it there and remove it here"),
    ("retired training operator switch on a kubeconfig stack", {
        "modelplane:target": "kubeconfig", "modelplane:network": None, "modelplane:cluster": None,
        "modelplane:nodePools": None, "modelplane:gpuPools": None, "modelplane:karpenter": None,
        "modelplane:storage": None, "modelplane:cache": None, "modelplane:addons": {"trainingOperator": True}},
     "modelplane:addons.trainingOperator", "has moved to modelplane:addons.trainer; set it there and remove it here"),
]


def _write_stack(folder: Path, changes: dict[str, Any]) -> Path:
    folder.mkdir()
    raw = deep_merge(load_stack_config("dev"), changes)
    (folder / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": raw}))
    return folder


@pytest.mark.parametrize(("changes", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_config_exits_2_naming_the_key_and_writes_nothing(
    tmp_path: Path, changes: dict[str, Any], path: str, fragment: str
) -> None:
    stacks = _write_stack(tmp_path / "stacks", changes)
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", "--stack", "bad", "--out", str(out), "--stacks-dir", str(stacks)])
    assert result.exit_code == 2, result.output
    line = next((ln for ln in result.stderr.splitlines() if path + ":" in ln), None)
    assert line is not None, f"{path} not named in:\n{result.stderr}"
    assert fragment in line, line
    assert not out.exists()


def test_every_error_is_reported_at_once() -> None:
    raw = deep_merge(load_stack_config("dev"), {
        "modelplane:network": {"privateSubnets": ["10.20.32.0/19", "10.99.0.0/19"]},
        "modelplane:cluster": {"endpointPublicAccess": True},
        "modelplane:cache": {"multiAz": True},
        "modelplane:nodePools": [{"name": "system", "instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 9,
                                  "maxSize": 3}],
    })
    with pytest.raises(ConfigError) as info:
        parse_config("dev", raw)
    paths = {issue.path for issue in info.value.issues}
    assert {"modelplane:network.privateSubnets[1]", "modelplane:cluster.publicAccessCidrs",
            "modelplane:cache.multiAz", "modelplane:nodePools[0].desiredSize"} <= paths


def test_duplicate_yaml_keys_are_rejected(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.dup.yaml").write_text("config:\n  modelplane:production: true\n  modelplane:production: false\n")
    result = runner.invoke(app, ["render", "--stack", "dup", "--out", str(tmp_path / "o"), "--stacks-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "duplicate key 'modelplane:production'" in result.stderr


def test_unknown_stack_lists_the_known_ones(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "--stack", "nope", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "known stacks: dev, local, prod, staging" in result.stderr


def test_config_models_are_frozen() -> None:
    config = parse_config("dev", load_stack_config("dev"))
    with pytest.raises(ValueError, match="frozen"):
        config.network.cidr = "10.0.0.0/8"  # type: ignore[union-attr,assignment,misc]
