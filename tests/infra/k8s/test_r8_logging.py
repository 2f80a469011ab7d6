"""Fluent Bit keeps logs through a restart and a short outage of its AWS outputs (review R8)."""

from infra.review.graph import Graph
from tests.infra.k8s.test_logging import _release, parse_classic


def test_tail_keeps_its_offsets_on_the_node_so_a_restart_resumes_instead_of_skipping(prod: Graph) -> None:
    ((_, tail),) = parse_classic(_release(prod)["values"]["config"]["inputs"])
    # Without DB a restarted tail starts existing files at their end: lines written while it was down are lost.
    # /var/log is the chart's writable hostPath mount (daemonSetVolumeMounts `varlog`), so the file outlives the pod.
    assert tail["DB"] == "/var/log/flb_kube.db"


def test_every_aws_output_retries_more_than_fluent_bits_default_of_once(prod: Graph, dev: Graph) -> None:
    for graph, names in ((prod, ["cloudwatch_logs", "opensearch"]), (dev, ["cloudwatch_logs"])):
        outputs = [settings for _, settings in parse_classic(_release(graph)["values"]["config"]["outputs"])]
        assert [o["Name"] for o in outputs] == names
        # Retry_Limit's default is 1: a throttled request twice in a row dropped the chunk.
        assert [o.get("Retry_Limit") for o in outputs] == ["10"] * len(names)
