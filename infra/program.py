"""The composition root: stack config in, components out, exports. No raw resources here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.aws.cache import Cache, CacheArgs
from infra.aws.cluster import Cluster, ClusterArgs, NodePoolSpec
from infra.aws.identity import WorkloadIdentity, WorkloadIdentityArgs
from infra.aws.network import Network, NetworkArgs
from infra.aws.storage import ModelStore, ModelStoreArgs
from infra.aws.tags import merge_tags, tag_transform
from infra.config.parse import PlatformConfig
from infra.k8s.gpu import CpuPoolSpec, GpuNodePools, GpuNodePoolsArgs, GpuPoolSpec
from infra.k8s.inference import InferenceService, InferenceServiceArgs
from infra.k8s.local import LocalServices, LocalServicesArgs
from infra.k8s.mesh import Mesh, MeshArgs
from infra.k8s.namespaces import DEFAULT_NAMESPACES, Namespaces, NamespacesArgs
from infra.k8s.observability import Observability, ObservabilityArgs
from infra.k8s.podspec import Resources
from infra.k8s.training import TrainingJob, TrainingJobArgs
from infra.k8s.training_operator import PORTABLE_KUSTOMIZATION_DIR, TrainingOperator, TrainingOperatorArgs

TRAINER_SERVICE_ACCOUNT = ("training", "trainer")
"""(namespace, service account) of training jobs."""
SERVER_SERVICE_ACCOUNT = ("inference", "model-server")
"""(namespace, service account) of inference services."""


def build(config: PlatformConfig) -> None:
    """Declare the whole platform for one stack."""
    if config.is_aws:
        _build_aws(config)
        return
    provider = k8s.Provider("local", context=config.kube_context, enable_server_side_apply=True)
    pulumi.export("kube_context", config.kube_context or "(current)")
    on_cluster = pulumi.ResourceOptions(provider=provider)
    after = _platform_services(config, provider)
    services = LocalServices("local", LocalServicesArgs(), opts=pulumi.ResourceOptions(provider=provider, depends_on=after))
    if config.addons.training_operator:
        # No modelplane.io/pool=system nodes here: the portable overlay leaves scheduling to the cluster.
        TrainingOperator("training-operator", TrainingOperatorArgs(directory=PORTABLE_KUSTOMIZATION_DIR),
                         opts=on_cluster)
    _workloads(config, provider, WorkloadWiring(
        buckets={role: role for role in ("datasets", "checkpoints", "models")}, env=services.s3_env,
        secret_env_from=[services.s3_secret_name], redis_url=services.redis_url,
    ))


def _platform_services(config: PlatformConfig, provider: k8s.Provider) -> list[pulumi.Resource]:
    """Workload namespaces, the mesh and the monitoring stack (any target); returns what CRD users wait on."""
    mesh, obs = config.mesh, config.observability
    observability_args = ObservabilityArgs(
        retention_days=obs.retention_days, retention_size_gb=obs.retention_size_gb, storage_gb=obs.storage_gb,
        # EKS ships no gp3 class; other clusters use their default StorageClass.
        storage_class="gp3" if config.is_aws else None, create_storage_class=config.is_aws,
        alertmanager=obs.alertmanager, grafana=obs.grafana, mesh_scraping=mesh.enabled,
    )
    mesh_args = MeshArgs(
        version=mesh.version, gateway_scheme=mesh.gateway_scheme, aws_load_balancer=config.is_aws,
        replicas=mesh.replicas, scrape_principals=[observability_args.prometheus_principal] if obs.enabled else [],
    )
    names = dict(DEFAULT_NAMESPACES) if config.is_aws else {**DEFAULT_NAMESPACES, "modelplane-system": "restricted"}
    namespaces = Namespaces("workloads", NamespacesArgs(
        namespaces=names, labels=mesh_args.namespace_labels() if mesh.enabled else {},
        service_accounts={ns: [sa] for ns, sa in (TRAINER_SERVICE_ACCOUNT, SERVER_SERVICE_ACCOUNT)},
    ), opts=pulumi.ResourceOptions(provider=provider))
    after: list[pulumi.Resource] = [namespaces]
    if mesh.enabled:
        istio = Mesh("mesh", mesh_args, opts=pulumi.ResourceOptions(provider=provider, depends_on=[namespaces]))
        # Prometheus must start after istiod so its certificate sidecar is injected.
        after.append(istio.control_plane)
        pulumi.export("ingress_gateway", istio.gateway)
    if not obs.enabled:
        return []
    monitoring = Observability("observability", observability_args,
                               opts=pulumi.ResourceOptions(provider=provider, depends_on=after))
    pulumi.export("prometheus_url", monitoring.prometheus_url)
    return [monitoring.operator]


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
    st = config.storage
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
    ca = config.cache
    cache = None
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
    _gpu_platform(config, cluster_name, cluster, _platform_services(config, cluster.provider))
    for role, bucket in store.bucket_names.items():
        pulumi.export(f"{role}_bucket", bucket)
    _workloads(config, cluster.provider, WorkloadWiring(
        buckets={str(role): name for role, name in store.bucket_names.items()}, redis_url=cache.redis_url if cache else None,
    ))
    return cluster.provider


@dataclass(frozen=True, kw_only=True)
class WorkloadWiring:
    """Where the workloads find their data, per target."""

    buckets: Mapping[str, pulumi.Input[str]]
    """Bucket name by role (datasets, checkpoints, models)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra plain env (the local stack's MinIO endpoint)."""
    secret_env_from: Sequence[pulumi.Input[str]] = ()
    """Secrets exposed as env (the local stack's MinIO keys)."""
    redis_url: pulumi.Input[str] | None = None
    """Response-cache URL with its password, when the stack has a cache."""


def _s3(buckets: Mapping[str, pulumi.Input[str]], role: str, path: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("s3://", buckets[role], "/", path)


def _workloads(config: PlatformConfig, provider: k8s.Provider, wiring: WorkloadWiring) -> None:
    """The stack's TrainingJobs and InferenceServices, pointed at its buckets and cache."""
    on_cluster = pulumi.ResourceOptions(provider=provider)
    registry, tag = versions.MODELPLANE_IMAGE_REGISTRY, versions.MODELPLANE_IMAGE_TAG
    trainer_ns, trainer_sa = TRAINER_SERVICE_ACCOUNT
    for job in config.training.jobs:
        image = job.image or f"{registry}/{'trainer-torch' if job.framework == 'pytorch' else 'trainer-tf'}:{tag}"
        data_flag: list[pulumi.Input[str]] = ["--data", _s3(wiring.buckets, "datasets", job.dataset)]
        export_flag: list[pulumi.Input[str]] = ["--export", _s3(wiring.buckets, "models", f"{job.name}/")]
        TrainingJob(job.name, TrainingJobArgs(
            framework=job.framework, namespace=trainer_ns, image=image, service_account=trainer_sa,
            replicas=job.replicas, resources=Resources(cpu=job.cpu, memory=job.memory, gpus=job.gpus_per_replica),
            gpu_pool=job.gpu_pool, args=[*data_flag, *export_flag, *job.args],
            env=dict(wiring.env), secret_env_from=wiring.secret_env_from,
            checkpoint_uri=_s3(wiring.buckets, "checkpoints", f"{job.name}/"), shm_size=job.shm_size,
            backoff_limit=job.backoff_limit, ttl_seconds_after_finished=job.ttl_seconds_after_finished,
            # The Observability stack's namespace-wide PodMonitor already scrapes every leader.
            pod_monitor=False,
        ), opts=on_cluster)
    server_ns, server_sa = SERVER_SERVICE_ACCOUNT
    principals = [MeshArgs().gateway_principal]
    if config.observability.enabled:
        principals.append(ObservabilityArgs().prometheus_principal)
    for svc in config.inference.services:
        tf = svc.runtime == "tf-serving"
        image = svc.image or (versions.TF_SERVING_IMAGE if tf else f"{registry}/serve:{tag}")
        InferenceService(svc.name, InferenceServiceArgs(
            runtime=svc.runtime, namespace=server_ns, image=image, model_name=svc.name,
            model_uri=_s3(wiring.buckets, "models", f"{svc.model}/"), service_account=server_sa,
            resources=Resources(cpu=svc.cpu, memory=svc.memory, gpus=svc.gpus), gpu_pool=svc.gpu_pool,
            min_replicas=svc.min_replicas, max_replicas=svc.max_replicas, target_queue_depth=svc.target_queue_depth,
            canary_image=svc.canary_image, canary_weight=svc.canary_weight,
            server_env={**wiring.env, "MODELPLANE_SERVE_MAX_BATCH_SIZE": str(svc.max_batch_size),
                        "MODELPLANE_SERVE_MAX_QUEUE": str(svc.max_queue),
                        "MODELPLANE_SERVE_MAX_TOKENS_CAP": str(svc.max_tokens_cap)},
            redis_url=wiring.redis_url if svc.cache and not tf else None, api_key=svc.api_key and not tf,
            allowed_principals=principals, secret_env_from=wiring.secret_env_from, mesh=config.mesh.enabled,
            # The Observability stack's namespace-wide ServiceMonitor already scrapes every server.
            monitoring=False, queue_depth_autoscaling=config.observability.enabled,
        ), opts=on_cluster)


def _gpu_platform(config: PlatformConfig, cluster_name: str, cluster: Cluster,
                  monitoring: list[pulumi.Resource]) -> None:
    """Karpenter with the GPU and CPU NodePools, the NVIDIA add-ons and the training operator."""
    assert config.region  # guaranteed by parse_config for target aws
    karpenter, addons = config.karpenter, config.addons
    on_cluster = pulumi.ResourceOptions(provider=cluster.provider)
    gpu = GpuNodePools("gpu", GpuNodePoolsArgs(
        cluster_name=cluster_name, cluster_arn=cluster.cluster_arn, cluster_endpoint=cluster.cluster_endpoint,
        cluster_security_group_id=cluster.cluster_security_group_id, region=config.region,
        gpu_pools=[GpuPoolSpec(**p.model_dump(exclude={"gpus_per_node"}), min_gpus_per_node=p.gpus_per_node.min,
                               max_gpus_per_node=p.gpus_per_node.max) for p in config.gpu_pools],
        cpu_pool=CpuPoolSpec(**karpenter.cpu_pool.model_dump(exclude={"enabled"})) if karpenter.cpu_pool.enabled else None,
        controller_replicas=karpenter.replicas, controller_cpu=karpenter.cpu, controller_memory=karpenter.memory,
        device_plugin=addons.nvidia_device_plugin, dcgm_exporter=addons.dcgm_exporter,
        dcgm_scrape_interval=addons.dcgm_scrape_interval, tags=merge_tags(config.tags, None, config.stack),
    ), opts=pulumi.ResourceOptions(provider=cluster.provider, depends_on=monitoring))  # DCGM's ServiceMonitor CRD
    if addons.training_operator:
        TrainingOperator("training-operator", opts=on_cluster)
    pulumi.export("karpenter_interruption_queue", gpu.interruption_queue_name)
    pulumi.export("gpu_pools", gpu.gpu_pool_names)
