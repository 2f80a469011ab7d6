"""Plausible, deterministic outputs for the offline renderer's mock engine.

Real providers compute ids, ARNs and endpoints at deploy time. The renderer invents stable
ones (derived from type and name, never random) so dependent resources render and two
renders of the same tree are byte-identical.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any, Final

ACCOUNT_ID = "123456789012"
"""The AWS account id every synthesized ARN uses."""

OFFLINE_PREFIX: Final = "offline-"
"""Prefix of the ids, passwords and other values this module makes up for what AWS computes at deploy time."""
DEFAULT_FOR_PREFIX: Final = "default-for-"
"""Prefix of the made-up defaults that depend on an input (e.g. an EKS AMI release for its Kubernetes version)."""

_ID_PREFIXES = {
    "aws:ec2/vpc:Vpc": "vpc-",
    "aws:ec2/subnet:Subnet": "subnet-",
    "aws:ec2/securityGroup:SecurityGroup": "sg-",
    "aws:ec2/natGateway:NatGateway": "nat-",
    "aws:ec2/internetGateway:InternetGateway": "igw-",
    "aws:ec2/eip:Eip": "eipalloc-",
    "aws:ec2/routeTable:RouteTable": "rtb-",
    "aws:ec2/launchTemplate:LaunchTemplate": "lt-",
    "aws:ec2/vpcEndpoint:VpcEndpoint": "vpce-",
    "aws:ec2/flowLog:FlowLog": "fl-",
}


_ID_IS_ARN: Final = frozenset({"aws:secretsmanager/secret:Secret"})
"""Types whose provider id is their ARN (terraform-provider-aws docs/r/secretsmanager_secret: "id - ARN of the secret")."""


def _digest(*parts: str, length: int = 17) -> str:
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:length]


def _arn(type_: str, name: str, region: str, physical: str) -> str:
    module = type_.split(":")[1]
    service = module.split("/")[0]
    kind = type_.split(":")[2]
    if service == "iam":
        return f"arn:aws:iam::{ACCOUNT_ID}:{kind[0].lower() + kind[1:]}/{physical}"
    if service == "s3":
        return f"arn:aws:s3:::{physical}"
    if service == "kms":
        return f"arn:aws:kms:{region}:{ACCOUNT_ID}:key/{physical}"
    if service == "cloudwatch" and kind == "LogGroup":
        return f"arn:aws:logs:{region}:{ACCOUNT_ID}:log-group:{physical}"
    if service == "sqs":
        return f"arn:aws:sqs:{region}:{ACCOUNT_ID}:{physical}"
    if service == "secretsmanager" and kind == "Secret":
        # "arn:aws:secretsmanager:<Region>:<AccountId>:secret:SecretName-6RandomCharacters"
        # (docs.aws.amazon.com/secretsmanager/latest/userguide/whats-in-a-secret.html).
        return f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{physical}-{_digest(name, type_, length=6)}"
    return f"arn:aws:{service}:{region}:{ACCOUNT_ID}:{kind.lower()}/{physical}"


def synthesize_outputs(type_: str, name: str, inputs: dict[str, Any], region: str) -> tuple[str, dict[str, Any]]:
    """(id, outputs) for a resource registration; outputs are merged over the inputs."""
    if type_.startswith("pulumi:providers:"):
        return f"{name}-provider", {}
    if not type_.startswith("aws:"):
        return _non_aws(type_, name, inputs)
    suffix = _digest(type_, name, length=8)
    physical = str(inputs.get("name") or inputs.get("bucket") or f"{name}-{suffix}")
    resource_id = _ID_PREFIXES.get(type_, "") + (_digest(type_, name) if type_ in _ID_PREFIXES else physical)
    if type_ == "aws:kms/key:Key":
        resource_id = physical = f"{_digest(type_, name, length=8)}-{_digest(name, type_, length=12)}"
    outputs: dict[str, Any] = {"id": resource_id, "arn": _arn(type_, name, region, physical)}
    if type_ in _ID_IS_ARN:
        resource_id = outputs["id"] = outputs["arn"]
    if "name" not in inputs:
        outputs["name"] = physical
    outputs.update(_specific(type_, name, inputs, region, physical))
    return resource_id, outputs


def _specific(type_: str, name: str, inputs: dict[str, Any], region: str, physical: str) -> dict[str, Any]:
    digest = _digest(type_, name, length=32).upper()
    if type_ == "aws:eks/cluster:Cluster":
        vpc = dict(inputs.get("vpcConfig") or {})
        vpc["clusterSecurityGroupId"] = f"sg-{_digest('cluster-sg', name)}"
        return {
            "endpoint": f"https://{digest}.gr7.{region}.eks.amazonaws.com",
            "certificateAuthority": {"data": base64.b64encode(b"-----BEGIN CERTIFICATE-----offline").decode()},
            "identities": [{"oidcs": [{"issuer": f"https://oidc.eks.{region}.amazonaws.com/id/{digest}"}]}],
            "vpcConfig": vpc,
            "version": inputs.get("version"),
        }
    if type_ == "aws:s3/bucket:Bucket":
        bucket = str(inputs.get("bucket") or f"{name}-{_digest(name, length=8)}")
        return {"bucket": bucket, "arn": f"arn:aws:s3:::{bucket}",
                "bucketRegionalDomainName": f"{bucket}.s3.{region}.amazonaws.com"}
    if type_ == "aws:kms/key:Key":
        return {"keyId": physical}
    if type_ == "aws:elasticache/replicationGroup:ReplicationGroup":
        return {"primaryEndpointAddress": f"master.{physical}.{_digest(name, length=6)}.use1.cache.amazonaws.com",
                "readerEndpointAddress": f"replica.{physical}.{_digest(name, length=6)}.use1.cache.amazonaws.com",
                "port": 6379}
    if type_ == "aws:iam/openIdConnectProvider:OpenIdConnectProvider":
        url = str(inputs.get("url", "")).removeprefix("https://")
        return {"arn": f"arn:aws:iam::{ACCOUNT_ID}:oidc-provider/{url}"}
    if type_ == "aws:sqs/queue:Queue":
        return {"url": f"https://sqs.{region}.amazonaws.com/{ACCOUNT_ID}/{physical}"}
    if type_ == "aws:eks/nodeGroup:NodeGroup":
        return {"resources": [{"autoscalingGroups": [{"name": f"eks-{physical}"}]}]}
    if type_ == "aws:ec2/launchTemplate:LaunchTemplate":
        return {"latestVersion": 1}
    if type_ == "aws:msk/configuration:Configuration":
        return {"arn": f"arn:aws:kafka:{region}:{ACCOUNT_ID}:configuration/{physical}/{_digest(name, length=8)}",
                "latestRevision": 1}
    if type_ == "aws:msk/cluster:Cluster":
        # MSK's forms: cluster/NAME/UUID-N, and one b-N host per broker on the SASL/IAM port.
        cluster, uuid = str(inputs.get("clusterName") or physical), f"{_digest(name, type_, length=32)}-1"
        hosts = [f"b-{i}.{cluster}.{_digest(name, length=6)}.c2.kafka.{region}.amazonaws.com:9098"
                 for i in range(1, int(inputs.get("numberOfBrokerNodes") or 1) + 1)]
        return {"arn": f"arn:aws:kafka:{region}:{ACCOUNT_ID}:cluster/{cluster}/{uuid}", "clusterUuid": uuid,
                "bootstrapBrokersSaslIam": ",".join(hosts)}
    if type_ == "aws:opensearch/domain:Domain":
        domain = str(inputs.get("domainName") or physical)
        return {"arn": f"arn:aws:es:{region}:{ACCOUNT_ID}:domain/{domain}",
                "endpoint": f"vpc-{domain}-{_digest(name, length=26).lower()}.{region}.es.amazonaws.com"}
    return {}


def _non_aws(type_: str, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if type_.startswith("random:"):
        # Deterministic stand-in; the engine masks it because the real provider marks it secret.
        return name, {"result": f"{OFFLINE_PREFIX}{_digest(type_, name, length=24)}", "id": name}
    if type_.startswith("kubernetes:"):
        metadata = dict(inputs.get("metadata") or {})
        metadata.setdefault("name", name)
        return f"{metadata.get('namespace', 'default')}/{metadata['name']}", {"metadata": metadata}
    return name, {}


def synthesize_call(token: str, args: dict[str, Any], region: str) -> dict[str, Any]:
    """The result of an invoke (data source) under the renderer."""
    if token == "aws:eks/getAddonVersion:getAddonVersion":
        # The real call resolves AWS's default add-on build for the cluster version at deploy time.
        version = f"{DEFAULT_FOR_PREFIX}{args.get('kubernetesVersion')}"
        return {**args, "id": args.get("addonName"), "version": version}
    if token == "aws:index/getCallerIdentity:getCallerIdentity":
        return {"accountId": ACCOUNT_ID, "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/offline", "userId": "OFFLINE", "id": ACCOUNT_ID}
    if token == "aws:index/getPartition:getPartition":
        return {"partition": "aws", "dnsSuffix": "amazonaws.com", "id": "aws"}
    if token == "aws:index/getRegion:getRegion":
        return {"name": region, "region": region, "id": region}
    raise NotImplementedError(f"the offline renderer has no answer for invoke {token}; add one to infra/outputs.py")
