"""`modelplane cost`: the dated price table, per-resource lines, ranges for scaling pools, unknown types reported."""

import datetime
import json
import math

import pytest
from typer.testing import CliRunner

from infra.review.cli import app
from infra.review.cost import estimate as costs
from infra.review.cost.managed import MANAGED_PRICERS
from infra.review.cost.prices import load_prices
from infra.review.graph import Graph, Resource

runner = CliRunner()
PRICES = load_prices()
HOURS = PRICES.hours_per_month


def graph(*resources: tuple[str, str, dict]) -> Graph:
    return Graph("dev", [Resource(urn=f"urn:pulumi:dev::modelplane::{t}::{n}", type=t, name=n, parent="", provider="",
                                  inputs=i) for t, n, i in resources])


def one(*resources: tuple[str, str, dict], **assumptions: float) -> costs.CostLine:
    report = costs.estimate(graph(*resources), PRICES, costs.Assumptions.defaults(PRICES, **assumptions))
    [line] = report.lines
    return line


def test_price_table_is_dated_sourced_and_complete_for_gpus() -> None:
    assert datetime.date.fromisoformat(PRICES.as_of)
    assert PRICES.region == "us-east-1" and PRICES.currency == "USD"
    assert {"ec2", "eks", "vpc", "elasticache", "elb", "kms", "s3"} <= PRICES.sources.keys()
    for family in ("g5", "g6", "g6e", "p4d", "p5"):
        types = [k for k in PRICES.ec2 if k.startswith(f"{family}.")]
        assert types and all(PRICES.ec2[k].gpus > 0 and PRICES.ec2[k].gpu for k in types), family


def test_fixed_resources_are_priced_from_the_table() -> None:
    assert one(("aws:eks/cluster:Cluster", "eks", {})).monthly_max == pytest.approx(PRICES.eks_cluster_hourly * HOURS)
    assert one(("aws:kms/key:Key", "k", {})).monthly_max == PRICES.kms_key_monthly
    redis = one(("aws:elasticache/replicationGroup:ReplicationGroup", "r",
                 {"nodeType": "cache.r7g.large", "numCacheClusters": 3}))
    assert redis.monthly_min == redis.monthly_max == pytest.approx(3 * PRICES.elasticache["cache.r7g.large"] * HOURS)


def test_usage_assumptions_are_explicit_and_overridable() -> None:
    nat = one(("aws:ec2/natGateway:NatGateway", "nat", {}), nat_gb_per_month=1000)
    assert nat.monthly_max == pytest.approx(PRICES.nat_gateway_hourly * HOURS + 1000 * PRICES.nat_gateway_per_gb)
    bucket = one(("aws:s3/bucket:Bucket", "b", {}), s3_gb_per_bucket=2000)
    assert bucket.monthly_max == pytest.approx(2000 * PRICES.s3_standard_gb_month) and "2000 GB assumed" in bucket.basis


def test_interface_endpoints_cost_per_az_and_gateway_endpoints_are_free() -> None:
    interface = one(("aws:ec2/vpcEndpoint:VpcEndpoint", "ecr", {"vpcEndpointType": "Interface", "subnetIds": [1, 2, 3]}))
    assert interface.monthly_max == pytest.approx(3 * PRICES.interface_endpoint_hourly * HOURS)
    report = costs.estimate(graph(("aws:ec2/vpcEndpoint:VpcEndpoint", "s3", {"vpcEndpointType": "Gateway"})), PRICES)
    assert report.lines == () and report.not_estimated == {"aws:ec2/vpcEndpoint:VpcEndpoint": 1}


def test_node_groups_are_a_range_between_min_and_max_size() -> None:
    line = one(("aws:eks/nodeGroup:NodeGroup", "system", {"instanceTypes": ["m7i.xlarge"],
                                                           "scalingConfig": {"minSize": 3, "maxSize": 6}}))
    hourly = PRICES.ec2["m7i.xlarge"].hourly
    assert (line.monthly_min, line.monthly_max) == pytest.approx((3 * hourly * HOURS, 6 * hourly * HOURS))
    assert line.is_range


def test_spot_node_groups_get_the_spot_discount() -> None:
    line = one(("aws:eks/nodeGroup:NodeGroup", "batch", {"instanceTypes": ["m7i.xlarge"], "capacityType": "SPOT",
                                                          "scalingConfig": {"minSize": 1, "maxSize": 1}}),
               spot_discount=0.7)
    assert line.monthly_max == pytest.approx(PRICES.ec2["m7i.xlarge"].hourly * 0.3 * HOURS)


def test_unknown_instance_types_are_reported_not_priced_at_zero() -> None:
    line = one(("aws:eks/nodeGroup:NodeGroup", "x", {"instanceTypes": ["z9.huge"],
                                                      "scalingConfig": {"minSize": 1, "maxSize": 2}}))
    assert line.monthly_max is None and line.unknown == ("z9.huge",)
    report = costs.estimate(graph(("aws:eks/nodeGroup:NodeGroup", "x", {"instanceTypes": ["z9.huge"]})), PRICES)
    assert report.to_dict()["complete"] is False and "z9.huge" in report.warnings[0]


def nodepool(requirements: list[dict], limits: dict | None, gpu: bool = True) -> tuple[str, str, dict]:
    spec: dict = {"template": {"spec": {"requirements": requirements,
                                        "taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule"}] if gpu else []}}}
    if limits is not None:
        spec["limits"] = limits
    return ("kubernetes:karpenter.sh/v1:NodePool", "gpu-pool",
            {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": "gpu"}, "spec": spec})


FAMILY = {"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["p5"]}
ON_DEMAND = {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]}


def test_gpu_pools_scale_from_zero_to_their_gpu_limit() -> None:
    line = one(nodepool([FAMILY, ON_DEMAND], {"nvidia.com/gpu": 32}))
    p5 = PRICES.ec2["p5.48xlarge"]
    assert line.monthly_min == 0
    assert line.monthly_max == pytest.approx(math.ceil(32 / p5.gpus) * p5.hourly * HOURS)
    assert line.to_dict()["range"] is True and line.extra["nodes"] == {"min": 0, "max": 4}


def test_gpu_pools_fill_their_limit_with_the_most_expensive_matching_type() -> None:
    reqs = [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6", "g6e"]},
            {"key": "karpenter.k8s.aws/instance-gpu-count", "operator": "In", "values": ["4"]}, ON_DEMAND]
    line = one(nodepool(reqs, {"nvidia.com/gpu": 8}))
    fours = {k: s for k, s in PRICES.ec2.items() if k.split(".")[0] in ("g6", "g6e") and s.gpus == 4}
    priciest = max(fours, key=lambda k: fours[k].hourly)
    assert len(fours) > 1 and line.extra["instance_type"] == priciest
    assert line.monthly_max == pytest.approx(2 * fours[priciest].hourly * HOURS)


def test_a_type_larger_than_the_limit_is_never_launched() -> None:
    """Karpenter filters out instance types whose capacity exceeds what is left of the pool's limits."""
    reqs = [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["g6"]}, ON_DEMAND]
    line = one(nodepool(reqs, {"nvidia.com/gpu": 4}))
    spec = PRICES.ec2[line.extra["instance_type"]]
    assert spec.gpus <= 4
    assert line.monthly_max == pytest.approx(line.extra["nodes"]["max"] * spec.hourly * HOURS)
    assert line.extra["nodes"]["max"] * spec.gpus <= 4


def test_spot_gpu_pools_keep_the_on_demand_ceiling_with_spot_as_a_separate_figure() -> None:
    spot = {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["spot", "on-demand"]}
    line = one(nodepool([FAMILY, spot], {"nvidia.com/gpu": 8}), spot_discount=0.6)
    on_demand = PRICES.ec2["p5.48xlarge"].hourly * HOURS
    assert line.monthly_max == pytest.approx(on_demand) and line.extra["spot_max"] == pytest.approx(0.4 * on_demand)
    assert "on-demand" in line.basis and line.to_dict()["spot_max"] == pytest.approx(0.4 * on_demand)


def test_unlimited_pools_are_unbounded_and_make_the_total_unbounded() -> None:
    report = costs.estimate(graph(nodepool([FAMILY], None), ("aws:kms/key:Key", "k", {})), PRICES)
    assert report.total_max is None and report.to_dict()["total"]["max"] is None
    assert any("no upper bound" in w for w in report.warnings)


def test_pools_of_unknown_families_are_reported() -> None:
    line = one(nodepool([{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": ["p9"]}],
                        {"nvidia.com/gpu": 8}))
    assert line.monthly_max is None and line.unknown == ("p9.*",)


def test_cpu_pools_are_bounded_by_their_cpu_limit() -> None:
    reqs = [{"key": "karpenter.k8s.aws/instance-category", "operator": "In", "values": ["c"]},
            {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
    line = one(nodepool(reqs, {"cpu": 64}, gpu=False))
    spec = PRICES.ec2[line.extra["instance_type"]]
    assert spec.gpus == 0 and not line.extra["instance_type"].startswith("c7g") and spec.vcpu <= 64
    assert line.monthly_max == pytest.approx(math.floor(64 / spec.vcpu) * spec.hourly * HOURS)


def test_load_balancers_created_by_kubernetes_are_priced() -> None:
    service = {"apiVersion": "v1", "kind": "Service", "spec": {"type": "LoadBalancer"}, "metadata": {"annotations": {
        "service.beta.kubernetes.io/aws-load-balancer-type": "external"}}}
    assert one(("kubernetes:core/v1:Service", "svc", service)).monthly_max == pytest.approx(PRICES.nlb_hourly * HOURS)
    gateway = {"chart": "gateway", "version": "1.28.1", "values": {}}
    assert one(("kubernetes:helm.sh/v3:Release", "gw", gateway)).monthly_max == pytest.approx(PRICES.nlb_hourly * HOURS)
    cluster_ip = {"apiVersion": "v1", "kind": "Service", "spec": {"type": "ClusterIP"}}
    assert costs.estimate(graph(("kubernetes:core/v1:Service", "svc", cluster_ip)), PRICES).lines == ()


def test_cost_json_for_prod_has_a_total_lines_and_gpu_pools_as_ranges() -> None:
    result = runner.invoke(app, ["cost", "--stack", "prod", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["total"]["min"] > 0 and doc["total"]["max"] > doc["total"]["min"]
    assert doc["price_table"]["as_of"] == PRICES.as_of and doc["complete"] is True
    assert {line["type"] for line in doc["lines"]} >= {"aws:eks/cluster:Cluster", "aws:ec2/natGateway:NatGateway"}
    gpu_pools = [line for line in doc["lines"] if line.get("gpu_pool")]
    assert gpu_pools and all(line["range"] and line["monthly"]["min"] == 0 and line["monthly"]["max"] > 0
                             for line in gpu_pools)


def test_cost_table_prints_the_total() -> None:
    result = runner.invoke(app, ["cost", "--stack", "dev", "--spot-discount", "0.5"])
    assert result.exit_code == 0, result.output
    assert "total" in result.stdout and "$" in result.stdout


def test_dev_gpu_train_ceiling_is_the_priciest_admitted_type_on_demand() -> None:
    """The issue's case: dev gpu-train's GPU limit on its most expensive admitted type, not the cheapest at spot."""
    result = runner.invoke(app, ["cost", "--stack", "dev", "--json"])
    doc = json.loads(result.stdout)
    [line] = [x for x in doc["lines"] if x["name"] == "gpu-pool-gpu-train"]
    spec = PRICES.ec2[line["instance_type"]]
    assert line["monthly"]["max"] == pytest.approx(line["nodes"]["max"] * spec.hourly * HOURS, abs=0.01)
    assert line["monthly"]["max"] > 2000, line


def test_local_stack_costs_nothing() -> None:
    result = runner.invoke(app, ["cost", "--stack", "local", "--json"])
    assert json.loads(result.stdout)["total"] == {"min": 0, "max": 0}


MSK = "aws:msk/cluster:Cluster"
DOMAIN = "aws:opensearch/domain:Domain"


def msk(instance_type: str, brokers: float, volume: float | None) -> tuple[str, str, dict]:
    storage = {"ebsStorageInfo": {"volumeSize": volume}} if volume is not None else {}
    return MSK, "events", {"numberOfBrokerNodes": brokers, "brokerNodeGroupInfo": {
        "instanceType": instance_type, "clientSubnets": ["a", "b", "c"], "storageInfo": storage}}


def test_msk_provisioned_is_broker_hours_times_brokers_plus_storage() -> None:
    line = one(msk("kafka.m7g.large", 3.0, 100.0))
    expected = 3 * PRICES.msk_broker["kafka.m7g.large"] * HOURS + 3 * 100 * PRICES.msk_storage_gb_month
    assert line.monthly_min == line.monthly_max == pytest.approx(expected)
    assert "3 brokers × kafka.m7g.large $0.204/h" in line.basis and "100 GB" in line.basis


def test_msk_with_an_unknown_broker_type_or_no_volume_is_reported_not_priced_at_zero() -> None:
    unknown = one(msk("kafka.m9x.huge", 3, 100))
    assert (unknown.monthly_min, unknown.monthly_max, unknown.unknown) == (None, None, ("kafka.m9x.huge",))
    assert one(msk("kafka.m5.large", 2, None)).unknown == ("msk volumeSize",)


def test_every_managed_service_priced_is_one_a_real_stack_creates(stack_graph) -> None:
    # A pricer (and its prices) for a type no stack renders is dead code: MSK Serverless was one.
    rendered = {r.type for stack in ("dev", "staging", "prod", "local") for r in stack_graph(stack).resources}
    assert set(MANAGED_PRICERS) <= rendered, sorted(set(MANAGED_PRICERS) - rendered)


def test_opensearch_is_data_and_master_instance_hours_plus_ebs_per_data_node() -> None:
    line = one((DOMAIN, "logs", {
        "clusterConfig": {"instanceType": "r7g.large.search", "instanceCount": 3.0, "dedicatedMasterEnabled": True,
                          "dedicatedMasterType": "m7g.large.search", "dedicatedMasterCount": 3.0},
        "ebsOptions": {"ebsEnabled": True, "volumeType": "gp3", "volumeSize": 200.0}}))
    expected = (3 * PRICES.opensearch["r7g.large.search"] * HOURS + 3 * PRICES.opensearch["m7g.large.search"] * HOURS
                + 3 * 200 * PRICES.opensearch_ebs_gb_month["gp3"])
    assert line.monthly_min == line.monthly_max == pytest.approx(expected)
    assert "3 × m7g.large.search" in line.basis and "200 GB gp3" in line.basis


def test_opensearch_without_dedicated_masters_prices_the_data_nodes_only() -> None:
    line = one((DOMAIN, "logs", {"clusterConfig": {"instanceType": "m7g.large.search", "dedicatedMasterEnabled": False,
                                                   "dedicatedMasterType": "r7g.xlarge.search"}}))
    assert line.monthly_max == pytest.approx(PRICES.opensearch["m7g.large.search"] * HOURS)


def test_opensearch_unknown_instance_warm_or_volume_types_are_reported() -> None:
    line = one((DOMAIN, "logs", {
        "clusterConfig": {"instanceType": "x9.large.search", "warmEnabled": True, "warmType": "ultrawarm1.medium.search"},
        "ebsOptions": {"ebsEnabled": True, "volumeType": "io1", "volumeSize": 10}}))
    assert line.monthly_max is None
    assert set(line.unknown) == {"x9.large.search", "ultrawarm1.medium.search (UltraWarm)", "io1 (OpenSearch EBS)"}


def test_prod_prices_its_opensearch_domain() -> None:
    result = runner.invoke(app, ["cost", "--stack", "prod", "--json"])
    [domain] = [line for line in json.loads(result.stdout)["lines"] if line["type"] == DOMAIN]
    assert domain["unknown"] == [] and domain["monthly"]["max"] > 0
