"""A protected (production) cache keeps its data through a delete Pulumi's `protect` does not stop: ElastiCache takes
a final snapshot; an unprotected (dev) one is deleted without one."""

from typing import Any

from infra.aws.cache import Cache
from infra.config.storage import CacheConfig
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import render_variant

REPLICATION_GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"


def _group(graph: Graph) -> dict[str, Any]:
    return graph.one(REPLICATION_GROUP).inputs


def _component(protect: bool) -> dict[str, Any]:
    def program() -> None:
        Cache("redis", CacheConfig(), vpc_id="vpc-1", subnet_ids=["subnet-a"], allowed_security_group_ids=["sg-eks"],
              protect=protect)

    return _group(render_program("qa", program))


def test_a_protected_cache_takes_a_final_snapshot_named_after_its_stack() -> None:
    assert _component(True)["finalSnapshotIdentifier"] == "modelplane-qa-redis-final"
    assert "finalSnapshotIdentifier" not in _component(False)


def test_prod_keeps_a_final_snapshot_and_daily_snapshots_dev_does_not() -> None:
    prod = _group(render_variant("prod", {}))
    assert prod["finalSnapshotIdentifier"] == "modelplane-prod-cache-final"
    assert prod["snapshotRetentionLimit"] == 7
    assert "finalSnapshotIdentifier" not in _group(render_variant("dev", {}))
