"""Adversarial resources each rule claims to catch: privilege paths beyond privileged/SYS_ADMIN, host ports, public S3
through a bucket policy or ACL grants, security groups opened by a CIDR that is not spelled 0.0.0.0/0, and volumes
left unencrypted (the storage-encrypted rule)."""

import copy
import json

import pytest

from policies.rules.eks import EKS_ENDPOINT_ALLOWLIST
from policies.rules.network import SG_NO_OPEN_INGRESS
from policies.rules.s3 import BLOCK_FLAGS, BUCKET_POLICY, PUBLIC_ACCESS_BLOCK, S3_PUBLIC_ACCESS_BLOCKED
from policies.rules.storage import STORAGE_ENCRYPTED
from policies.rules.workloads import K8S_IMAGE_PINNED, K8S_NO_HOST_ACCESS, K8S_NO_PRIVILEGED, K8S_RESOURCE_LIMITS
from tests.policies.helpers import Res, k8s, stack_violations, violations
from tests.policies.test_workloads import CONTAINER, PATCH, POD, check, deployment, trainjob, with_container


def cronjob(pod: dict) -> dict:
    return k8s("batch/v1", "CronJob", "nightly", {"schedule": "0 3 * * *",
                                                  "jobTemplate": {"spec": {"template": {"spec": pod}}}})


def with_context(**changes) -> dict:
    return with_container(securityContext={**CONTAINER["securityContext"], **changes})


@pytest.mark.parametrize("capability", ["NET_ADMIN", "SYS_PTRACE", "SYS_MODULE", "BPF", "CAP_SYS_ADMIN", "net_raw"])
def test_any_added_capability_but_net_bind_service_is_reported(capability) -> None:
    [found] = check(K8S_NO_PRIVILEGED, deployment(with_context(capabilities={"drop": ["ALL"], "add": [capability]})))
    assert "capabilities.add" in found and capability.upper().removeprefix("CAP_") in found
    assert check(K8S_NO_PRIVILEGED, deployment(with_context(capabilities={"drop": ["ALL"],
                                                                          "add": ["NET_BIND_SERVICE"]}))) == []


@pytest.mark.parametrize(("changes", "expected"), [
    ({"allowPrivilegeEscalation": True}, "allowPrivilegeEscalation: true"),
    ({"allowPrivilegeEscalation": None}, "allowPrivilegeEscalation: unset (true)"),
    ({"procMount": "Unmasked"}, "procMount: Unmasked"),
    ({"seccompProfile": {"type": "Unconfined"}}, "seccompProfile: Unconfined"),
])
def test_privilege_escalation_paths_are_reported(changes, expected) -> None:
    context = {k: v for k, v in {**CONTAINER["securityContext"], **changes}.items() if v is not None}
    [found] = check(K8S_NO_PRIVILEGED, cronjob(with_container(securityContext=context)))
    assert expected in found and "CronJob apps/nightly spec.jobTemplate.spec.template.spec.containers[server]" in found


def test_pod_level_unconfined_seccomp_is_reported() -> None:
    pod = copy.deepcopy(POD)
    pod["securityContext"]["seccompProfile"] = {"type": "Unconfined"}
    assert len(check(K8S_NO_PRIVILEGED, deployment(pod))) == 1


@pytest.mark.parametrize("field", ["initContainers", "ephemeralContainers"])
def test_privileged_init_and_ephemeral_containers_in_a_cronjob_are_reported(field) -> None:
    pod = copy.deepcopy(POD)
    pod[field] = [{**copy.deepcopy(CONTAINER), "name": "setup", "securityContext": {"privileged": True}}]
    [found] = check(K8S_NO_PRIVILEGED, cronjob(pod))
    assert f"{field}[setup]" in found and "privileged: true" in found


def test_a_trainjob_patch_is_judged_on_what_it_sets() -> None:
    patch = copy.deepcopy(PATCH)
    assert check(K8S_NO_PRIVILEGED, trainjob(pod_patch=patch)) == []  # unset keeps the runtime's false
    patch["containers"][0]["securityContext"] = {"capabilities": {"add": ["SYS_PTRACE"]}, "allowPrivilegeEscalation": True}
    [found] = check(K8S_NO_PRIVILEGED, trainjob(pod_patch=patch))
    assert "SYS_PTRACE" in found and "allowPrivilegeEscalation: true" in found and "runtimePatches" in found


def test_a_host_port_is_reported() -> None:
    pod = with_container(ports=[{"containerPort": 8000, "hostPort": 8000}])
    [found] = check(K8S_NO_HOST_ACCESS, cronjob(pod))
    assert "containers[server] hostPort 8000" in found
    assert check(K8S_NO_HOST_ACCESS, cronjob(with_container(ports=[{"containerPort": 8000}]))) == []


@pytest.mark.parametrize("image", ["ghcr.io/modelplane/serve", "ghcr.io/modelplane/serve:latest", "localhost:5000/x"])
def test_unpinned_images_in_cronjob_init_containers_are_reported(image) -> None:
    pod = copy.deepcopy(POD)
    pod["initContainers"] = [{**copy.deepcopy(CONTAINER), "name": "fetch", "image": image}]
    [found] = check(K8S_IMAGE_PINNED, cronjob(pod))
    assert "initContainers[fetch]" in found and repr(image) in found


def test_a_cronjob_init_container_without_limits_is_reported() -> None:
    pod = copy.deepcopy(POD)
    pod["initContainers"] = [{**copy.deepcopy(CONTAINER), "name": "fetch", "resources": {"requests": {"cpu": "1"}}}]
    [found] = check(K8S_RESOURCE_LIMITS, cronjob(pod))
    assert "initContainers[fetch] sets no limits.cpu, limits.memory" in found


# --- S3: a bucket made public by its policy or ACL grants, behind a compliant public access block -----------------

BUCKET = Res("aws:s3/bucket:Bucket", "data", {"bucket": "data"})
BLOCK = Res(PUBLIC_ACCESS_BLOCK, "data", {"bucket": "data", **{flag: True for flag in BLOCK_FLAGS}})


def bucket_policy(*statements: dict) -> Res:
    return Res(BUCKET_POLICY, "data", {"bucket": "data", "policy": json.dumps({"Version": "2012-10-17",
                                                                              "Statement": list(statements)})})


READ = {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::data/*"}


@pytest.mark.parametrize("statement", [
    {**READ, "Principal": "*"},
    {**READ, "Sid": "Anyone", "Principal": {"AWS": ["arn:aws:iam::123456789012:root", "*"]}},
    {**READ, "NotPrincipal": {"AWS": "arn:aws:iam::123456789012:root"}},
    {**READ, "Principal": "*", "Condition": {"IpAddress": {"aws:SourceIp": "0.0.0.0/0"}}},
    {**READ, "Principal": "*", "Condition": {"StringLike": {"aws:SourceVpce": "vpce-*"}}},
])
def test_a_public_bucket_policy_is_reported(statement) -> None:
    [(where, found)] = stack_violations(S3_PUBLIC_ACCESS_BLOCKED, [BUCKET, BLOCK, bucket_policy(statement)])
    assert where.endswith("bucketPolicy:BucketPolicy::data") and "allows any principal" in found
    assert statement.get("Sid", "Statement[0]") in found


@pytest.mark.parametrize("statement", [
    {**READ, "Principal": {"AWS": "arn:aws:iam::123456789012:role/reader"}},
    {**READ, "Principal": "*", "Condition": {"StringEquals": {"aws:SourceVpce": "vpce-0123456789abcdef0"}}},
    {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
     "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
])
def test_a_private_bucket_policy_complies(statement) -> None:
    assert stack_violations(S3_PUBLIC_ACCESS_BLOCKED, [BUCKET, BLOCK, bucket_policy(statement)]) == []


ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def test_acl_grants_to_everyone_are_reported() -> None:
    acl = Res("aws:s3/bucketAcl:BucketAcl", "data", {"bucket": "data", "accessControlPolicy": {
        "owner": {"id": "owner"}, "grants": [{"grantee": {"type": "Group", "uri": ALL_USERS}, "permission": "READ"}]}})
    [(_, found)] = stack_violations(S3_PUBLIC_ACCESS_BLOCKED, [BUCKET, BLOCK, acl])
    assert "Bucket ACL 'data' grants READ to AllUsers" in found
    inline = Res("aws:s3/bucket:Bucket", "data", {"bucket": "data", "grants": [
        {"type": "Group", "uri": ALL_USERS.replace("AllUsers", "AuthenticatedUsers"), "permissions": ["WRITE"]}]})
    [(_, found)] = stack_violations(S3_PUBLIC_ACCESS_BLOCKED, [inline, BLOCK])
    assert "public ACL" in found and "WRITE to AuthenticatedUsers" in found


# --- Security groups: the internet spelled another way ------------------------------------------------------------

RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"


@pytest.mark.parametrize("source", [{"cidrIpv4": "0.0.0.0/1"}, {"cidrIpv4": "128.0.0.0/1"}, {"cidrIpv6": "::0/0"},
                                    {"cidrIpv6": "2000::/3"}])
def test_an_internet_wide_cidr_is_reported(source) -> None:
    [found] = violations(SG_NO_OPEN_INGRESS, RULE, {**source, "ipProtocol": "tcp", "fromPort": 22, "toPort": 22})
    assert "admits the whole internet" in found


@pytest.mark.parametrize("source", [{"cidrIpv4": "10.0.0.0/8"}, {"cidrIpv4": "203.0.113.0/24"},
                                    {"cidrIpv6": "fd00::/8"}, {"referencedSecurityGroupId": "sg-0123"}])
def test_narrow_or_private_sources_comply(source) -> None:
    assert violations(SG_NO_OPEN_INGRESS, RULE, {**source, "ipProtocol": "tcp", "fromPort": 22, "toPort": 22}) == []


def test_a_split_open_cidr_in_an_inline_ingress_block_is_reported() -> None:
    props = {"ingress": [{"protocol": "-1", "fromPort": 0, "toPort": 0, "cidrBlocks": ["0.0.0.0/1", "128.0.0.0/1"]}]}
    assert len(violations(SG_NO_OPEN_INGRESS, "aws:ec2/securityGroup:SecurityGroup", props)) == 1


# --- storage-encrypted -------------------------------------------------------------------------------------------

LT = "aws:ec2/launchTemplate:LaunchTemplate"
NODECLASS_API = "karpenter.k8s.aws/v1"


def nodeclass(mappings: list | None) -> dict:
    spec = {"amiSelectorTerms": [{"alias": "al2023@latest"}]}
    if mappings is not None:
        spec["blockDeviceMappings"] = mappings
    return k8s(NODECLASS_API, "EC2NodeClass", "gpu", spec, namespace=None)


def ebs_class(parameters: dict) -> dict:
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "gp3"},
            "provisioner": "ebs.csi.aws.com", "parameters": parameters}


@pytest.mark.parametrize(("type_", "props", "expected"), [
    (LT, {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false", "volumeSize": 100}}]},
     "LaunchTemplate 'subject': blockDeviceMappings[/dev/xvda].ebs is not encrypted"),
    (LT, {"imageId": "ami-0123"}, "AMI's block device mappings"),
    ("aws:ec2/instance:Instance", {"rootBlockDevice": {"encrypted": True},
                                   "ebsBlockDevices": [{"deviceName": "/dev/sdf", "volumeSize": 10}]},
     "ebsBlockDevices[/dev/sdf]"),
    ("aws:ebs/volume:Volume", {"size": 100}, "the volume is not encrypted"),
    ("aws:efs/fileSystem:FileSystem", {"encrypted": False}, "the file system is not encrypted"),
    ("aws:rds/cluster:Cluster", {"engine": "aurora-postgresql"}, "the database storage"),
    (f"kubernetes:{NODECLASS_API}:EC2NodeClass",
     nodeclass([{"deviceName": "/dev/xvda", "ebs": {"volumeSize": "200Gi", "volumeType": "gp3"}}]),
     "EC2NodeClass gpu: spec.blockDeviceMappings[/dev/xvda].ebs is not encrypted"),
    ("kubernetes:storage.k8s.io/v1:StorageClass", ebs_class({"type": "gp3"}), "StorageClass gp3: the volumes it provisions"),
])
def test_unencrypted_storage_is_reported(type_, props, expected) -> None:
    [found] = violations(STORAGE_ENCRYPTED, type_, props)
    assert expected in found and "Fix:" in found


@pytest.mark.parametrize(("type_", "props"), [
    (LT, {"blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "true", "volumeSize": 100}}]}),
    ("aws:ebs/volume:Volume", {"size": 100, "encrypted": True}),
    (f"kubernetes:{NODECLASS_API}:EC2NodeClass", nodeclass(None)),  # Karpenter's own root volume is encrypted
    ("kubernetes:storage.k8s.io/v1:StorageClass", ebs_class({"type": "gp3", "encrypted": "true"})),
    ("kubernetes:storage.k8s.io/v1:StorageClass", {**ebs_class({}), "provisioner": "rancher.io/local-path"}),
])
def test_encrypted_storage_complies(type_, props) -> None:
    assert violations(STORAGE_ENCRYPTED, type_, props) == []


def test_an_open_default_security_group_is_reported() -> None:
    props = {"vpcId": "vpc-1", "ingress": [{"protocol": "tcp", "fromPort": 22, "toPort": 22, "cidrBlocks": ["0.0.0.0/0"]}]}
    [found] = violations(SG_NO_OPEN_INGRESS, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", props)
    assert "ingress[0] admits the whole internet" in found


@pytest.mark.parametrize(("cidrs", "open_"), [(["0.0.0.0/1", "128.0.0.0/1"], True), (["::0/0"], True),
                                              (["203.0.113.0/24"], False)])
def test_an_eks_endpoint_open_to_the_internet_in_halves_is_reported(cidrs, open_) -> None:
    props = {"vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": cidrs}}
    assert bool(violations(EKS_ENDPOINT_ALLOWLIST, "aws:eks/cluster:Cluster", props)) is open_


def test_a_host_path_persistent_volume_is_reported() -> None:
    volume = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "node-root"},
              "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/"}}}
    [found] = violations(K8S_NO_HOST_ACCESS, "kubernetes:core/v1:PersistentVolume", volume)
    assert "PersistentVolume node-root is a hostPath volume ('/')" in found and "Fix:" in found
    csi = {**volume, "spec": {"capacity": {"storage": "1Gi"}, "csi": {"driver": "ebs.csi.aws.com", "volumeHandle": "v"}}}
    assert violations(K8S_NO_HOST_ACCESS, "kubernetes:core/v1:PersistentVolume", csi) == []
