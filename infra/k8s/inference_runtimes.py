"""The containers of each inference runtime, as manifest dicts for `InferenceService` (infra/k8s/inference.py).

- `modelplane-serve`: our FastAPI server (`python -m workloads.serve`: OpenAI completions and KServe v2).
- `tf-serving`: the official TensorFlow Serving image, fed by an init container syncing the export from S3.
- `vllm`: the official vLLM OpenAI-compatible server (`vllm serve`, the image's entrypoint), with our caching
  gateway (`python -m workloads.gateway`) in front, in pods of its own.
- `recommend`: our recommendation service (`python -m workloads.recommend.service`) on CPU, scoring with the
  recommender's export and the live features the stream processor keeps in Redis, behind the same gateway.

vLLM's weights come from S3 in one of two ways (`vllm.weights`):
- `runai-streamer` (the default with GPUs): `--load-format runai_streamer` with the s3:// folder as the model.
  vLLM's Run:ai loader streams the safetensors concurrently straight from S3 into GPU memory, so a 100 GB
  model needs no node disk and no second copy, and loads at S3 throughput
  (docs/models/extensions/runai_model_streamer.md; vllm/model_executor/model_loader/runai_streamer_loader.py
  at 0.31.0 maps AWS_ENDPOINT_URL to the streamer's S3 endpoint, so MinIO works too). The CUDA image ships the
  streamer (docker/Dockerfile `vllm-openai-base` installs runai-model-streamer[s3,gcs]).
- `s3-sync` (the default without GPUs): vLLM's CPU image has no streamer, so an init container copies the
  folder to a pod volume first.
vLLM loads whatever it finds, so either way an init container in our serve image runs first
(`python -m workloads.lm.fetch`): it downloads exactly the files the export's manifest lists and checks them as our
own server does, or with the streamer checks in S3 that the manifest exists and lists every file there at its
size. An export still being written, or one whose upload crashed, then holds the pod in Init with a message
saying so instead of being served.
Either way the pod reads S3 as the servers' ServiceAccount, whose role `WorkloadIdentity` grants read on the
models bucket (infra/program.py), with no keys in the pod.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import pulumi

from infra import versions
from infra.config.base import memory_bytes
from infra.config.vllm import SHM_GIB, cpu_kv_cache_gib
from infra.config.workloads import InferenceServiceConfig
from infra.k8s.podspec import (
    REDIS_URL_SECRET_KEY,
    SecretFiles,
    container_resources,
    container_security_context,
    cpu_threads,
    env_list,
    secret_files,
    secret_path,
)
from workloads.common.settings import API_KEY_FILE, REDIS_URL_FILE
from workloads.common.vocab import (
    VLLM_CPU_KVCACHE_SPACE_VAR,
    VLLM_DO_NOT_TRACK_VAR,
    VLLM_DTYPE_FLAG,
    VLLM_ENABLE_PREFIX_CACHING_FLAG,
    VLLM_GPU_MEMORY_UTILIZATION_FLAG,
    VLLM_LOAD_FORMAT_FLAG,
    VLLM_MAX_MODEL_LEN_FLAG,
    VLLM_NO_USAGE_STATS_VAR,
    VLLM_PORT_FLAG,
    VLLM_SERVED_MODEL_NAME_FLAG,
    VLLM_TENSOR_PARALLEL_SIZE_FLAG,
)
from workloads.gateway.settings import env_name as gateway_env
from workloads.lm.fetch_settings import FetchSettings
from workloads.recommend.model_settings import ServiceSettings
from workloads.serve.settings import env_name

PORTS: Final = {"modelplane-serve": 8080, "tf-serving": 8501, "vllm": 8000, "recommend": 8080}
"""Container HTTP port per runtime (vLLM's default --port is 8000)."""
GATED_RUNTIMES: Final = {"vllm": "-vllm", "recommend": "-model"}
"""Runtimes served behind the caching gateway, with the suffix of their own Deployment and Service (`<name><suffix>`);
the gateway takes the service's name."""
GATEWAY_PORT: Final = 8080
"""The caching gateway's HTTP port."""
BATCHING_SETTINGS: Final = ("max_batch_size", "max_queue", "max_tokens_cap")
"""Fields of an `inference.services` entry passed as-is to the server's settings of the same name."""
MODELS_DIR: Final = "/models"
"""Where synced models live in the pod."""
REQUEST_TIMEOUT_S: Final = 60
"""Seconds a request may take at the mesh routes (and at the gateway's reads) of every runtime but vLLM."""
LLM_REQUEST_TIMEOUT_S: Final = 600
"""Seconds a vLLM request may take, at the mesh routes and at the gateway's reads from vLLM: a long generation
streams, or computes an unstreamed answer, for minutes."""
RUNAI_LOAD_FORMAT: Final = "runai_streamer"
"""vLLM's --load-format of the Run:ai model streamer (vllm/model_executor/model_loader/__init__.py, 0.31.0)."""
VLLM_ENV: Final = {
    # The image runs as our non-root user on a read-only root filesystem: caches go to the /tmp volume.
    "HOME": "/tmp",
    # No usage reports from the cluster to vLLM's collector.
    VLLM_NO_USAGE_STATS_VAR: "1", VLLM_DO_NOT_TRACK_VAR: "1",
}
"""Plain env of every vLLM container."""
GATEWAY_RESOURCES: Final = ("1", "1Gi")
"""CPU and memory of a gateway pod: it proxies and hashes, the model runs elsewhere."""
API_KEY_SECRET_KEY: Final = "api-key"
"""The Secret key holding API keys (one per line for the gateway), generated or given by vllm.apiKeysSecret."""

SYNC_RESOURCES: Final = {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}}
"""Resources of a model init container: TF Serving's AWS CLI sync, vLLM's `workloads.lm.fetch` check (torch-free,
~45 MB resident; downloads stream to disk)."""
GATEWAY_HEALTH_PATH: Final = "/health"
"""The gateway's liveness and readiness route (200 while the process serves)."""
RECOMMEND_HEALTH_PATH: Final = "/health"
"""The recommendation service's liveness and readiness route."""


def containers(svc: InferenceServiceConfig, image: str, model_uri: pulumi.Input[str], env: dict[str, str],
               env_from: list[dict[str, Any]], files: SecretFiles, serve_image: str,
               ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """The runtime's (container, init containers, volumes); `files` the Secret files our server or the
    recommendation service reads (REDIS_URL_FILE, and API_KEY_FILE for our server); `serve_image` our serve image,
    which checks vLLM's export before vLLM starts."""
    port = PORTS[svc.runtime]
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {}}, {"name": "models", "emptyDir": {}}]
    base = {
        "image": image,
        "envFrom": env_from,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "resources": container_resources(svc.cpu, svc.memory, svc.gpus),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "models", "mountPath": MODELS_DIR}],
    }
    secret_volumes, secret_mounts = secret_files(files)
    ours = {**base, "volumeMounts": [*base["volumeMounts"], *secret_mounts]}
    if svc.runtime == "modelplane-serve":
        return _serve(svc, ours, model_uri, env, files), [], [*volumes, *secret_volumes]
    if svc.runtime == "vllm":
        return _vllm(svc, base, model_uri, env, env_from, volumes, serve_image)
    if svc.runtime == "recommend":
        return _recommend(ours, model_uri, env, files), [], [*volumes, *secret_volumes]
    volumes.append({"name": "monitoring", "configMap": {"name": f"{svc.name}-tf-serving-monitoring"}})
    container = {
        **base,
        "name": "tf-serving",
        "args": [f"--model_name={svc.name}", f"--model_base_path={MODELS_DIR}/{svc.name}",
                 f"--rest_api_port={port}", "--monitoring_config_file=/etc/tf-serving/monitoring.config"],
        "volumeMounts": [*base["volumeMounts"], {"name": "monitoring", "mountPath": "/etc/tf-serving"}],
        "readinessProbe": {"httpGet": {"path": f"/v1/models/{svc.name}", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
    }
    return container, [_sync(model_uri, f"{MODELS_DIR}/{svc.name}", env, env_from)], volumes


def _s3_init(name: str, image: str, command: list[str], args: list[pulumi.Input[str]], env: dict[str, str],
             env_from: list[dict[str, Any]], resources: dict[str, Any], models_volume: bool) -> dict[str, Any]:
    """An init container reading S3 with the pod's S3 env (`env`, `env_from`: the local stack's MinIO endpoint and
    keys; none on AWS, where the pod's role signs), mounting the models volume when it writes there."""
    init: dict[str, Any] = {
        "name": name,
        "image": image,
        "command": command,
        "args": args,
        "env": env_list({**env, "HOME": "/tmp"}),
        "resources": resources,
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"},
                         *([{"name": "models", "mountPath": MODELS_DIR}] if models_volume else [])],
    }
    if env_from:
        init["envFrom"] = env_from
    return init


def _fetch(serve_image: str, model_uri: pulumi.Input[str], target: str | None, env: dict[str, str],
           env_from: list[dict[str, Any]]) -> dict[str, Any]:
    """vLLM's init container in our serve image: download the export to `target` and verify it against its
    manifest, or with `target` None (the streamer reads S3 itself) only check in S3 that it is complete."""
    flag = FetchSettings.flag_name
    args: list[pulumi.Input[str]] = [flag("model_uri"), model_uri,
                                     *([flag("target"), target] if target else [flag("verify_only")])]
    return _s3_init("fetch-model" if target else "verify-model", serve_image, ["python", "-m", "workloads.lm.fetch"],
                    args, env, env_from, SYNC_RESOURCES, models_volume=target is not None)


def _file_settings(var: Callable[[str], str], files: SecretFiles, fields: Mapping[str, str]) -> dict[str, str]:
    """The `*_file` settings (`fields`: field -> file name) pointing a workload at those of `files` it has."""
    return {var(field): secret_path(file) for field, file in fields.items() if file in files}


def _serve(svc: InferenceServiceConfig, base: dict[str, Any], model_uri: pulumi.Input[str], env: dict[str, str],
           files: SecretFiles) -> dict[str, Any]:
    settings: dict[str, pulumi.Input[str]] = {
        **env,
        env_name("model_uri"): model_uri,
        env_name("model_name"): svc.name,
        env_name("port"): str(PORTS[svc.runtime]),
        env_name("download_dir"): MODELS_DIR,
        env_name("torch_threads"): str(cpu_threads(svc.cpu)),
        **{env_name(field): str(getattr(svc, field)) for field in BATCHING_SETTINGS},
        **_file_settings(env_name, files, {"redis_url_file": REDIS_URL_FILE, "api_key_file": API_KEY_FILE}),
    }
    return {
        **base,
        "name": "server",
        "command": ["python", "-m", "workloads.serve"],
        "env": env_list(settings),
        # Loading + warm-up can take minutes for big models: startup allows 10, then readiness takes over.
        "startupProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 10,
                         "failureThreshold": 60},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 5,
                           "failureThreshold": 2},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 3},
    }


def _recommend(base: dict[str, Any], model_uri: pulumi.Input[str], env: dict[str, str],
               files: SecretFiles) -> dict[str, Any]:
    """The recommendation service: the export from S3, the features' Redis URL from a Secret file."""
    var = ServiceSettings.env_name
    settings: dict[str, pulumi.Input[str]] = {
        **env, var("model_uri"): model_uri, var("port"): str(PORTS["recommend"]), var("download_dir"): MODELS_DIR,
        **_file_settings(var, files, {"redis_url_file": REDIS_URL_FILE}),
    }
    health = {"httpGet": {"path": RECOMMEND_HEALTH_PATH, "port": "http"}}
    return {
        **base,
        "name": "recommender",
        "command": ["python", "-m", "workloads.recommend.service"],
        "env": env_list(settings),
        # The export is a few MB of embeddings: a minute covers the download and the load.
        "startupProbe": {**health, "periodSeconds": 5, "failureThreshold": 12},
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**health, "periodSeconds": 10, "failureThreshold": 3},
    }


def _sync(model_uri: pulumi.Input[str], target: str, env: dict[str, str],
          env_from: list[dict[str, Any]]) -> dict[str, Any]:
    """TF Serving's init container: the AWS CLI copying the S3 folder `model_uri` (a SavedModel) to `target`."""
    return _s3_init("fetch-model", versions.AWS_CLI_IMAGE, ["aws", "s3", "sync", "--only-show-errors"],
                    [model_uri, target], env, env_from, SYNC_RESOURCES, models_volume=True)


def _vllm(svc: InferenceServiceConfig, base: dict[str, Any], model_uri: pulumi.Input[str], env: dict[str, str],
          env_from: list[dict[str, Any]], volumes: list[dict[str, Any]], serve_image: str,
          ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    vllm = svc.vllm
    streamed = vllm.loading(svc.gpus) == "runai-streamer"
    args: list[pulumi.Input[str]] = [
        model_uri if streamed else f"{MODELS_DIR}/{svc.name}",
        VLLM_SERVED_MODEL_NAME_FLAG, vllm.served_model_name or svc.name,
        VLLM_PORT_FLAG, str(PORTS["vllm"]), VLLM_DTYPE_FLAG, vllm.dtype, VLLM_ENABLE_PREFIX_CACHING_FLAG,
    ]
    if streamed:
        args += [VLLM_LOAD_FORMAT_FLAG, RUNAI_LOAD_FORMAT]
    if vllm.max_model_len:
        args += [VLLM_MAX_MODEL_LEN_FLAG, str(vllm.max_model_len)]
    if svc.gpus:
        args += [VLLM_TENSOR_PARALLEL_SIZE_FLAG, str(svc.gpus),
                 VLLM_GPU_MEMORY_UTILIZATION_FLAG, str(vllm.gpu_memory_utilization)]
    mounts = base["volumeMounts"] if not streamed else [m for m in base["volumeMounts"] if m["name"] != "models"]
    volumes = [*(volumes if not streamed else [v for v in volumes if v["name"] != "models"]),
               {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": f"{SHM_GIB}Gi"}}]
    health = {"httpGet": {"path": "/health", "port": "http"}}
    container = {
        **base,
        "name": "vllm",
        "args": args,
        # Without GPUs the KV cache is in the pod's memory: the config checked that this share of it leaves room.
        "env": env_list({**env, **VLLM_ENV, **({} if svc.gpus else {
            VLLM_CPU_KVCACHE_SPACE_VAR: str(cpu_kv_cache_gib(memory_bytes(svc.memory)))})}),
        "volumeMounts": [*mounts, {"name": "shm", "mountPath": "/dev/shm"}],
        # Streaming or syncing the weights, then CUDA graph capture, can take many minutes for a large model:
        # the startup probe allows vllm.startupMinutes before liveness can restart the pod.
        "startupProbe": {**health, "periodSeconds": 10, "failureThreshold": vllm.startup_minutes * 6},
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**health, "periodSeconds": 10, "failureThreshold": 3, "timeoutSeconds": 5},
    }
    return container, [_fetch(serve_image, model_uri, None if streamed else f"{MODELS_DIR}/{svc.name}", env,
                              env_from)], volumes


def gateway_container(image: str, upstream: str, model_uri: pulumi.Input[str], redis_secret: pulumi.Input[str] | None,
                      api_keys_secret: str | None, read_timeout_s: int, rate_limit: tuple[float, int],
                      ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The caching gateway's (container, volumes): our serve image proxying to `upstream` (the runtime's Service),
    its cache keys versioned by `model_uri`, its cache's URL read from the Secret `redis_secret` (key `url`; None:
    no cache), its clients' keys from the Secret `api_keys_secret` (None: open), both as files, waiting up to
    `read_timeout_s` (the mesh routes' timeout) for the runtime, limiting each key to `rate_limit` (requests per
    second, bucket size; a rate of 0 is no limit: InferenceServiceConfig.rate_limit_rps says why that is the
    default)."""
    rps, burst = rate_limit
    cpu, memory = GATEWAY_RESOURCES
    settings: dict[str, pulumi.Input[str]] = {
        gateway_env("upstream"): upstream, gateway_env("port"): str(GATEWAY_PORT),
        # New weights under the same name must never be answered from the old ones' cache.
        gateway_env("cache_version"): model_uri,
        # The runtime may compute an unstreamed answer for as long as the mesh route allows.
        gateway_env("read_timeout_s"): str(read_timeout_s),
        # Always rendered: the gateway's own default (10/s per key) would cap a service sharing one key.
        gateway_env("rate_limit_rps"): str(rps),
        **({gateway_env("rate_limit_burst"): str(burst)} if rps else {}),
    }
    files: dict[str, tuple[pulumi.Input[str], str]] = {}
    if redis_secret is not None:
        files[REDIS_URL_FILE] = (redis_secret, REDIS_URL_SECRET_KEY)
    if api_keys_secret:
        files[API_KEY_FILE] = (api_keys_secret, API_KEY_SECRET_KEY)
    else:
        settings[gateway_env("allow_anonymous")] = "true"
    settings |= _file_settings(gateway_env, files, {"redis_url_file": REDIS_URL_FILE, "api_keys_file": API_KEY_FILE})
    secret_volumes, secret_mounts = secret_files(files)
    health = {"httpGet": {"path": GATEWAY_HEALTH_PATH, "port": "http"}}
    return {
        "name": "gateway",
        "image": image,
        "command": ["python", "-m", "workloads.gateway"],
        "env": env_list(settings),
        "ports": [{"name": "http", "containerPort": GATEWAY_PORT, "protocol": "TCP"}],
        "resources": container_resources(cpu, memory, 0),
        "securityContext": container_security_context(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, *secret_mounts],
        "readinessProbe": {**health, "periodSeconds": 5, "failureThreshold": 2},
        "livenessProbe": {**health, "periodSeconds": 10, "failureThreshold": 3},
    }, [{"name": "tmp", "emptyDir": {}}, *secret_volumes]
