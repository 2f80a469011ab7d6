"""ElastiCache rules: encryption, authentication, production multi-AZ."""

import pytest

from policies.rules.elasticache import ELASTICACHE_AUTH, ELASTICACHE_ENCRYPTION, REDIS_MULTI_AZ_PRODUCTION
from tests.policies.helpers import violations

GROUP = "aws:elasticache/replicationGroup:ReplicationGroup"
SECURE = {"transitEncryptionEnabled": True, "atRestEncryptionEnabled": True, "authToken": "[secret]",
          "numCacheClusters": 3, "automaticFailoverEnabled": True, "multiAzEnabled": True}


@pytest.mark.parametrize("policy", [ELASTICACHE_ENCRYPTION, ELASTICACHE_AUTH, REDIS_MULTI_AZ_PRODUCTION])
def test_production_shaped_redis_complies(policy) -> None:
    assert violations(policy, GROUP, SECURE, production=True) == []


@pytest.mark.parametrize("key", ["transitEncryptionEnabled", "atRestEncryptionEnabled"])
def test_unencrypted_redis_is_reported(key) -> None:
    found = violations(ELASTICACHE_ENCRYPTION, GROUP, {**SECURE, key: False}, name="cache-redis")
    assert len(found) == 1 and key in found[0] and "cache-redis" in found[0]


def test_redis_without_auth_is_reported() -> None:
    props = {k: v for k, v in SECURE.items() if k != "authToken"}
    assert len(violations(ELASTICACHE_AUTH, GROUP, props)) == 1


def test_rbac_user_groups_count_as_auth() -> None:
    props = {**{k: v for k, v in SECURE.items() if k != "authToken"}, "userGroupIds": ["ug-1"]}
    assert violations(ELASTICACHE_AUTH, GROUP, props) == []


def test_single_az_redis_is_reported_in_production_only() -> None:
    single = {**SECURE, "numCacheClusters": 1, "automaticFailoverEnabled": False, "multiAzEnabled": False}
    assert violations(REDIS_MULTI_AZ_PRODUCTION, GROUP, single, production=False) == []
    found = violations(REDIS_MULTI_AZ_PRODUCTION, GROUP, single, production=True)
    assert len(found) == 1
    assert "multi_az_enabled is off" in found[0] and "automatic_failover_enabled is off" in found[0]
    assert "1 node and no replica" in found[0]
