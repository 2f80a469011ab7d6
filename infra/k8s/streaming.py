"""Kafka in Kubernetes: `KafkaTopics` (the topics Job, any target) and `LocalKafka` (the kubeconfig stacks' broker).

`KafkaTopics` runs `python -m workloads.recommend.topics` (see that module) once per change of the declared
topics: the Job's name carries a hash of its spec, so a new topic list is a new Job, and Pulumi's Job await makes
`pulumi up` fail when the topics cannot be brought to their spec.

`LocalKafka` stands in for MSK on kubeconfig stacks: Strimzi's cluster operator from its pinned chart
(versions.STRIMZI_*), one `Kafka` in KRaft mode and one `KafkaNodePool` of a single controller+broker node with
a plaintext internal listener on 9092 (the shape of Strimzi's examples/kafka/kafka-single-node.yaml at 1.2.0).
The operator runs with Strimzi's Restricted pod security provider (documentation/modules/configuring/
con-config-security-providers.adoc), so the namespace enforces the `restricted` Pod Security Standard. Strimzi
generates the brokers' NetworkPolicy itself (STRIMZI_NETWORK_POLICY_GENERATION defaults to true): the listener's
`networkPolicyPeers` make 9092 admit only the workload namespaces. On top of the namespace's default-deny
(infra/k8s/netpol.py) the namespace's pods reach each other (the operator its brokers, the brokers their
controllers) and the operator the Kubernetes API; the topics Job reaches the brokers' port. The CRs are checked
against the CRDs of the pinned release, vendored in tests/conformance/strimzi/<version>/.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.config.streaming import StreamingConfig, TopicConfig
from infra.k8s.namespaces import INFERENCE_NAMESPACE, WORKLOAD_NAMESPACES, Namespaces
from infra.k8s.netpol import (
    Rule,
    allow_spec,
    egress,
    ingress,
    namespace_peer,
    network_policy,
    same_namespace,
    select,
    to_kube_api,
)
from infra.k8s.podspec import (
    container_resources,
    container_security_context,
    env_list,
    manifest_block,
    pod_security_context,
)
from workloads.common.vocab import MANAGED_BY_LABELS, NAME_LABEL, NO_SIDECAR_ANNOTATION
from workloads.recommend.kafka import KafkaAuth
from workloads.recommend.topic_settings import TopicsSettings, encode_topics

TOPICS_NAMESPACE: Final = INFERENCE_NAMESPACE
"""Namespace of the topics Job (beside the recommendation workloads that use the topics)."""
TOPICS_SERVICE_ACCOUNT: Final = "kafka-topics"
"""The topics Job's ServiceAccount; on aws its IAM role holds Streaming.grant_manage_topics."""
TOPICS_MODULE: Final = "workloads.recommend.topics"
"""The topics Job's entry point (`python -m`)."""
TOPICS_CONNECT_TIMEOUT_S: Final = 600
"""Seconds the Job waits for the brokers: a fresh Strimzi broker pulls images and formats its log first."""
TOPICS_BACKOFF_LIMIT: Final = 3
"""Pod retries of the topics Job before it (and `pulumi up`) fails."""
TOPICS_TTL_S: Final = 86400
"""A finished topics Job is deleted a day later; a later `pulumi up --refresh` re-runs it, which is harmless
(the Job is idempotent)."""
TOPICS_CPU: Final = "250m"
"""The topics Job's CPU request and limit."""
TOPICS_MEMORY: Final = "256Mi"
"""The topics Job's memory request and limit."""

NAMESPACE: Final = "kafka"
"""Namespace of the Strimzi operator and the local broker."""
RELEASE: Final = "strimzi-kafka-operator"
"""Helm release name of the Strimzi cluster operator."""
CLUSTER: Final = "modelplane"
"""Name of the local `Kafka` cluster (Strimzi names its Services after it)."""
NODE_POOL: Final = "dual-role"
"""Name of the single controller+broker node pool."""
PORT: Final = 9092
"""The local broker's plaintext internal listener."""
BROKER_CPU: Final = "500m"
"""CPU request of the broker (laptop-sized)."""
BROKER_MEMORY: Final = "1Gi"
"""Memory request and limit of the broker (laptop-sized; Strimzi sizes the JVM heap from the limit)."""
SINGLE_NODE_CONFIG: Final = {
    "offsets.topic.replication.factor": 1, "transaction.state.log.replication.factor": 1,
    "transaction.state.log.min.isr": 1, "default.replication.factor": 1, "min.insync.replicas": 1,
    # Topics come from the topics Job only, as on MSK.
    "auto.create.topics.enable": False,
}
"""Broker config of one node (examples/kafka/kafka-single-node.yaml at Strimzi 1.2.0), without auto-created topics."""
OPERATOR_POD_LABELS: Final = {"strimzi.io/kind": "cluster-operator"}
"""Labels of the Strimzi cluster operator's pods (install/cluster-operator/060-Deployment-strimzi-cluster-operator.yaml),
which Strimzi's generated policies also select it by."""


def bootstrap_servers(namespace: str = NAMESPACE, cluster: str = CLUSTER) -> str:
    """The local broker's bootstrap address: Strimzi's `<cluster>-kafka-bootstrap` Service."""
    return f"{cluster}-kafka-bootstrap.{namespace}.svc:{PORT}"


def _spec_hash(*parts: str) -> str:
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:10]


class KafkaTopics(pulumi.ComponentResource):
    """The declared topics, created or aligned by a Job of the admin client, with its own ServiceAccount."""

    job_name: str
    """Name of the Job (kafka-topics-<hash of the topics, image and auth>)."""

    def __init__(self, name: str, topics: Sequence[TopicConfig], *, bootstrap_servers: pulumi.Input[str],
                 auth: KafkaAuth, region: str | None, namespace: str, service_account: str, image: str,
                 egress_rules: Sequence[Rule] = (), opts: pulumi.ResourceOptions | None = None) -> None:
        """`topics` are the stack's `streaming.topics`; `bootstrap_servers`, `auth` and `region` reach the brokers
        (`region` is required with auth iam); the Job runs `image` in `namespace` as `service_account`;
        `egress_rules` are its NetworkPolicy egress to the brokers (and the Pod Identity agent on aws)."""
        super().__init__("modelplane:streaming:KafkaTopics", name, None, opts)
        if auth == "iam" and not region:
            raise pulumi.InputPropertiesError("invalid KafkaTopics args", [pulumi.InputPropertyErrorDetails(
                property_path="region", reason="is required when auth is 'iam' (the MSK cluster's region)")])
        spec = encode_topics([topic.model_dump(by_alias=True) for topic in topics])
        self.job_name = f"kafka-topics-{_spec_hash(spec, image, auth, region or '')}"
        labels = {**MANAGED_BY_LABELS, NAME_LABEL: "kafka-topics"}
        env: dict[str, pulumi.Input[str]] = {
            TopicsSettings.env_name("bootstrap_servers"): bootstrap_servers,
            TopicsSettings.env_name("kafka_auth"): auth,
            TopicsSettings.env_name("topics"): spec,
            TopicsSettings.env_name("connect_timeout_s"): str(TOPICS_CONNECT_TIMEOUT_S),
            "HOME": "/tmp",
        }
        if region:
            env[TopicsSettings.env_name("kafka_region")] = region
        child = pulumi.ResourceOptions(parent=self)
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa", metadata={"name": service_account, "namespace": namespace, "labels": labels},
            # It never calls the Kubernetes API; Pod Identity injects AWS credentials itself.
            automount_service_account_token=False, opts=child)
        container = {
            "name": "topics", "image": image, "command": ["python", "-m", TOPICS_MODULE], "env": env_list(env),
            "resources": container_resources(TOPICS_CPU, TOPICS_MEMORY, 0),
            "securityContext": container_security_context(),
            "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
        }
        k8s.batch.v1.Job(
            f"{name}-job", metadata={"name": self.job_name, "namespace": namespace, "labels": labels},
            spec=manifest_block({
                "backoffLimit": TOPICS_BACKOFF_LIMIT, "ttlSecondsAfterFinished": TOPICS_TTL_S,
                "template": {
                    # Without a sidecar: an Envoy that never exits would keep the Job from completing.
                    "metadata": {"labels": labels, "annotations": dict(NO_SIDECAR_ANNOTATION)},
                    "spec": {
                        "serviceAccountName": service_account, "automountServiceAccountToken": False,
                        "restartPolicy": "Never", "securityContext": pod_security_context(),
                        "containers": [container], "volumes": [{"name": "tmp", "emptyDir": {}}],
                    },
                },
            }),
            # The spec is immutable: any change (the brokers' address too) replaces the Job, deleting the old
            # one first when the name stays the same.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[account], replace_on_changes=["spec"],
                                        delete_before_replace=True,
                                        custom_timeouts=pulumi.CustomTimeouts(create="30m", update="30m")),
        )
        network_policy(f"{name}-netpol", policy_name=TOPICS_SERVICE_ACCOUNT, namespace=namespace, labels=labels,
                       opts=child, spec=allow_spec(select(labels),
                                                   egress_rules=list(egress_rules)))
        self.register_outputs({"job_name": self.job_name})


class LocalKafka(pulumi.ComponentResource):
    """Strimzi's operator and a single-node KRaft Kafka in NAMESPACE, reachable from the workload namespaces."""

    bootstrap_servers: str
    """`<cluster>-kafka-bootstrap.<namespace>.svc:9092`, the plaintext listener."""

    def __init__(self, name: str, config: StreamingConfig, *, opts: pulumi.ResourceOptions | None = None) -> None:
        """`config` is the stack's `streaming` section (`localStorageGb` sizes the broker's volume)."""
        super().__init__("modelplane:streaming:LocalKafka", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = Namespaces(f"{name}-namespace", {NAMESPACE: "restricted"}, opts=child).names[NAMESPACE]
        # The chart's crds/ folder installs the Kafka and KafkaNodePool CRDs (Helm never upgrades them: a Strimzi
        # bump applies its CRDs first, per Strimzi's upgrade docs).
        operator = k8s.helm.v3.Release(
            f"{name}-operator", name=RELEASE, chart=versions.STRIMZI_CHART, version=versions.STRIMZI_VERSION,
            namespace=namespace, values=strimzi_values(), opts=child)
        with_crds = pulumi.ResourceOptions(parent=self, depends_on=[operator])
        k8s.apiextensions.CustomResource(
            f"{name}-node-pool", api_version="kafka.strimzi.io/v1", kind="KafkaNodePool",
            metadata={"name": NODE_POOL, "namespace": NAMESPACE, "labels": {**MANAGED_BY_LABELS, "strimzi.io/cluster": CLUSTER}},
            spec=node_pool_spec(config), opts=with_crds)
        k8s.apiextensions.CustomResource(
            f"{name}-cluster", api_version="kafka.strimzi.io/v1", kind="Kafka",
            metadata={"name": CLUSTER, "namespace": NAMESPACE, "labels": dict(MANAGED_BY_LABELS)},
            spec=kafka_spec(sorted(WORKLOAD_NAMESPACES)), opts=with_crds)
        network_policy(f"{name}-within-netpol", policy_name="allow-within-namespace", namespace=namespace, opts=child,
                       spec=allow_spec(select(), ingress_rules=[ingress([same_namespace()])],
                                       egress_rules=[egress([same_namespace()])]))
        network_policy(f"{name}-operator-netpol", policy_name="allow-kube-api", namespace=namespace, opts=child,
                       spec=allow_spec(select(OPERATOR_POD_LABELS), egress_rules=[to_kube_api()]))
        self.bootstrap_servers = bootstrap_servers()
        self.register_outputs({"bootstrap_servers": self.bootstrap_servers})


def strimzi_values() -> dict[str, Any]:
    """The operator chart's values: watch its own namespace, give operands the Restricted security provider."""
    return {
        "extraEnvs": [{"name": "STRIMZI_POD_SECURITY_PROVIDER_CLASS", "value": "restricted"}],
        "resources": {"requests": {"cpu": "100m", "memory": "384Mi"}, "limits": {"cpu": "1", "memory": "384Mi"}},
    }


def node_pool_spec(config: StreamingConfig) -> dict[str, Any]:
    """One node, controller and broker, on a persistent volume of `localStorageGb` (0: an emptyDir)."""
    storage: dict[str, Any] = {"type": "ephemeral"} if config.local_storage_gb == 0 else {
        "type": "jbod", "volumes": [{
            "id": 0, "type": "persistent-claim", "size": f"{config.local_storage_gb}Gi", "kraftMetadata": "shared",
            # A local stack's events are disposable: `pulumi destroy` frees the volume.
            "deleteClaim": True,
        }]}
    return {"replicas": 1, "roles": ["controller", "broker"], "storage": storage,
            "resources": {"requests": {"cpu": BROKER_CPU, "memory": BROKER_MEMORY}, "limits": {"memory": BROKER_MEMORY}}}


def kafka_spec(client_namespaces: Sequence[str]) -> dict[str, Any]:
    """The KRaft cluster: the pinned Kafka version, one plaintext listener open to `client_namespaces` only."""
    peers = [namespace_peer(ns) for ns in client_namespaces]
    return {"kafka": {
        "version": versions.STRIMZI_KAFKA_VERSION, "metadataVersion": versions.STRIMZI_KAFKA_METADATA_VERSION,
        "listeners": [{"name": "plain", "port": PORT, "type": "internal", "tls": False, "networkPolicyPeers": peers}],
        "config": dict(SINGLE_NODE_CONFIG),
    }}
