"""LocalServices: MinIO and Redis in-cluster with generated credentials, no AWS."""

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from infra.k8s.local import (
    MINIO_CREDENTIALS,
    MINIO_CREDENTIALS_DIR,
    REDIS_CONFIG_DIR,
    REDIS_CONFIG_KEY,
    LocalServices,
)
from infra.k8s.podspec import SECRET_FILE_MODE
from infra.review.engine import render_program
from infra.review.graph import Graph
from tests.support.graph import assert_kind_validates
from tests.support.servers import free_port, redis_binary, wait_for_port
from workloads.common.vocab import BUCKET_ROLES


@pytest.fixture(scope="module")
def graph() -> Graph:
    return render_program("local", lambda: LocalServices("local", workload_namespaces=["training", "inference"]) and None)


def _by_name(graph: Graph, type_: str, name: str) -> dict[str, Any]:
    return next(r.inputs for r in graph.of_type(type_) if r.inputs["metadata"]["name"] == name)


def test_no_aws_resources(graph: Graph) -> None:
    assert not [r for r in graph.resources if r.type.startswith("aws:")]


def test_workload_namespaces_get_s3_credentials_pointing_at_minio(graph: Graph) -> None:
    secrets = [r.inputs for r in graph.of_type("kubernetes:core/v1:Secret") if r.inputs["metadata"]["name"] == "s3-credentials"]
    assert {s["metadata"]["namespace"] for s in secrets} == {"training", "inference"}
    # The generated keys never appear in the graph.
    assert all(set(s["stringData"].values()) == {"[secret]"} for s in secrets)


def test_minio_and_redis_run_in_the_system_namespace(graph: Graph) -> None:
    deployments = graph.of_type("kubernetes:apps/v1:Deployment")
    assert {(d.inputs["metadata"]["name"], d.inputs["metadata"]["namespace"]) for d in deployments} == {
        ("minio", "modelplane-system"), ("redis", "modelplane-system")}


def test_minio_runs_non_root_with_health_probes(graph: Graph) -> None:
    pod = _by_name(graph, "kubernetes:apps/v1:Deployment", "minio")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/minio/health/ready"
    assert pod["containers"][0]["image"].startswith("quay.io/minio/minio:RELEASE.")


def test_bucket_job_creates_the_three_buckets(graph: Graph) -> None:
    script = _by_name(graph, "kubernetes:batch/v1:Job", "minio-buckets")["spec"]["template"]["spec"]["containers"][0]
    assert all(f"local/{b}" in script["command"][2] for b in ("datasets", "checkpoints", "models"))


def test_redis_takes_its_password_from_a_config_file_mounted_from_the_secret(graph: Graph, tmp_path: Path) -> None:
    pod = _by_name(graph, "kubernetes:apps/v1:Deployment", "redis")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert not any("requirepass" in arg or "PASSWORD" in arg for arg in container["args"]), "no password in args"
    assert "envFrom" not in container and "env" not in container
    assert {"name": "config", "mountPath": REDIS_CONFIG_DIR, "readOnly": True} in container["volumeMounts"]
    assert {"name": "config", "secret": {"secretName": "redis", "defaultMode": SECRET_FILE_MODE}} in pod["volumes"]
    assert set(_by_name(graph, "kubernetes:core/v1:Secret", "redis")["stringData"]) == {REDIS_CONFIG_KEY}
    # The rendered arguments, with the Secret's file as the pod sees it, run a real redis-server that demands it.
    config = tmp_path / REDIS_CONFIG_KEY
    config.write_text("requirepass s3cret\n", encoding="utf-8")
    args = [str(config) if arg == f"{REDIS_CONFIG_DIR}/{REDIS_CONFIG_KEY}" else arg for arg in container["args"]]
    port = free_port()
    proc = subprocess.Popen([redis_binary(), *args, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc=proc)
        assert _redis(port, ["PING"]).startswith("-NOAUTH")
        assert _redis(port, ["AUTH", "s3cret"], ["CONFIG", "GET", "maxmemory-policy"]) == \
            "+OK\r\n*2\r\n$16\r\nmaxmemory-policy\r\n$11\r\nallkeys-lru\r\n"
        assert _redis(port, ["AUTH", "s3cret"], ["CONFIG", "GET", "save"]) == "+OK\r\n*2\r\n$4\r\nsave\r\n$0\r\n\r\n", \
            "a cache keeps no data"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_minio_and_its_buckets_job_read_the_root_credentials_from_files(graph: Graph, tmp_path: Path) -> None:
    minio = _by_name(graph, "kubernetes:apps/v1:Deployment", "minio")["spec"]["template"]["spec"]
    assert {e["name"]: e["value"] for e in minio["containers"][0]["env"]} == {
        f"{key}_FILE": f"{MINIO_CREDENTIALS_DIR}/{key}" for key in MINIO_CREDENTIALS}
    job = _by_name(graph, "kubernetes:batch/v1:Job", "minio-buckets")["spec"]["template"]["spec"]
    for pod in (minio, job):
        assert "envFrom" not in pod["containers"][0]
        assert {"name": "credentials", "secret": {"secretName": "minio", "defaultMode": SECRET_FILE_MODE}} in pod["volumes"]
        assert {"name": "credentials", "mountPath": MINIO_CREDENTIALS_DIR, "readOnly": True} in \
            pod["containers"][0]["volumeMounts"]
    # The Job's script, run by a real shell against a stand-in `mc` that records its arguments and environment.
    credentials, bin_dir, log = tmp_path / "credentials", tmp_path / "bin", tmp_path / "mc.log"
    credentials.mkdir()
    bin_dir.mkdir()
    for key, value in zip(MINIO_CREDENTIALS, ("AKIAUSER", "pAssw0rd"), strict=True):
        (credentials / key).write_text(value)
    (bin_dir / "mc").write_text(f'#!/bin/sh\necho "$* | $MC_HOST_local" >> {log}\n')
    (bin_dir / "mc").chmod(0o755)
    script = job["containers"][0]["command"][2].replace(MINIO_CREDENTIALS_DIR, str(credentials))
    subprocess.run(["/bin/sh", "-c", script], check=True, timeout=30, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
    calls = [line.split(" | ") for line in log.read_text().splitlines()]
    assert [args for args, _ in calls] == ["ls local", *(f"mb --ignore-existing local/{b}" for b in BUCKET_ROLES)]
    assert {host for _, host in calls} == {"http://AKIAUSER:pAssw0rd@minio:9000"}, "keys only in MC_HOST_local"


def test_the_local_services_pods_mount_no_service_account_token(graph: Graph) -> None:
    pods = [r.inputs["spec"]["template"]["spec"] for r in graph.kubernetes_objects()
            if r.type in ("kubernetes:apps/v1:Deployment", "kubernetes:batch/v1:Job")]
    assert len(pods) == 3 and all(pod["automountServiceAccountToken"] is False for pod in pods)


@pytest.mark.parametrize("kind", ["Deployment", "Service", "Secret", "Job", "PersistentVolumeClaim"])
def test_objects_validate_against_the_kubernetes_schema(graph: Graph, kind: str) -> None:
    assert_kind_validates(graph, kind)


def _redis(port: int, *commands: list[str]) -> str:
    """Send `commands` in RESP on one connection and return the raw replies (the infra venv has no Redis client)."""
    payload = b"".join(b"*%d\r\n" % len(c) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a.encode()) for a in c)
                       for c in commands)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(payload)
        conn.shutdown(socket.SHUT_WR)
        return b"".join(iter(lambda: conn.recv(4096), b"")).decode()
