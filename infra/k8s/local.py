"""`LocalServices`: in-cluster MinIO and Redis standing in for S3 and ElastiCache on the `local` stack.

The workloads cannot tell the difference: they reach MinIO through the standard
`AWS_ENDPOINT_URL` and Redis through the same `--redis-url` as in the cloud.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from infra import versions
from infra.k8s.podspec import container_security_context, manifest_block, pod_security_context
from workloads.common.vocab import BUCKET_ROLES

SYSTEM_NAMESPACE: Final = "modelplane-system"
"""Namespace of the local stand-ins (MinIO, Redis); the program creates it on kubeconfig stacks."""
S3_SECRET: Final = "s3-credentials"
"""Secret (in each workload namespace) holding MinIO's AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY."""
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
REDIS_MEMORY: Final = "256Mi"
"""Redis memory request and limit; maxmemory is set just below it with LRU eviction."""


class LocalServices(pulumi.ComponentResource):
    """MinIO (S3 API) with its buckets, and a password-protected Redis, with generated credentials in Secrets."""

    s3_endpoint: str
    """In-cluster S3 endpoint URL: workloads get it as AWS_ENDPOINT_URL (with AWS_DEFAULT_REGION, see `s3_env`)."""
    s3_secret_name: str
    """Name of the per-namespace Secret with AWS_* variables for MinIO."""
    redis_url: pulumi.Output[str]
    """redis:// URL including the password (a secret output)."""

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
                           string_data={"MINIO_ROOT_USER": access_key.result, "MINIO_ROOT_PASSWORD": secret_key.result},
                           opts=child)
        k8s.core.v1.Secret(f"{name}-redis", metadata=_meta("redis", ns),
                           string_data={"REDIS_PASSWORD": redis_password.result}, opts=child)
        for workload_ns in workload_namespaces:
            k8s.core.v1.Secret(f"{name}-s3-{workload_ns}", metadata=_meta(S3_SECRET, workload_ns), string_data={
                "AWS_ACCESS_KEY_ID": access_key.result, "AWS_SECRET_ACCESS_KEY": secret_key.result,
            }, opts=child)
        self._minio(name, ns)
        self._redis(name, ns)
        self.redis_url = pulumi.Output.secret(
            pulumi.Output.concat("redis://:", redis_password.result, f"@redis.{ns}.svc.cluster.local:{REDIS_PORT}/0"))
        self.register_outputs({"s3_endpoint": self.s3_endpoint})

    @property
    def s3_env(self) -> dict[str, str]:
        """Plain (non-secret) env that points boto3 at MinIO."""
        return {"AWS_ENDPOINT_URL": self.s3_endpoint, "AWS_DEFAULT_REGION": "us-east-1"}

    def _minio(self, name: str, ns: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app.kubernetes.io/name": "minio"}
        k8s.core.v1.PersistentVolumeClaim(f"{name}-minio-data", metadata=_meta("minio-data", ns), spec=manifest_block({
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": MINIO_STORAGE}},
        }), opts=child)
        probe = {"httpGet": {"path": "/minio/health/ready", "port": "s3"}, "periodSeconds": 5}
        container = {
            "name": "minio", "image": versions.MINIO_IMAGE, "args": ["server", "/data"],
            "envFrom": [{"secretRef": {"name": "minio"}}],
            "ports": [{"name": "s3", "containerPort": MINIO_PORT}],
            "readinessProbe": probe,
            "livenessProbe": {"httpGet": {"path": "/minio/health/live", "port": "s3"}, "periodSeconds": 10},
            "resources": {"requests": {"cpu": MINIO_CPU, "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}},
            "securityContext": container_security_context(),
            "volumeMounts": [{"name": "data", "mountPath": "/data"}, {"name": "tmp", "mountPath": "/tmp"}],
        }
        k8s.apps.v1.Deployment(f"{name}-minio", metadata=_meta("minio", ns, labels), spec=manifest_block({
            "replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "securityContext": pod_security_context(), "containers": [container],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "minio-data"}},
                            {"name": "tmp", "emptyDir": {}}],
            }},
        }), opts=child)
        k8s.core.v1.Service(f"{name}-minio", metadata=_meta("minio", ns, labels), spec=manifest_block({
            "selector": labels, "ports": [{"name": "s3", "port": MINIO_PORT, "targetPort": "s3"}],
        }), opts=child)
        # The MinIO image ships `mc`; a Job creates the buckets once MinIO answers (it retries until then).
        script = (f"until mc alias set local http://minio:{MINIO_PORT} \"$MINIO_ROOT_USER\" \"$MINIO_ROOT_PASSWORD\"; "
                  "do sleep 2; done; " + " && ".join(f"mc mb --ignore-existing local/{b}" for b in BUCKET_ROLES))
        k8s.batch.v1.Job(f"{name}-buckets", metadata=_meta("minio-buckets", ns, labels), spec=manifest_block({
            "backoffLimit": 6, "ttlSecondsAfterFinished": 3600,
            "template": {"spec": {
                "restartPolicy": "OnFailure", "securityContext": pod_security_context(),
                "containers": [{
                    "name": "mc", "image": versions.MINIO_IMAGE, "command": ["/bin/sh", "-c", script],
                    "envFrom": [{"secretRef": {"name": "minio"}}], "env": [{"name": "HOME", "value": "/tmp"}],
                    "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
                    "securityContext": container_security_context(),
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
                }],
                "volumes": [{"name": "tmp", "emptyDir": {}}],
            }},
        }), opts=child)

    def _redis(self, name: str, ns: str) -> None:
        child = pulumi.ResourceOptions(parent=self)
        labels = {"app.kubernetes.io/name": "redis"}
        security: dict[str, Any] = {**pod_security_context(), "runAsUser": REDIS_UID, "runAsGroup": 1000,
                                    "fsGroup": 1000}
        container = {
            "name": "redis", "image": versions.REDIS_IMAGE,
            # A cache, not a database: no persistence, LRU eviction within the memory limit.
            "args": ["--requirepass", "$(REDIS_PASSWORD)", "--save", "", "--appendonly", "no",
                     "--maxmemory", "200mb", "--maxmemory-policy", "allkeys-lru"],
            "envFrom": [{"secretRef": {"name": "redis"}}],
            "ports": [{"name": "redis", "containerPort": REDIS_PORT}],
            "readinessProbe": {"tcpSocket": {"port": "redis"}, "periodSeconds": 5},
            "resources": {"requests": {"cpu": "100m", "memory": REDIS_MEMORY},
                          "limits": {"cpu": "500m", "memory": REDIS_MEMORY}},
            "securityContext": container_security_context(),
            "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        }
        k8s.apps.v1.Deployment(f"{name}-redis", metadata=_meta("redis", ns, labels), spec=manifest_block({
            "replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "securityContext": security, "containers": [container], "volumes": [{"name": "data", "emptyDir": {}}],
            }},
        }), opts=child)
        k8s.core.v1.Service(f"{name}-redis", metadata=_meta("redis", ns, labels), spec=manifest_block({
            "selector": labels, "ports": [{"name": "redis", "port": REDIS_PORT, "targetPort": "redis"}],
        }), opts=child)


def _meta(name: str, namespace: str, labels: dict[str, str] | None = None) -> k8s.meta.v1.ObjectMetaArgsDict:
    return {"name": name, "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "modelplane", "app.kubernetes.io/part-of": "modelplane-local",
                       **(labels or {})}}
