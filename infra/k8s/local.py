"""`LocalServices`: in-cluster MinIO and Redis standing in for S3 and ElastiCache on the `local` stack.

The workloads cannot tell the difference: they reach MinIO through the standard
`AWS_ENDPOINT_URL` and Redis through the same `--redis-url` as in the cloud.

NetworkPolicies (the namespace starts from default-deny, infra/k8s/netpol.py): MinIO admits the workload
namespaces and its buckets Job on the S3 port, Redis the workload namespaces on its port; `s3_egress` and
`redis_egress` are the matching egress rules for the workloads' own policies.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import versions
from infra.k8s.netpol import Rule, allow_spec, egress, ingress, namespace_peer, network_policy, pod_peer, select, tcp
from infra.k8s.podspec import SECRET_FILE_MODE, container_security_context, manifest_block, pod_security_context
from workloads.common.vocab import BUCKET_ROLES, MANAGED_BY_LABELS, NAME_LABEL

SYSTEM_NAMESPACE: Final = "modelplane-system"
"""Namespace of the local stand-ins (MinIO, Redis); the program creates it on kubeconfig stacks."""
S3_SECRET: Final = "s3-credentials"
"""Secret (in each workload namespace) holding MinIO's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
S3_SECRET_KEYS: Final = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""Keys of the Secret S3_SECRET: MinIO's access and secret key under boto3's env var names."""
MINIO_PORT: Final = 9000
"""MinIO's S3 API port (container and Service)."""
REDIS_PORT: Final = 6379
"""Redis's port (container and Service)."""
REDIS_UID: Final = 999
"""The redis image's own user (uid 999, gid 1000 on alpine)."""
MINIO_STORAGE: Final = "10Gi"
"""MinIO volume size (laptop-sized)."""
MINIO_CPU: Final = "500m"
"""MinIO CPU request (laptop-sized)."""
MINIO_CREDENTIALS: Final = ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")
"""Keys of the Secret `minio` (and file names): MinIO's root user and password, which the workloads use as keys."""
MINIO_CREDENTIALS_DIR: Final = "/etc/minio"
"""Where the MinIO pod and the buckets Job mount the Secret `minio` as files."""
REDIS_CONFIG_DIR: Final = "/etc/redis"
"""Where the Redis pod mounts its config file (with `requirepass`) from the Secret `redis`."""
REDIS_CONFIG_KEY: Final = "redis.conf"
"""The key of the Secret `redis` (and the file name) holding Redis's config file."""
REDIS_MEMORY: Final = "256Mi"
"""Redis memory request and limit; maxmemory is set just below it with LRU eviction."""
MINIO_LABELS: Final = {NAME_LABEL: "minio"}
"""Labels of the MinIO pods (and the selector of its Deployment and Service)."""
REDIS_LABELS: Final = {NAME_LABEL: "redis"}
"""Labels of the Redis pods (and the selector of its Deployment and Service)."""
BUCKETS_JOB: Final = "minio-buckets"
"""Name of the Job that creates the buckets; Kubernetes labels its pods batch.kubernetes.io/job-name with it
(kubernetes.io/docs/reference/labels-annotations-taints, since 1.27)."""


class LocalServices(pulumi.ComponentResource):
    """MinIO (S3 API) with its buckets, and a password-protected Redis, with generated credentials in Secrets."""

    s3_endpoint: str
    """In-cluster S3 endpoint URL: workloads get it as AWS_ENDPOINT_URL (with AWS_DEFAULT_REGION, see `s3_env`)."""
    s3_secret_name: str
    """Name of the per-namespace Secret with AWS_* variables for MinIO."""
    redis_url: pulumi.Output[str]
    """redis:// URL including the password (a secret output)."""
    s3_egress: list[Rule]
    """NetworkPolicy egress rules that reach MinIO's S3 port."""
    redis_egress: list[Rule]
    """NetworkPolicy egress rules that reach Redis."""

    def __init__(self, name: str, *, workload_namespaces: Sequence[str], namespace: str = SYSTEM_NAMESPACE,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`workload_namespaces` get the S3 credentials Secret; MinIO and Redis run in `namespace` (which
        must exist)."""
        super().__init__("modelplane:local:LocalServices", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        ns = namespace
        self.s3_endpoint = f"http://minio.{ns}.svc.cluster.local:{MINIO_PORT}"
        self.s3_secret_name = S3_SECRET
        access_key = random.RandomPassword(f"{name}-minio-user", length=20, special=False, opts=child)
        secret_key = random.RandomPassword(f"{name}-minio-password", length=40, special=False, opts=child)
        redis_password = random.RandomPassword(f"{name}-redis-password", length=32, special=False, opts=child)
        k8s.core.v1.Secret(f"{name}-minio", metadata=_meta("minio", ns),
                           string_data=dict(zip(MINIO_CREDENTIALS, (access_key.result, secret_key.result), strict=True)),
                           opts=child)
        k8s.core.v1.Secret(f"{name}-redis", metadata=_meta("redis", ns),
                           string_data={REDIS_CONFIG_KEY: pulumi.Output.concat("requirepass ", redis_password.result, "\n")},
                           opts=child)
        for workload_ns in workload_namespaces:
            k8s.core.v1.Secret(f"{name}-s3-{workload_ns}", metadata=_meta(S3_SECRET, workload_ns), string_data=dict(
                zip(S3_SECRET_KEYS, (access_key.result, secret_key.result), strict=True)), opts=child)
        self._minio(name, ns)
        self._redis(name, ns)
        self._network_policies(name, ns, workload_namespaces)
        self.s3_egress = [egress([namespace_peer(ns, MINIO_LABELS)], tcp(MINIO_PORT))]
        self.redis_egress = [egress([namespace_peer(ns, REDIS_LABELS)], tcp(REDIS_PORT))]
        self.redis_url = pulumi.Output.secret(
            pulumi.Output.concat("redis://:", redis_password.result, f"@redis.{ns}.svc.cluster.local:{REDIS_PORT}/0"))
        self.register_outputs({"s3_endpoint": self.s3_endpoint})

    @property
    def s3_env(self) -> dict[str, str]:
        """Plain (non-secret) env that points boto3 at MinIO."""
        return {"AWS_ENDPOINT_URL": self.s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    @property
    def s3_secret_env(self) -> dict[str, tuple[str, str]]:
        """The MinIO keys as env var → (Secret, key), for pods that take env entries rather than envFrom (a
        TrainJob's trainer)."""
        return {key: (self.s3_secret_name, key) for key in S3_SECRET_KEYS}

    def _network_policies(self, name: str, ns: str, workload_namespaces: Sequence[str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        workloads = [namespace_peer(workload_ns) for workload_ns in sorted(workload_namespaces)]
        buckets_job = {"batch.kubernetes.io/job-name": BUCKETS_JOB}
        network_policy(f"{name}-minio-netpol", policy_name="minio", namespace=ns, opts=child, spec=allow_spec(
            select(MINIO_LABELS), ingress_rules=[ingress([*workloads, pod_peer(buckets_job)], tcp(MINIO_PORT))]))
        network_policy(f"{name}-redis-netpol", policy_name="redis", namespace=ns, opts=child, spec=allow_spec(
            select(REDIS_LABELS), ingress_rules=[ingress(workloads, tcp(REDIS_PORT))]))
        network_policy(f"{name}-buckets-netpol", policy_name=BUCKETS_JOB, namespace=ns, opts=child, spec=allow_spec(
            select(buckets_job), egress_rules=[egress([pod_peer(MINIO_LABELS)], tcp(MINIO_PORT))]))

    def _minio(self, name: str, ns: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        labels = dict(MINIO_LABELS)
        k8s.core.v1.PersistentVolumeClaim(f"{name}-minio-data", metadata=_meta("minio-data", ns), spec=manifest_block({
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": MINIO_STORAGE}},
        }), opts=child)
        probe = {"httpGet": {"path": "/minio/health/ready", "port": "s3"}, "periodSeconds": 5}
        credentials = {"name": "credentials", "secret": {"secretName": "minio", "defaultMode": SECRET_FILE_MODE}}
        credentials_mount = {"name": "credentials", "mountPath": MINIO_CREDENTIALS_DIR, "readOnly": True}
        container = {
            "name": "minio", "image": versions.MINIO_IMAGE, "args": ["server", "/data"],
            # MinIO reads its root credentials from these files (internal/config/constants.go EnvRootUserFile).
            "env": [{"name": f"{key}_FILE", "value": f"{MINIO_CREDENTIALS_DIR}/{key}"} for key in MINIO_CREDENTIALS],
            "ports": [{"name": "s3", "containerPort": MINIO_PORT}],
            "readinessProbe": probe,
            "livenessProbe": {"httpGet": {"path": "/minio/health/live", "port": "s3"}, "periodSeconds": 10},
            "resources": {"requests": {"cpu": MINIO_CPU, "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": container_security_context(),
            "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"},
                             credentials_mount],
        }
        k8s.apps.v1.Deployment(f"{name}-minio", metadata=_meta("minio", ns, labels), spec=manifest_block({
            "replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "securityContext": pod_security_context(), "automountServiceAccountToken": False,
                "containers": [container],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "minio-data"}},
                            {"name": "tmp", "emptyDir": {}}, credentials],
            }},
        }), opts=child)
        k8s.core.v1.Service(f"{name}-minio", metadata=_meta("minio", ns, labels), spec=manifest_block({
            "selector": labels, "ports": [{"name": "s3", "port": MINIO_PORT, "targetPort": "s3"}],
        }), opts=child)
        # The MinIO image ships `mc`; a Job creates the buckets once MinIO answers (it retries until then). The keys
        # reach mc through its MC_HOST_<alias> variable, read from the mounted files: never on a command line.
        user, password = (f"$(cat {MINIO_CREDENTIALS_DIR}/{key})" for key in MINIO_CREDENTIALS)
        script = (f"export MC_HOST_local=\"http://{user}:{password}@minio:{MINIO_PORT}\"; "
                  "until mc ls local >/dev/null; do sleep 2; done; "
                  + " && ".join(f"mc mb --ignore-existing local/{b}" for b in BUCKET_ROLES))
        k8s.batch.v1.Job(f"{name}-buckets", metadata=_meta(BUCKETS_JOB, ns, labels), spec=manifest_block({
            "backoffLimit": 6, "ttlSecondsAfterFinished": 3600,
            "template": {"spec": {
                "restartPolicy": "OnFailure", "securityContext": pod_security_context(),
                "automountServiceAccountToken": False,
                "containers": [{
                    "name": "mc", "image": versions.MINIO_IMAGE, "command": ["/bin/sh", "-c", script],
                    "env": [{"name": "HOME", "value": "/tmp"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                    "securityContext": container_security_context(),
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, credentials_mount],
                }],
                "volumes": [{"name": "tmp", "emptyDir": {}}, credentials],
            }},
        }), opts=child)

    def _redis(self, name: str, ns: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        labels = dict(REDIS_LABELS)
        security: dict[str, Any] = {**pod_security_context(), "runAsUser": REDIS_UID, "runAsGroup": 1000,
                                    "fsGroup": 1000}
        container = {
            "name": "redis", "image": versions.REDIS_IMAGE,
            # A cache, not a database: no persistence, LRU eviction within the memory limit.
            # The password is in the config file mounted from the Secret, never on the command line (which `ps`
            # shows to every process of the pod). The image's entrypoint runs `redis-server` when the first argument ends in
            # .conf (redis/docker-library-redis alpine/docker-entrypoint.sh).
            "args": [f"{REDIS_CONFIG_DIR}/{REDIS_CONFIG_KEY}", "--save", "", "--appendonly", "no",
                     "--maxmemory", "200mb", "--maxmemory-policy", "allkeys-lru"],
            "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
            "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
            "resources": {"requests": {"cpu": "100m", "memory": REDIS_MEMORY},
                          "limits": {"cpu": "500m", "memory": REDIS_MEMORY}},
            "securityContext": container_security_context(),
            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                             {"name": "config", "mountPath": REDIS_CONFIG_DIR, "readOnly": True}],
        }
        k8s.apps.v1.Deployment(f"{name}-redis", metadata=_meta("redis", ns, labels), spec=manifest_block({
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "securityContext": security, "automountServiceAccountToken": False, "containers": [container],
                "volumes": [{"name": "data", "emptyDir": {}}, {"name": "config", "secret": {
                    "secretName": "redis", "defaultMode": SECRET_FILE_MODE}}],
            }},
        }), opts=child)
        k8s.core.v1.Service(f"{name}-redis", metadata=_meta("redis", ns, labels), spec=manifest_block({
            "selector": labels, "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
        }), opts=child)


def _meta(name: str, namespace: str, labels: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": name, "namespace": namespace,
            "labels": {**MANAGED_BY_LABELS, "app.kubernetes.io/part-of": "modelplane-local",
                       **(labels or {})}}
