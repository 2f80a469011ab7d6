"""`Cluster`: EKS with a private endpoint, encrypted secrets, access entries, add-ons and node groups."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import versions
from infra.aws.iam import managed_policy_arn, pod_identity_trust_policy, service_trust_policy
from infra.aws.logging import logs_kms_key
from infra.config.cluster import ClusterConfig, NodePoolConfig
from workloads.common.vocab import POOL_LABEL

CLUSTER_ADMIN_POLICY = "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
"""EKS access policy given to each `cluster.adminRoleArns` role and to `cluster.deployerRoleArn`, cluster-wide."""
NODE_POLICIES = ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
"""AWS-managed policies on the node role. The CNI policy is not here: vpc-cni gets its own Pod Identity role."""
ADDON_NAMESPACE = "kube-system"
"""Where the managed add-ons run their service accounts."""
ADDON_POD_IDENTITY_POLICIES = {
    "vpc-cni": ("aws-node", "AmazonEKS_CNI_Policy"),
    "aws-ebs-csi-driver": ("ebs-csi-controller-sa", "service-role/AmazonEBSCSIDriverPolicy"),
}
"""Add-ons that call AWS APIs: (service account, managed policy) for their own Pod Identity role."""
ADDON_CONFIGURATION = {"vpc-cni": {"enableNetworkPolicy": "true"}}
"""Add-on configuration values: vpc-cni enforces NetworkPolicies only when asked (docs.aws.amazon.com/eks/latest/
userguide/cni-network-policy-configure.html); the platform's policies are in infra/k8s/netpol.py."""
ADDONS_AFTER_NODES = frozenset({"coredns", "aws-ebs-csi-driver"})
"""Add-ons whose pods need nodes to become healthy; created after the node groups."""


class Cluster(pulumi.ComponentResource):
    """An EKS cluster, hardened by default, with its add-ons, node groups and a Kubernetes provider."""

    cluster_name: pulumi.Output[str]
    """The EKS cluster name."""
    cluster_endpoint: pulumi.Output[str]
    """The API server endpoint."""
    cluster_arn: pulumi.Output[str]
    """The cluster ARN."""
    cluster_security_group_id: pulumi.Output[str]
    """The EKS-managed cluster security group (also on managed node group nodes)."""
    oidc_provider_arn: pulumi.Output[str]
    """ARN of the IAM OIDC provider (IRSA)."""
    oidc_issuer: pulumi.Output[str]
    """The OIDC issuer URL without the scheme."""
    node_role_arn: pulumi.Output[str]
    """The node IAM role ARN."""
    secrets_kms_key_arn: pulumi.Output[str]
    """The KMS key encrypting Kubernetes secrets."""
    provider: k8s.Provider
    """A Kubernetes provider for this cluster."""

    def __init__(self, name: str, config: ClusterConfig, *, node_pools: Sequence[NodePoolConfig], cluster_name: str,
                 subnet_ids: Sequence[pulumi.Input[str]], control_plane_subnet_ids: Sequence[pulumi.Input[str]],
                 deletion_protection: bool, opts: pulumi.ResourceOptions | None = None) -> None:
        """`cluster_name` is the stable physical name; nodes go in `subnet_ids`, the API's ENIs in
        `control_plane_subnet_ids`; each of `node_pools` becomes a managed node group."""
        super().__init__("modelplane:cluster:Cluster", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        key = aws.kms.Key(f"{name}-secrets", description=f"EKS secrets envelope encryption for {cluster_name}",
                          enable_key_rotation=True, deletion_window_in_days=config.kms_deletion_window_days, opts=child)
        aws.kms.Alias(f"{name}-secrets", name=f"alias/{cluster_name}-eks-secrets", target_key_id=key.key_id,
                      opts=child)
        # EKS writes to this exact name; creating it first puts retention and encryption under our control.
        log_group_name = f"/aws/eks/{cluster_name}/cluster"
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self)).region
        logs_key = logs_kms_key(f"{name}-logs", description=f"EKS control-plane logs of {cluster_name}",
                                log_group_pattern=log_group_name, region=region,
                                deletion_window_days=config.kms_deletion_window_days, opts=child)
        aws.kms.Alias(f"{name}-logs", name=f"alias/{cluster_name}-eks-logs", target_key_id=logs_key.key_id,
                      opts=child)
        log_group = aws.cloudwatch.LogGroup(f"{name}-control-plane", name=log_group_name,
                                            retention_in_days=config.log_retention_days, kms_key_id=logs_key.arn,
                                            opts=child)
        role = aws.iam.Role(f"{name}-control-plane", assume_role_policy=service_trust_policy(
            "eks.amazonaws.com", actions=("sts:AssumeRole", "sts:TagSession")), opts=child)
        attachment = aws.iam.RolePolicyAttachment(f"{name}-control-plane", role=role.name,
                                                  policy_arn=managed_policy_arn("AmazonEKSClusterPolicy"), opts=child)
        cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=cluster_name,
            version=config.version,
            role_arn=role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=list(control_plane_subnet_ids),
                endpoint_private_access=True,
                endpoint_public_access=config.endpoint_public_access,
                public_access_cidrs=[str(c) for c in config.public_access_cidrs] if config.endpoint_public_access
                else None,
            ),
            # API mode: access is granted by access entries, never by the aws-auth ConfigMap.
            access_config=aws.eks.ClusterAccessConfigArgs(
                authentication_mode="API", bootstrap_cluster_creator_admin_permissions=False,
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn), resources=["secrets"],
            ),
            enabled_cluster_log_types=list(config.log_types),
            # Standard support only: extended support costs 6x per cluster-hour.
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=deletion_protection,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[log_group, attachment]),
        )
        self.cluster_name = cluster.name
        self.cluster_endpoint = cluster.endpoint
        self.cluster_arn = cluster.arn
        self.cluster_security_group_id = cluster.vpc_config.cluster_security_group_id
        self.secrets_kms_key_arn = key.arn
        self.oidc_issuer = cluster.identities[0].oidcs[0].issuer.apply(lambda url: (url or "").removeprefix("https://"))
        oidc = aws.iam.OpenIdConnectProvider(f"{name}-oidc", url=cluster.identities[0].oidcs[0].issuer,
                                             client_id_lists=["sts.amazonaws.com"], opts=child)
        self.oidc_provider_arn = oidc.arn

        for i, arn in enumerate(config.admin_role_arns):
            self._cluster_admin(f"{name}-admin-{i}", cluster, arn)
        # The role running `pulumi up` creates every Kubernetes object below; with bootstrap admin off (API mode) it
        # has no access unless this entry exists first.
        deployer_access = self._cluster_admin(f"{name}-deployer", cluster, config.deployer_role_arn)

        node_role = aws.iam.Role(f"{name}-node", assume_role_policy=service_trust_policy("ec2.amazonaws.com"),
                                 opts=child)
        self.node_role_arn = node_role.arn
        node_attachments = [
            aws.iam.RolePolicyAttachment(f"{name}-node-{policy}", role=node_role.name,
                                         policy_arn=managed_policy_arn(policy), opts=child)
            for policy in NODE_POLICIES
        ]
        early_addons = self._addons(name, config.version, cluster, cluster_name,
                                    [a for a in versions.EKS_ADDONS if a not in ADDONS_AFTER_NODES], depends_on=[])
        node_groups = [
            self._node_group(name, pool, cluster_name, subnet_ids, cluster, node_role, [*node_attachments, *early_addons])
            for pool in node_pools
        ]
        self._addons(name, config.version, cluster, cluster_name,
                     [a for a in versions.EKS_ADDONS if a in ADDONS_AFTER_NODES], depends_on=node_groups)

        self.provider = k8s.Provider(
            f"{name}-k8s", kubeconfig=_kubeconfig(cluster), enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*node_groups, deployer_access]),
        )
        self.register_outputs({
            "cluster_name": self.cluster_name,
            "cluster_endpoint": self.cluster_endpoint,
            "oidc_provider_arn": self.oidc_provider_arn,
            "node_role_arn": self.node_role_arn,
        })

    def _cluster_admin(self, name: str, cluster: aws.eks.Cluster, principal_arn: str) -> aws.eks.AccessPolicyAssociation:
        entry = aws.eks.AccessEntry(name, cluster_name=cluster.name, principal_arn=principal_arn, type="STANDARD",
                                    opts=pulumi.ResourceOptions(parent=self))
        return aws.eks.AccessPolicyAssociation(
            name, cluster_name=cluster.name, principal_arn=principal_arn, policy_arn=CLUSTER_ADMIN_POLICY,
            access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[entry]),
        )

    def _addons(self, name: str, kubernetes_version: str, cluster: aws.eks.Cluster, cluster_name: str,
                addons: Sequence[str], depends_on: Sequence[pulumi.Resource]) -> list[aws.eks.Addon]:
        created = []
        for addon in addons:
            version = aws.eks.get_addon_version_output(addon_name=addon, kubernetes_version=kubernetes_version,
                                                       most_recent=False)
            associations = None
            if addon in ADDON_POD_IDENTITY_POLICIES:
                service_account, policy = ADDON_POD_IDENTITY_POLICIES[addon]
                role = aws.iam.Role(f"{name}-{addon}",
                                    assume_role_policy=pod_identity_trust_policy(cluster_name, ADDON_NAMESPACE,
                                                                                 service_account),
                                    opts=pulumi.ResourceOptions(parent=self))
                aws.iam.RolePolicyAttachment(f"{name}-{addon}", role=role.name, policy_arn=managed_policy_arn(policy),
                                             opts=pulumi.ResourceOptions(parent=self))
                associations = [aws.eks.AddonPodIdentityAssociationArgs(role_arn=role.arn,
                                                                        service_account=service_account)]
            created.append(aws.eks.Addon(
                f"{name}-{addon}", cluster_name=cluster.name, addon_name=addon, addon_version=version.version,
                resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="PRESERVE",
                pod_identity_associations=associations,
                configuration_values=json.dumps(ADDON_CONFIGURATION[addon]) if addon in ADDON_CONFIGURATION else None,
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on)),
            ))
        return created

    def _node_group(self, name: str, pool: NodePoolConfig, cluster_name: str, subnet_ids: Sequence[pulumi.Input[str]],
                    cluster: aws.eks.Cluster, node_role: aws.iam.Role,
                    depends_on: Sequence[pulumi.Resource]) -> aws.eks.NodeGroup:
        child = pulumi.ResourceOptions(parent=self)
        template = aws.ec2.LaunchTemplate(
            f"{name}-{pool.name}",
            description=f"{cluster_name} {pool.name} nodes: IMDSv2 only, encrypted gp3 root",
            # Hop limit 1 keeps pods (one network hop away) from reading node credentials via IMDS.
            metadata_options=aws.ec2.LaunchTemplateMetadataOptionsArgs(
                http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=1,
            ),
            block_device_mappings=[aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
                device_name="/dev/xvda",
                ebs=aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                    volume_size=pool.disk_size_gb, volume_type="gp3", encrypted="true", delete_on_termination="true",
                ),
            )],
            tag_specifications=[aws.ec2.LaunchTemplateTagSpecificationArgs(
                resource_type=kind, tags={"Name": f"{cluster_name}-{pool.name}", POOL_LABEL: pool.name},
            ) for kind in ("instance", "volume")],
            opts=child,
        )
        return aws.eks.NodeGroup(
            f"{name}-{pool.name}",
            cluster_name=cluster.name,
            node_role_arn=node_role.arn,
            subnet_ids=list(subnet_ids),
            instance_types=list(pool.instance_types),
            capacity_type=pool.capacity_type,
            ami_type=versions.SYSTEM_AMI_TYPE,
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(
                min_size=pool.min_size, desired_size=pool.desired_size, max_size=pool.max_size,
            ),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            labels={**pool.labels, POOL_LABEL: pool.name},
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(depends_on),
                                        ignore_changes=["scalingConfig.desiredSize"]),
        )


def _kubeconfig(cluster: aws.eks.Cluster) -> pulumi.Output[str]:
    # Token via `aws eks get-token` at use time: no long-lived credential is ever stored in state.
    return pulumi.Output.all(cluster.name, cluster.endpoint, cluster.certificate_authority.data).apply(
        lambda values: json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": values[0], "cluster": {"server": values[1], "certificate-authority-data": values[2]}}],
            "contexts": [{"name": values[0], "context": {"cluster": values[0], "user": values[0]}}],
            "current-context": values[0],
            "users": [{"name": values[0], "user": {"exec": {
                "apiVersion": "client.authentication.k8s.io/v1beta1",
                "command": "aws",
                "args": ["eks", "get-token", "--cluster-name", values[0], "--output", "json"],
            }}}],
        }, sort_keys=True)
    )
