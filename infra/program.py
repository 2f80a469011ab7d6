"""The composition root: stack config in, components out, exports. No raw resources here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.aws.cache import REDIS_PORT as CACHE_REDIS_PORT
from infra.aws.cache import Cache
from infra.aws.cluster import Cluster
from infra.aws.deployer import Deployer
from infra.aws.iam import Grant
from infra.aws.identity import WorkloadIdentity
from infra.aws.logging import LogSearchDomain, LogStore, domain_arn, grant_search_write
from infra.aws.network import Network
from infra.aws.registry import ImageRegistry, repository_prefix
from infra.aws.storage import ModelStore
from infra.aws.streaming import SASL_IAM_PORT, Streaming
from infra.aws.tags import merge_tags, tag_transform
from infra.config.parse import PlatformConfig
from infra.k8s.gpu import GpuNodePools
from infra.k8s.inference import InferenceService
from infra.k8s.kueue import Kueue
from infra.k8s.local import SYSTEM_NAMESPACE, LocalServices
from infra.k8s.logging import FALLBACK_GROUP, CloudWatchSink, LogShipper
from infra.k8s.logging import NAMESPACE as LOGGING_NAMESPACE
from infra.k8s.logging import SERVICE_ACCOUNT as LOG_SHIPPER_ACCOUNT
from infra.k8s.mesh import GATEWAY_PRINCIPAL, INGRESS_NAMESPACE, Mesh, namespace_labels
from infra.k8s.mesh import SYSTEM_NAMESPACE as MESH_NAMESPACE
from infra.k8s.namespaces import INFERENCE_NAMESPACE, TRAINING_NAMESPACE, WORKLOAD_NAMESPACES, Namespaces
from infra.k8s.netpol import Rule, egress, namespace_peer, tcp, to_https, to_pod_identity, to_ports
from infra.k8s.observability import NAMESPACE as MONITORING_NAMESPACE
from infra.k8s.observability import PROMETHEUS_PRINCIPAL, Observability
from infra.k8s.recommend import NAMESPACE as RECOMMEND_NAMESPACE
from infra.k8s.recommend import SERVICE_ACCOUNT as RECOMMEND_ACCOUNT
from infra.k8s.recommend import StreamProcessor
from infra.k8s.streaming import NAMESPACE as LOCAL_KAFKA_NAMESPACE
from infra.k8s.streaming import PORT as LOCAL_KAFKA_PORT
from infra.k8s.streaming import TOPICS_NAMESPACE, TOPICS_SERVICE_ACCOUNT, KafkaTopics, LocalKafka
from infra.k8s.teams import Teams, local_queue_name
from infra.k8s.trainer import Trainer
from infra.k8s.training import TrainingJob
from infra.k8s.training_runtime import TrainingRuntime
from workloads.common.vocab import BUCKET_ROLES

TRAINER_SERVICE_ACCOUNT = (TRAINING_NAMESPACE, "trainer")
"""(namespace, service account) of training jobs."""
SERVER_SERVICE_ACCOUNT = (INFERENCE_NAMESPACE, "model-server")
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
    teams = _teams(config, provider, monitoring=after)
    # The teams' jobs read MinIO too: their namespaces get its credentials, once they exist.
    services = LocalServices("local", workload_namespaces=[TRAINER_SERVICE_ACCOUNT[0], SERVER_SERVICE_ACCOUNT[0],
                                                           *(team.namespace_name for team in config.teams)],
                             opts=pulumi.ResourceOptions(provider=provider, depends_on=[*after, teams] if teams
                                                         else after))
    trainer = _trainer(config, provider, monitoring=after)
    if config.logging.enabled:
        # Its ServiceMonitor needs the operator's CRDs (`after`) when the chart renders.
        LogShipper("logging", namespaces=_logged_namespaces(config), sink=None,
                   monitoring=bool(config.observability.enabled),
                   opts=pulumi.ResourceOptions(provider=provider, depends_on=after))
    kafka = None
    if config.streaming.enabled:
        local_kafka = LocalKafka("kafka", config.streaming, opts=on_cluster)
        kafka = KafkaWiring(bootstrap_servers=local_kafka.bootstrap_servers, auth="none",
                            egress_rules=[egress([namespace_peer(LOCAL_KAFKA_NAMESPACE)], tcp(LOCAL_KAFKA_PORT))])
    _workloads(config, provider, WorkloadWiring(
        buckets={role: role for role in BUCKET_ROLES}, env=services.s3_env,
        secret_env_from=[services.s3_secret_name], secret_env=services.s3_secret_env, redis_url=services.redis_url,
        kafka=kafka,
        s3_egress=services.s3_egress, redis_egress=services.redis_egress, teams=teams, trainer=trainer,
    ))


def _platform_services(config: PlatformConfig, provider: k8s.Provider) -> list[pulumi.Resource]:
    """Workload namespaces, the mesh and the monitoring stack (any target); returns what CRD users wait on."""
    mesh, obs = config.mesh, config.observability
    names = dict(WORKLOAD_NAMESPACES) if config.is_aws else {**WORKLOAD_NAMESPACES, SYSTEM_NAMESPACE: "restricted"}
    namespaces = Namespaces(
        "workloads", names, labels=namespace_labels() if mesh.enabled else {},
        service_accounts={ns: [sa] for ns, sa in (TRAINER_SERVICE_ACCOUNT, SERVER_SERVICE_ACCOUNT)},
        opts=pulumi.ResourceOptions(provider=provider),
    )
    after: list[pulumi.Resource] = [namespaces]
    if mesh.enabled:
        istio = Mesh("mesh", mesh, aws_load_balancer=config.is_aws,
                     scrape_principals=[PROMETHEUS_PRINCIPAL] if obs.enabled else [],
                     opts=pulumi.ResourceOptions(provider=provider, depends_on=[namespaces]))
        # Prometheus must start after istiod so its certificate sidecar is injected.
        after.append(istio.control_plane)
        pulumi.export("ingress_gateway", istio.gateway)
    if not obs.enabled:
        return []
    # EKS ships no gp3 class; other clusters use their default StorageClass.
    monitoring = Observability(
        "observability", obs, storage_class="gp3" if config.is_aws else None, create_storage_class=config.is_aws,
        mesh_scraping=bool(mesh.enabled), team_namespaces=[team.namespace_name for team in config.teams],
        opts=pulumi.ResourceOptions(provider=provider, depends_on=after),
    )
    pulumi.export("prometheus_url", monitoring.prometheus_url)
    return [monitoring.operator]


def _build_aws(config: PlatformConfig) -> None:
    assert config.network and config.cluster and config.region  # guaranteed by parse_config for target aws
    pulumi.runtime.register_resource_transform(tag_transform(config.stack, config.tags))
    cluster_name = f"modelplane-{config.stack}"
    network = Network("network", config.network, region=config.region, cluster_name=cluster_name)
    cluster = Cluster(
        "cluster", config.cluster, node_pools=config.node_pools, cluster_name=cluster_name,
        subnet_ids=network.private_subnet_ids,
        control_plane_subnet_ids=network.intra_subnet_ids or network.private_subnet_ids,
        deletion_protection=config.deletion_protection,
    )
    deployer = Deployer("deployer", cluster_name=cluster_name, role_arn=config.cluster.deployer_role_arn,
                        vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
                        cluster_security_group_id=cluster.cluster_security_group_id,
                        log_retention_days=config.cluster.log_retention_days)
    pulumi.export("deployer_project", deployer.project_name)
    pulumi.export("deployer_source_bucket", deployer.source_bucket)
    store = ModelStore("models", config.storage, protect=config.deletion_protection)
    registry = ImageRegistry("images", config.registry, stack=config.stack, protect=config.deletion_protection)
    pulumi.export("image_repositories", registry.repository_urls)
    trainer_ns, trainer_sa = TRAINER_SERVICE_ACCOUNT
    trainer_grants = [store.grant_read("datasets"), store.grant_write("checkpoints"), store.grant_write("models")]
    WorkloadIdentity("trainer", cluster_name=cluster.cluster_name, namespace=trainer_ns, service_account=trainer_sa,
                     grants=trainer_grants)
    server_grants = [store.grant_read("models")]
    cache = None
    if config.cache.enabled:
        cache = Cache(
            "cache", config.cache, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
            allowed_security_group_ids=[cluster.cluster_security_group_id], protect=config.deletion_protection,
        )
        pulumi.export("cache_primary_endpoint", cache.primary_endpoint)
    streaming = None
    kafka_identities: dict[str, pulumi.Resource] = {}
    if config.streaming.enabled:
        streaming = Streaming(
            "streaming", config.streaming, vpc_id=network.vpc_id, subnet_ids=network.private_subnet_ids,
            allowed_security_group_ids=[cluster.cluster_security_group_id], protect=config.deletion_protection,
        )
        pulumi.export("kafka_bootstrap_brokers", streaming.bootstrap_brokers)
        if config.streaming.topics:
            kafka_identities["kafka-topics"] = WorkloadIdentity(
                "kafka-topics", cluster_name=cluster.cluster_name, namespace=TOPICS_NAMESPACE,
                service_account=TOPICS_SERVICE_ACCOUNT,
                grants=[streaming.grant_manage_topics([t.name for t in config.streaming.topics])])
    if streaming and config.recommend.enabled:
        recommend = config.recommend
        processor_grants = [streaming.grant_consume([recommend.topic], [recommend.group_id])]
        if recommend.dead_letter_topic:
            processor_grants.append(streaming.grant_produce([recommend.dead_letter_topic]))
        kafka_identities["recommend-processor"] = WorkloadIdentity(
            "recommend-processor", cluster_name=cluster.cluster_name, namespace=RECOMMEND_NAMESPACE,
            service_account=RECOMMEND_ACCOUNT, grants=processor_grants)
    server_ns, server_sa = SERVER_SERVICE_ACCOUNT
    WorkloadIdentity("server", cluster_name=cluster.cluster_name, namespace=server_ns, service_account=server_sa,
                     grants=server_grants)
    pulumi.export("vpc_id", network.vpc_id)
    pulumi.export("cluster_name", cluster.cluster_name)
    pulumi.export("cluster_endpoint", cluster.cluster_endpoint)
    monitoring = _platform_services(config, cluster.provider)
    _gpu_platform(config, cluster_name, cluster, monitoring)
    teams = _teams(config, cluster.provider, monitoring=monitoring, cluster_name=cluster.cluster_name,
                   trainer_grants=trainer_grants)
    trainer = _trainer(config, cluster.provider, monitoring=monitoring)
    if config.logging.enabled:
        _aws_logging(config, network, cluster, monitoring)
    for role, bucket in store.bucket_names.items():
        pulumi.export(f"{role}_bucket", bucket)
    _workloads(config, cluster.provider, WorkloadWiring(
        buckets={str(role): name for role, name in store.bucket_names.items()}, redis_url=cache.redis_url if cache else None,
        kafka=KafkaWiring(bootstrap_servers=streaming.bootstrap_brokers, auth="iam", region=config.region,
                          identities=kafka_identities,
                          egress_rules=[to_ports(SASL_IAM_PORT), to_pod_identity()])
        if streaming else None,
        s3_egress=[to_https(), to_pod_identity()], redis_egress=[to_ports(CACHE_REDIS_PORT)], teams=teams,
        trainer=trainer,
    ))


def _logged_namespaces(config: PlatformConfig) -> list[str]:
    """The namespaces whose containers Fluent Bit ships: the workloads' and the platform services' own."""
    names = [*WORKLOAD_NAMESPACES, "kube-system"] + ([] if config.is_aws else [SYSTEM_NAMESPACE])
    names += [MESH_NAMESPACE, INGRESS_NAMESPACE] if config.mesh.enabled else []
    names += [team.namespace_name for team in config.teams]
    return names + ([MONITORING_NAMESPACE] if config.observability.enabled else [])


def _aws_logging(config: PlatformConfig, network: Network, cluster: Cluster,
                 monitoring: Sequence[pulumi.Resource]) -> None:
    """CloudWatch log groups per namespace, the optional OpenSearch domain, and Fluent Bit with its identity;
    Fluent Bit's ServiceMonitor waits for `monitoring` (the operator's CRDs)."""
    assert config.region  # guaranteed by parse_config for target aws
    logging, search = config.logging, config.logging.open_search
    namespaces = _logged_namespaces(config)
    prefix = f"/modelplane/{config.stack}"
    store = LogStore("logs", logging, prefix=prefix, namespaces=[*namespaces, FALLBACK_GROUP], region=config.region,
                     protect=config.deletion_protection)
    grants = [store.grant_write()]
    domain_name = f"modelplane-{config.stack}-logs"
    if search.enabled:
        grants.append(grant_search_write(domain_arn(domain_name, config.region)))
    identity = WorkloadIdentity("log-shipper", cluster_name=cluster.cluster_name, namespace=LOGGING_NAMESPACE,
                                service_account=LOG_SHIPPER_ACCOUNT, grants=grants)
    host = None
    if search.enabled:
        domain = LogSearchDomain(
            "log-search", search, domain_name=domain_name, region=config.region, vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids, allowed_security_group_ids=[cluster.cluster_security_group_id],
            kms_key_arn=store.kms_key_arn, master_user_arn=identity.role_arn, protect=config.deletion_protection)
        host = domain.endpoint
        pulumi.export("log_search_endpoint", domain.endpoint)
    LogShipper("logging", namespaces=namespaces, sink=CloudWatchSink(prefix=prefix, region=config.region,
                                                                    retention_days=logging.retention_days,
                                                                    opensearch_host=host,
                                                                    lifecycle_image=_image(config, "serve")),
               monitoring=bool(config.observability.enabled),
               opts=pulumi.ResourceOptions(provider=cluster.provider, depends_on=[identity, *monitoring]))


@dataclass(frozen=True, kw_only=True)
class KafkaWiring:
    """How workloads reach the stack's Kafka."""

    bootstrap_servers: pulumi.Input[str]
    """HOST:PORT[,HOST:PORT...] of the brokers' client listener."""
    auth: Literal["none", "iam"]
    """Client authentication: none (the in-cluster broker) or SASL/IAM over TLS (MSK)."""
    region: str | None = None
    """AWS region the IAM auth signs for; set with auth iam."""
    identities: Mapping[str, pulumi.Resource] = field(default_factory=dict)
    """The WorkloadIdentity of each Kafka workload by name (aws): its pods wait for it, since a pod admitted before
    its Pod Identity association never gets credentials."""
    egress_rules: Sequence[Rule] = ()
    """NetworkPolicy egress of the Kafka clients (topics Job, stream processor): the brokers (and the Pod Identity
    agent on aws)."""


@dataclass(frozen=True, kw_only=True)
class WorkloadWiring:
    """Where the workloads find their data, per target."""

    buckets: Mapping[str, pulumi.Input[str]]
    """Bucket name by role (datasets, checkpoints, models)."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra plain env (the local stack's MinIO endpoint)."""
    secret_env_from: Sequence[pulumi.Input[str]] = ()
    """Secrets exposed as env (the local stack's MinIO keys)."""
    secret_env: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    """The same keys as env var → (Secret, key), for pods given env entries rather than envFrom (training jobs)."""
    redis_url: pulumi.Input[str] | None = None
    """Response-cache URL with its password, when the stack has a cache."""
    kafka: KafkaWiring | None = None
    """The stack's Kafka, when streaming is enabled."""
    s3_egress: Sequence[Rule] = ()
    """NetworkPolicy egress to the object store (S3 and the Pod Identity agent, or MinIO)."""
    redis_egress: Sequence[Rule] = ()
    """NetworkPolicy egress to the stack's Redis."""
    teams: pulumi.Resource | None = None
    """The Teams component, when the stack has teams: a queued job waits for its LocalQueue and Kueue's webhook (a
    job created before the webhook would start unsuspended, outside its quota)."""
    trainer: pulumi.Resource | None = None
    """The Trainer v2 + JobSet install; the runtime and the jobs wait for its CRDs and webhooks."""


def _s3(buckets: Mapping[str, pulumi.Input[str]], role: str, path: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("s3://", buckets[role], "/", path)


def _workloads(config: PlatformConfig, provider: k8s.Provider, wiring: WorkloadWiring) -> None:
    """The stack's TrainingJobs, InferenceServices and recommendation processor, pointed at its buckets, cache and
    Kafka."""
    on_cluster = pulumi.ResourceOptions(provider=provider)
    recommend_image = _image(config, "recommend")
    trainer_ns, trainer_sa = TRAINER_SERVICE_ACCOUNT
    team_namespaces = {team.name: team.namespace_name for team in config.teams}
    # The runtime and the jobs need Trainer's and JobSet's CRDs and webhooks. The runtime comes with the install (a
    # team's own TrainJobs use it too); the config requires the install when the stack has jobs.
    installed = [wiring.trainer] if wiring.trainer else []
    runtime = TrainingRuntime("training-runtime", config.training, image=_image(config, "trainer-torch"),
                              opts=pulumi.ResourceOptions(provider=provider, depends_on=installed)
                              ) if wiring.trainer else None
    for job in config.training.jobs:
        trainer = "recommend" if job.task == "recommender" else "trainer-torch" if job.framework == "pytorch" else "trainer-tf"
        image = job.image or _image(config, trainer)
        # A team's job runs in its namespace (its own trainer account) and queues on its LocalQueue.
        TrainingJob(
            job.name, job, config.training, image=image, runtime=runtime,
            namespace=team_namespaces[job.team] if job.team else trainer_ns,
            service_account=trainer_sa, queue=local_queue_name(job.team) if job.team else None,
            data_uri=_s3(wiring.buckets, "datasets", job.dataset),
            checkpoint_uri=_s3(wiring.buckets, "checkpoints", f"{job.name}/"),
            export_uri=_s3(wiring.buckets, "models", f"{job.name}/"),
            env=wiring.env, secret_env=wiring.secret_env, egress_rules=wiring.s3_egress,
            scraped=bool(config.observability.enabled),
            opts=pulumi.ResourceOptions(provider=provider, depends_on=[
                *installed, *([wiring.teams] if job.team and wiring.teams else [])]),
        )
    server_ns, server_sa = SERVER_SERVICE_ACCOUNT
    principals = [GATEWAY_PRINCIPAL]
    if config.observability.enabled:
        principals.append(PROMETHEUS_PRINCIPAL)
    serve = _image(config, "serve")
    for svc in config.inference.services:
        runtimes = {"tf-serving": versions.TF_SERVING_IMAGE, "recommend": recommend_image,
                    "vllm": versions.VLLM_IMAGE if svc.gpus else versions.VLLM_CPU_IMAGE}
        image = svc.image or runtimes.get(svc.runtime, serve)
        InferenceService(
            svc.name, svc, image=image, namespace=server_ns, service_account=server_sa, gateway_image=serve,
            model_uri=_s3(wiring.buckets, "models", svc.model_prefix()), allowed_principals=principals,
            env=wiring.env, secret_env_from=wiring.secret_env_from, redis_url=wiring.redis_url,
            # The HPA's queue-depth metric comes from prometheus-adapter, part of the observability stack.
            mesh=bool(config.mesh.enabled), queue_depth_autoscaling=bool(config.observability.enabled),
            egress_rules=wiring.s3_egress, redis_egress=wiring.redis_egress, opts=on_cluster,
        )
    if wiring.kafka and config.streaming.topics:
        KafkaTopics("kafka-topics", config.streaming.topics, bootstrap_servers=wiring.kafka.bootstrap_servers,
                    auth=wiring.kafka.auth, region=wiring.kafka.region, namespace=TOPICS_NAMESPACE,
                    service_account=TOPICS_SERVICE_ACCOUNT, image=recommend_image,
                    egress_rules=wiring.kafka.egress_rules, opts=_after_identity(provider, wiring.kafka, "kafka-topics"))
    if config.recommend.enabled:
        kafka, recommend = wiring.kafka, config.recommend
        assert kafka and wiring.redis_url is not None  # parse_config requires streaming and a Redis
        StreamProcessor(
            "recommend-processor", recommend, image=recommend.image or recommend_image,
            bootstrap_servers=kafka.bootstrap_servers, kafka_egress=kafka.egress_rules,
            kafka_settings={"kafka_auth": kafka.auth, **({"kafka_region": kafka.region} if kafka.region else {})},
            redis_url=wiring.redis_url, redis_egress=wiring.redis_egress, mesh=bool(config.mesh.enabled),
            # The lag HPA's metric and the scrape target need the observability stack (adapter, operator CRDs).
            monitoring=bool(config.observability.enabled),
            opts=_after_identity(provider, kafka, "recommend-processor"),
        )


def _image(config: PlatformConfig, name: str) -> str:
    """Our image `name`: from the stack's ECR repository, by its recorded digest when images/digests.json has one
    (aws); the local build's name elsewhere."""
    if not config.is_aws:
        return versions.modelplane_image(name)
    assert config.region  # guaranteed by parse_config for target aws
    prefix = repository_prefix(config.registry, config.stack, config.region)
    return versions.modelplane_image(name, prefix, versions.read_image_digests().get(name))


def _after_identity(provider: k8s.Provider, kafka: KafkaWiring, name: str) -> pulumi.ResourceOptions:
    """Options for the Kafka workload `name`: after its WorkloadIdentity, when it has one (aws)."""
    identity = kafka.identities.get(name)
    return pulumi.ResourceOptions(provider=provider, depends_on=[identity] if identity else None)


def _gpu_platform(config: PlatformConfig, cluster_name: str, cluster: Cluster,
                  monitoring: list[pulumi.Resource]) -> None:
    """Karpenter with the GPU and CPU NodePools and the NVIDIA add-ons."""
    assert config.region  # guaranteed by parse_config for target aws
    gpu = GpuNodePools(
        "gpu", config.gpu_pools, config.karpenter, config.addons, cluster_name=cluster_name,
        cluster_arn=cluster.cluster_arn, cluster_endpoint=cluster.cluster_endpoint,
        cluster_security_group_id=cluster.cluster_security_group_id, region=config.region,
        tags=merge_tags(config.tags, None, config.stack),
        opts=pulumi.ResourceOptions(provider=cluster.provider, depends_on=monitoring),  # DCGM's ServiceMonitor CRD
    )
    pulumi.export("karpenter_interruption_queue", gpu.interruption_queue_name)
    pulumi.export("gpu_pools", gpu.gpu_pool_names)


def _trainer(config: PlatformConfig, provider: k8s.Provider, *,
             monitoring: Sequence[pulumi.Resource]) -> Trainer | None:
    """JobSet and Trainer v2, when enabled and the stack trains (jobs or teams): on the system pool on aws, unpinned
    elsewhere (kind, minikube and k3d nodes carry no pool label); JobSet's ServiceMonitor waits for `monitoring`."""
    if not config.addons.trainer or not (config.training.jobs or config.teams):
        return None
    return Trainer("trainer", system_pool=config.is_aws, monitoring=bool(config.observability.enabled),
                   opts=pulumi.ResourceOptions(provider=provider, depends_on=list(monitoring)))


def _teams(config: PlatformConfig, provider: k8s.Provider, *, monitoring: Sequence[pulumi.Resource],
           cluster_name: pulumi.Input[str] | None = None, trainer_grants: Sequence[Grant] = ()) -> Teams | None:
    """Kueue and the teams' namespaces and queues, when the stack has teams (the trainer's grants per team on
    aws); Kueue's ServiceMonitor waits for `monitoring` (the operator's CRDs)."""
    if not config.teams:
        return None
    on_cluster = pulumi.ResourceOptions(provider=provider)
    kueue = Kueue("kueue", system_pool=config.is_aws, monitoring=bool(config.observability.enabled),
                  opts=pulumi.ResourceOptions(provider=provider, depends_on=list(monitoring)))
    cpu_pool = config.karpenter.cpu_pool if config.is_aws else None
    return Teams("teams", config.teams, gpu_pools=config.gpu_pools, cpu_pool=cpu_pool, local=not config.is_aws,
                 service_account=TRAINER_SERVICE_ACCOUNT[1], kueue=kueue.release, cluster_name=cluster_name,
                 trainer_grants=trainer_grants, opts=on_cluster)
