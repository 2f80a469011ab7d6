"""The composition root: stack config in, components out, exports. No raw resources here."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from infra.cache import Cache, CacheArgs
from infra.cluster import Cluster, ClusterArgs, NodePoolSpec
from infra.config import CacheConfig, PlatformConfig, StorageConfig
from infra.identity import WorkloadIdentity, WorkloadIdentityArgs
from infra.namespaces import Namespaces, NamespacesArgs
from infra.network import Network, NetworkArgs
from infra.storage import ModelStore, ModelStoreArgs
from infra.tags import tag_transform

TRAINER_SERVICE_ACCOUNT = ("training", "trainer")
"""(namespace, service account) of training jobs."""
SERVER_SERVICE_ACCOUNT = ("inference", "model-server")
"""(namespace, service account) of inference services."""


def build(config: PlatformConfig) -> None:
    """Declare the whole platform for one stack."""
    if config.is_aws:
        provider = _build_aws(config)
    else:
        provider = k8s.Provider("local", context=config.kube_context, enable_server_side_apply=True)
        pulumi.export("kube_context", config.kube_context or "(current)")
    Namespaces("workloads", NamespacesArgs(), opts=pulumi.ResourceOptions(provider=provider))


def _build_aws(config: PlatformConfig) -> k8s.Provider:
    assert config.network and config.cluster and config.region  # guaranteed by parse_config for target aws
    pulumi.runtime.register_resource_transform(tag_transform(config.stack, config.tags))
    cluster_name = f"modelplane-{config.stack}"
    net = config.network
    network = Network("network", NetworkArgs(
        cidr=str(net.cidr), availability_zones=net.availability_zones,
        public_subnets=[str(s) for s in net.public_subnets], private_subnets=[str(s) for s in net.private_subnets],
        intra_subnets=[str(s) for s in net.intra_subnets], nat_gateways=net.nat_gateways,
        interface_endpoints=net.interface_endpoints, region=config.region, cluster_name=cluster_name,
        flow_logs=net.flow_logs.enabled, flow_logs_retention_days=net.flow_logs.retention_days,
        flow_logs_traffic_type=net.flow_logs.traffic_type,
    ))
    cl = config.cluster
    cluster = Cluster("cluster", ClusterArgs(
        cluster_name=cluster_name, version=cl.version, subnet_ids=network.private_subnet_ids,
        control_plane_subnet_ids=network.intra_subnet_ids or network.private_subnet_ids,
        endpoint_public_access=cl.endpoint_public_access, public_access_cidrs=[str(c) for c in cl.public_access_cidrs],
        admin_role_arns=cl.admin_role_arns, log_types=cl.log_types, log_retention_days=cl.log_retention_days,
        deletion_protection=config.deletion_protection,
        node_pools=[NodePoolSpec(
            name=p.name, instance_types=p.instance_types, min_size=p.min_size, desired_size=p.desired_size,
            max_size=p.max_size, capacity_type=p.capacity_type, disk_size_gb=p.disk_size_gb, labels=p.labels,
        ) for p in config.node_pools],
    ))
    st = config.storage or StorageConfig()
    store = ModelStore("models", ModelStoreArgs(
        force_destroy=st.force_destroy, noncurrent_version_expiration_days=st.noncurrent_version_expiration_days,
        abort_incomplete_multipart_days=st.abort_incomplete_multipart_days,
        kms_deletion_window_days=st.kms_deletion_window_days, protect=config.deletion_protection,
    ))
    trainer_ns, trainer_sa = TRAINER_SERVICE_ACCOUNT
    WorkloadIdentity("trainer", WorkloadIdentityArgs(
        cluster_name=cluster.cluster_name, namespace=trainer_ns, service_account=trainer_sa,
        grants=[store.grant_read("datasets"), store.grant_write("checkpoints"), store.grant_write("models")],
    ))
    server_grants = [store.grant_read("models")]
    ca = config.cache or CacheConfig()
    if ca.enabled:
        cache = Cache("cache", CacheArgs(
            vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
            allowed_security_group_ids=[cluster.cluster_security_group_id], node_type=ca.node_type,
            num_nodes=ca.num_nodes, automatic_failover=ca.automatic_failover, multi_az=ca.multi_az,
            engine_version=ca.engine_version, snapshot_retention_days=ca.snapshot_retention_days,
            protect=config.deletion_protection,
        ))
        server_grants.append(cache.grant_read_auth_token())
        pulumi.export("cache_primary_endpoint", cache.primary_endpoint)
    server_ns, server_sa = SERVER_SERVICE_ACCOUNT
    WorkloadIdentity("server", WorkloadIdentityArgs(
        cluster_name=cluster.cluster_name, namespace=server_ns, service_account=server_sa, grants=server_grants,
    ))
    pulumi.export("vpc_id", network.vpc_id)
    pulumi.export("cluster_name", cluster.cluster_name)
    pulumi.export("cluster_endpoint", cluster.cluster_endpoint)
    for role, bucket in store.bucket_names.items():
        pulumi.export(f"{role}_bucket", bucket)
    return cluster.provider
