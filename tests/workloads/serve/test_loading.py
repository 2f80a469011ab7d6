"""Loading: not ready until loaded and warm; S3 outages are retried; corrupt exports never serve."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import boto3
import httpx
import pytest

from tests.support.servers import S3Server, free_port, s3_server
from tests.workloads.files import upload_dir
from tests.workloads.serve.support import live_server, metric
from workloads.common import metrics as names
from workloads.common.uri import S3Uri
from workloads.lm.model import GPT
from workloads.serve.backends import Backend
from workloads.serve.loader import load_backend
from workloads.serve.settings import ServeSettings


def test_readiness_is_false_until_the_model_is_loaded_and_warm(model_uri: str) -> None:
    release = threading.Event()

    def slow_loader(settings: ServeSettings) -> Backend:
        release.wait(timeout=30)
        return load_backend(settings)

    with live_server(model_uri, loader=slow_loader, wait_ready=False) as server, server.client() as client:
        assert client.get("/v2/health/live").status_code == 200
        assert client.get("/v2/health/ready").json() == {"ready": False}
        assert client.get("/v2/health/ready").status_code == 503
        assert client.get(f"/v2/models/{server.name}/ready").status_code == 503
        early = client.post("/v1/completions", json={"model": server.name, "prompt": "the", "max_tokens": 2})
        assert early.status_code == 503
        assert early.headers["retry-after"] == "5"
        assert "still loading" in early.json()["error"]["message"]
        assert metric(server.metrics(), names.INFERENCE_MODEL_READY) == 0
        release.set()
        server.wait_ready(timeout=30)
        assert client.get(f"/v2/models/{server.name}/ready").status_code == 200
        assert metric(server.metrics(), names.INFERENCE_MODEL_READY) == 1


def test_a_corrupt_export_never_becomes_ready_and_liveness_fails(s3: S3Server, tiny_export: tuple[Path, GPT],
                                                                 tmp_path: Path) -> None:
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    for item in tiny_export[0].iterdir():
        data = item.read_bytes()
        (corrupt / item.name).write_bytes(data[:-8] + b"tampered" if item.name == "model.safetensors" else data)
    boto3.client("s3", endpoint_url=s3.endpoint).create_bucket(Bucket="corrupt-models")
    upload_dir(corrupt, S3Uri("corrupt-models", "lm/tiny"))
    with live_server("s3://corrupt-models/lm/tiny", wait_ready=False, load_timeout_s=1.5) as server, \
            server.client() as client:
        deadline = time.monotonic() + 30
        while client.get("/v2/health/live").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.1)
        live = client.get("/v2/health/live")
        assert client.get("/v2/health/ready").status_code == 503
    assert live.status_code == 503
    assert "checksum mismatch for model.safetensors" in live.json()["error"]


def _serve_process(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "workloads.serve", *args], env=env,
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)


def test_s3_outage_at_startup_is_retried_until_s3_returns(tiny_export: tuple[Path, GPT], tmp_path: Path) -> None:
    port, outage_port = free_port(), free_port()
    env = {**os.environ, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{outage_port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "MODELPLANE_SERVE_TORCH_THREADS": "1"}
    log = tmp_path / "server.log"
    proc = _serve_process(["--model-uri", "s3://models/lm/late", "--host", "127.0.0.1", "--port", str(port)], env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v2/health/live", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 503
        # S3 stays down until the loader itself has retried (past the S3 client's own retries): waiting for that
        # event, not for a fixed time, keeps the test independent of the machine's speed.
        deadline = time.monotonic() + 90
        while "model_load_retry" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        assert httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 503
        with s3_server(port=outage_port) as s3:
            boto3.client("s3", endpoint_url=s3.endpoint, region_name="us-east-1", aws_access_key_id="testing",
                         aws_secret_access_key="testing").create_bucket(Bucket="models")
            with pytest.MonkeyPatch.context() as mp:
                for key, value in s3.env().items():
                    mp.setenv(key, value)
                upload_dir(tiny_export[0], S3Uri("models", "lm/late"))
            deadline = time.monotonic() + 60
            while httpx.get(f"{url}/v2/health/ready", timeout=2).status_code != 200:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            response = httpx.post(f"{url}/v1/completions", timeout=30,
                                  json={"model": "late", "prompt": "the", "max_tokens": 5, "temperature": 0})
        assert response.status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
