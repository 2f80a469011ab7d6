"""The AWS sections' rules (network, cluster, nodePools, storage, cache): each message names its key path and value.

The components take these sections as they are and check nothing again, so each rule is tested here, once.
"""

from typing import Any

import pytest

from infra.config.errors import ConfigError
from infra.config.parse import parse_config
from tests.support.graph import stack_config_with

_POOL = {"name": "system", "instanceTypes": ["t3.large"], "minSize": 1, "desiredSize": 1, "maxSize": 2}

# (description, changes deep-merged into the dev stack, expected key path, expected message fragment)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    ("repeated zone", {"modelplane:network": {"availabilityZones": ["us-east-1a", "us-east-1a"]}},
     "modelplane:network.availabilityZones", "zones must be distinct (got ['us-east-1a', 'us-east-1a'])"),
    ("unknown interface endpoint", {"modelplane:network": {"interfaceEndpoints": ["ecr-api"]}},
     "modelplane:network.interfaceEndpoints[0]", "(got 'ecr-api'); did you mean 'ecr.api'?"),
    ("unknown NAT layout", {"modelplane:network": {"natGateways": "none"}},
     "modelplane:network.natGateways", "'perAz' or 'single' (got 'none')"),
    ("unknown flow-log traffic type", {"modelplane:network": {"flowLogs": {"trafficType": "DENY"}}},
     "modelplane:network.flowLogs.trafficType", "'ACCEPT', 'REJECT' or 'ALL' (got 'DENY')"),
    ("zero flow-log retention", {"modelplane:network": {"flowLogs": {"retentionDays": 0}}},
     "modelplane:network.flowLogs.retentionDays", "greater than or equal to 1 (got 0)"),
    ("allowlist on a private endpoint", {"modelplane:cluster": {"publicAccessCidrs": ["52.94.76.0/24"]}},
     "modelplane:cluster.publicAccessCidrs",
     "has no effect unless endpointPublicAccess is true (got ['52.94.76.0/24']); remove it or set endpointPublicAccess: true"),
    ("public endpoint without an allowlist", {"modelplane:cluster": {"endpointPublicAccess": True}},
     "modelplane:cluster.publicAccessCidrs", "must list at least one CIDR when endpointPublicAccess is true (got [])"),
    ("documentation range as the allowlist", {"modelplane:cluster": {"endpointPublicAccess": True,
                                                                     "publicAccessCidrs": ["203.0.113.0/24"]}},
     "modelplane:cluster.publicAccessCidrs[0]", "203.0.113.0/24 is a documentation range (RFC 5737) that no client"),
    ("part of a documentation range", {"modelplane:cluster": {"endpointPublicAccess": True,
                                                              "publicAccessCidrs": ["52.94.76.0/24", "198.51.100.8/29"]}},
     "modelplane:cluster.publicAccessCidrs[1]", "198.51.100.8/29 is a documentation range (RFC 5737)"),
    ("private range as the allowlist", {"modelplane:cluster": {"endpointPublicAccess": True,
                                                               "publicAccessCidrs": ["10.0.0.0/8"]}},
     "modelplane:cluster.publicAccessCidrs[0]", "10.0.0.0/8 is not a public range"),
    ("no deployer role", {"modelplane:cluster": {"deployerRoleArn": None}},
     "modelplane:cluster.deployerRoleArn", "is required on an aws stack (got none): the IAM role that runs `pulumi up`"),
    ("deployer that is not a role", {"modelplane:cluster": {"deployerRoleArn": "arn:aws:iam::123456789012:user/ci"}},
     "modelplane:cluster.deployerRoleArn", "must be an IAM role ARN arn:aws:iam::ACCOUNT:role/NAME (got"),
    ("deployer also an admin", {"modelplane:cluster": {"deployerRoleArn": "arn:aws:iam::123456789012:role/platform-admin"}},
     "modelplane:cluster.deployerRoleArn", "is also in adminRoleArns"),
    ("whole internet outside production", {"modelplane:cluster": {"publicAccessCidrs": ["0.0.0.0/0"]}},
     "modelplane:cluster.publicAccessCidrs[0]", "0.0.0.0/0 defeats the allowlist; list specific CIDRs"),
    ("public endpoint in production", {"modelplane:production": True, "modelplane:cluster": {
        "endpointPublicAccess": True, "publicAccessCidrs": ["52.94.76.0/24"]}},
     "modelplane:cluster.endpointPublicAccess", "must be false in a production stack (got true); use a VPN"),
    ("required log type missing", {"modelplane:cluster": {"logTypes": ["api", "authenticator"]}},
     "modelplane:cluster.logTypes", "must include api, audit and authenticator (missing ['audit'])"),
    ("admin that is not a role", {"modelplane:cluster": {"adminRoleArns": ["arn:aws:iam::123456789012:user/me"]}},
     "modelplane:cluster.adminRoleArns[0]", "must be an IAM role ARN arn:aws:iam::ACCOUNT:role/NAME"),
    ("short secrets-key deletion window", {"modelplane:cluster": {"kmsDeletionWindowDays": 3}},
     "modelplane:cluster.kmsDeletionWindowDays", "greater than or equal to 7 (got 3)"),
    ("no node pools", {"modelplane:nodePools": []},
     "modelplane:nodePools", "must be a non-empty list of pools (got [])"),
    ("desired below min", {"modelplane:nodePools": [{**_POOL, "minSize": 2, "maxSize": 3}]},
     "modelplane:nodePools[0].desiredSize", "must be >= minSize (got 1 < 2)"),
    ("node pool without instance types", {"modelplane:nodePools": [{**_POOL, "instanceTypes": []}]},
     "modelplane:nodePools[0].instanceTypes", "at least 1 item"),
    ("short store-key deletion window", {"modelplane:storage": {"kmsDeletionWindowDays": 3}},
     "modelplane:storage.kmsDeletionWindowDays", "greater than or equal to 7 (got 3)"),
    ("long store-key deletion window", {"modelplane:storage": {"kmsDeletionWindowDays": 31}},
     "modelplane:storage.kmsDeletionWindowDays", "less than or equal to 30 (got 31)"),
    ("zero multipart abort days", {"modelplane:storage": {"abortIncompleteMultipartDays": 0}},
     "modelplane:storage.abortIncompleteMultipartDays", "greater than or equal to 1 (got 0)"),
    ("zero noncurrent expiration days", {"modelplane:storage": {"noncurrentVersionExpirationDays": 0}},
     "modelplane:storage.noncurrentVersionExpirationDays", "greater than or equal to 1 (got 0)"),
    ("too many cache nodes", {"modelplane:cache": {"numNodes": 7}},
     "modelplane:cache.numNodes", "less than or equal to 6 (got 7)"),
    ("single-AZ cache in production", {"modelplane:production": True},
     "modelplane:cache.multiAz", "must be true with automaticFailover in a production stack (got false)"),
    ("not an ElastiCache node type", {"modelplane:cache": {"nodeType": "t4g.small"}},
     "modelplane:cache.nodeType", "must be an ElastiCache node type like cache.r7g.large (got 't4g.small')"),
    ("short cache-key deletion window", {"modelplane:cache": {"kmsDeletionWindowDays": 3}},
     "modelplane:cache.kmsDeletionWindowDays", "greater than or equal to 7 (got 3)"),
]


@pytest.mark.parametrize(("changes", "path", "fragment"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_aws_section_rule_names_the_key_and_the_value(changes: dict[str, Any], path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("dev", stack_config_with("dev", changes))
    messages = [issue.message for issue in info.value.issues if issue.path == path]
    assert messages, f"{path} not named in:\n{info.value}"
    assert any(fragment in message for message in messages), messages
