"""Block and file storage encrypted at rest: node volumes (launch templates, instances, Karpenter EC2NodeClasses),
EBS volumes, the EBS CSI driver's StorageClasses, EFS file systems and RDS storage.

What AWS does when a field is left out decides what counts: an EBS volume, a launch template's or instance's block
device and an EBS CSI volume are unencrypted unless asked (or unless the account turns EBS encryption on by
default, which this pack cannot see); Karpenter encrypts only the root volume it chooses itself (karpenter-provider-aws
pkg/providers/amifamily/resolver.go `DefaultEBS`: Encrypted true, gp3, 20Gi), so an EC2NodeClass without
blockDeviceMappings passes and each mapping it lists must say `encrypted: true`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policies.kube import describe, is_ec2_nodeclass, kind_of
from policies.wire import as_list

LAUNCH_TEMPLATE: Final = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE: Final = "aws:ec2/instance:Instance"
EBS_VOLUME: Final = "aws:ebs/volume:Volume"
EFS_FILE_SYSTEM: Final = "aws:efs/fileSystem:FileSystem"
RDS_TYPES: Final = frozenset({"aws:rds/instance:Instance", "aws:rds/cluster:Cluster"})
EBS_PROVISIONERS: Final = frozenset({"ebs.csi.aws.com", "kubernetes.io/aws-ebs"})
"""StorageClass provisioners that create EBS volumes (aws-ebs-csi-driver docs/parameters.md: `encrypted` "true")."""


def _on(value: Any) -> bool:
    # Launch templates take the flag as a string ("true"), everything else as a boolean.
    return value is True or str(value).lower() == "true"


def _unencrypted(args: ResourceValidationArgs) -> Iterator[tuple[str, str]]:
    """(what, fix) for each volume the resource leaves unencrypted."""
    props, type_ = args.props, args.resource_type
    if type_ == LAUNCH_TEMPLATE:
        mappings = [m for m in as_list(props.get("blockDeviceMappings")) if isinstance(m, Mapping)]
        if not mappings:
            yield ("takes its volumes from the AMI's block device mappings, unencrypted unless the account encrypts "
                   "EBS by default", "add block_device_mappings for the root device with ebs encrypted='true'")
        for m in mappings:
            if isinstance(m.get("ebs"), Mapping) and not _on(m["ebs"].get("encrypted")):
                yield f"blockDeviceMappings[{m.get('deviceName')}].ebs", "set ebs encrypted='true' (and a KMS key)"
    elif type_ == INSTANCE:
        root = props.get("rootBlockDevice")
        if not (isinstance(root, Mapping) and _on(root.get("encrypted"))):
            yield "rootBlockDevice", "set root_block_device encrypted=True"
        for device in as_list(props.get("ebsBlockDevices")):
            if isinstance(device, Mapping) and not _on(device.get("encrypted")):
                yield f"ebsBlockDevices[{device.get('deviceName')}]", "set encrypted=True"
    elif type_ == EBS_VOLUME and not _on(props.get("encrypted")):
        yield "the volume", "set encrypted=True and kms_key_id"
    elif type_ == EFS_FILE_SYSTEM and not _on(props.get("encrypted")):
        yield "the file system", "set encrypted=True and kms_key_id"
    elif type_ in RDS_TYPES and not _on(props.get("storageEncrypted")):
        yield "the database storage", "set storage_encrypted=True and kms_key_id"
    elif type_.startswith("kubernetes:") and is_ec2_nodeclass(props):
        for m in as_list((props.get("spec") or {}).get("blockDeviceMappings")):
            if isinstance(m, Mapping) and isinstance(m.get("ebs"), Mapping) and m["ebs"].get("encrypted") is not True:
                yield f"spec.blockDeviceMappings[{m.get('deviceName')}].ebs", "set ebs.encrypted: true (and kmsKeyID)"
    elif (type_.startswith("kubernetes:") and kind_of(props) == "StorageClass"
          and props.get("provisioner") in EBS_PROVISIONERS
          and not _on((props.get("parameters") or {}).get("encrypted"))):
        yield "the volumes it provisions", "set parameters.encrypted: \"true\" (and kmsKeyId)"


def _encrypted_at_rest(args: ResourceValidationArgs, report: ReportViolation) -> None:
    what = describe(args.props, args.name) if args.resource_type.startswith("kubernetes:") else (
        f"{args.resource_type.rsplit(':', 1)[-1]} '{args.name}'")
    for where, fix in _unencrypted(args):
        report(f"{what}: {where} is not encrypted at rest, so a snapshot or a detached volume reads in the clear. "
               f"Fix: {fix}.", args.urn)


STORAGE_ENCRYPTED = ResourceValidationPolicy(
    name="storage-encrypted",
    description="Node volumes, EBS volumes, EBS StorageClasses, EFS file systems and RDS storage are encrypted at rest.",
    validate=_encrypted_at_rest, enforcement_level=EnforcementLevel.MANDATORY,
    url="https://docs.aws.amazon.com/ebs/latest/userguide/ebs-encryption.html",
)

POLICIES: Final = (STORAGE_ENCRYPTED,)
"""The storage encryption rules."""
