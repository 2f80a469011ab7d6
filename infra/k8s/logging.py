"""`LogShipper`: Fluent Bit as a DaemonSet from its pinned official chart (fluent/helm-charts `fluent-bit`).

Fluent Bit tails the container logs of the platform's namespaces on every node, adds Kubernetes metadata with
the `kubernetes` filter, and ships them:

- on aws to CloudWatch Logs (`cloudwatch_logs`), one log group per namespace through `log_group_template`
  (Fluent Bit manual, outputs/cloudwatch: a record_accessor template; `log_group_name` is the fallback when it
  cannot be resolved), and optionally to an OpenSearch domain (`opensearch` output with SigV4 `AWS_Auth` over TLS);
- on other targets to its own stdout, read with `kubectl logs`.

On aws Fluent Bit signs with the IAM role EKS Pod Identity binds to SERVICE_ACCOUNT: its HTTP credentials provider
reads AWS_CONTAINER_CREDENTIALS_FULL_URI (the agent at 169.254.170.23) and AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE
(fluent/fluent-bit src/aws/flb_aws_credentials_http.c).

With OpenSearch, Fluent Bit writes one index per day named from workloads.logging.lifecycle's constants, and a Job
(`python -m workloads.logging.ism`, running as the same ServiceAccount, whose role is the domain's master user) puts
the Index State Management policy that deletes those indices after the retention. Pulumi waits for the Job to
complete; a new retention changes its env, which replaces the Job, so it runs again.

NetworkPolicies (the namespace starts from default-deny, infra/k8s/netpol.py): Fluent Bit calls the Kubernetes API
(the kubernetes filter's metadata); on aws the namespace's pods (Fluent Bit, the index lifecycle Job) reach
CloudWatch Logs and OpenSearch on 443 and the Pod Identity agent; with the monitoring stack, Prometheus reaches
Fluent Bit's HTTP server (METRICS_PORT).

Monitoring (`monitoring`: the stack runs the Prometheus operator): the chart's `serviceMonitor.enabled` makes it
render a ServiceMonitor scraping the `http` port's /api/v2/metrics/prometheus (templates/servicemonitor.yaml), but
only when the cluster already serves monitoring.coreos.com/v1 (`.Capabilities.APIVersions.Has`), so the release
must be installed after the operator's CRDs (infra/program.py orders it). The alert rules on Fluent Bit's output
counters are in infra/k8s/rules/logging.yaml.

Python tracebacks (an uncaught exception in vLLM or torchrun) are many lines on stderr. The tail input's
`multiline.parser docker, cri` only rejoins lines the runtime split; the `multiline` filter with the built-in
`python` parser then joins a traceback into one record (Fluent Bit manual, filters/multiline-stacktrace and
administration/configuring-fluent-bit/multiline-parsing). It runs before the kubernetes filter: with `buffer On` it
re-emits joined records through its in_emitter under the original tag, which the kubernetes filter then reads.

Our workloads log one JSON object per line (workloads/common/logs.py). The container runtime wraps each line as a
`log` string; `Merge_Log On` makes the kubernetes filter parse that string as JSON and lift its keys into the
record (Fluent Bit manual, filters/kubernetes, "Merge_Log"), and `Keep_Log Off` drops the raw copy. The chart's
config keys (`config.inputs`, `config.filters`, `config.outputs`, ...) are checked against its values.yaml at the
pinned version (tests/infra/k8s/fluent_bit_values.yaml).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra import versions
from infra.k8s.namespaces import Namespaces
from infra.k8s.netpol import allow_spec, network_policy, select, to_https, to_kube_api, to_pod_identity
from infra.k8s.observability import from_prometheus
from infra.k8s.podspec import (
    container_resources,
    container_security_context,
    env_list,
    manifest_block,
    pod_security_context,
)
from workloads.common.vocab import NAME_LABEL
from workloads.logging.lifecycle import INDEX_DATE_FORMAT, INDEX_PREFIX, INDEX_SEPARATOR, IndexLifecycleSettings

NAMESPACE: Final = "logging"
"""Namespace of the Fluent Bit DaemonSet (privileged: it mounts the nodes' /var/log)."""
RELEASE: Final = "fluent-bit"
"""Helm release name."""
SERVICE_ACCOUNT: Final = "fluent-bit"
"""Fluent Bit's ServiceAccount, named so its workload identity binds to a stable name."""
POD_LABELS: Final = {NAME_LABEL: "fluent-bit"}
"""Labels of the Fluent Bit pods (the chart's `fluent-bit.selectorLabels`: its name)."""
TAG_PREFIX: Final = "kube."
"""Tag of tailed container logs; the kubernetes filter reads pod metadata from the rest of the tag."""
METRICS_PORT: Final = 2020
"""Fluent Bit's HTTP server port, the chart's `metricsPort` default (its Service's `http` port)."""
MULTILINE_FLUSH_MS: Final = 2000
"""How long the multiline filter waits for a traceback's next line before it emits what it joined (`flush_ms`,
Fluent Bit's default, set so the wait is visible here)."""
TAIL_DB: Final = "/var/log/flb_kube.db"
"""The tail input's offsets database, on the node's /var/log (the chart mounts it from the host, writable): a
restarted Fluent Bit (rollout, OOM kill) resumes each file where it stopped instead of at its end, which would skip
every line written while it was down (Fluent Bit manual, inputs/tail, "DB"; the path of its Kubernetes example)."""
OUTPUT_RETRY_LIMIT: Final = 10
"""Retries of a chunk an AWS output failed to send. Fluent Bit's default is 1 (administration/scheduling-and-retries):
a CloudWatch throttle or an OpenSearch blue/green update twice in a row dropped the chunk. With the scheduler's
default back-off (base 5 s, cap 2000 s, full jitter) ten retries ride out roughly an hour of outage, while the
tail input pauses at Mem_Buf_Limit and the logs wait on disk; a chunk that still fails is dropped, so one bad
chunk cannot hold the buffer for ever."""
FALLBACK_GROUP: Final = "unmatched"
"""Log group suffix for records whose namespace the template cannot resolve (cloudwatch_logs `log_group_name`)."""
LIFECYCLE_BACKOFF_LIMIT: Final = 6
"""Retries of the index lifecycle Job's pod (exponential back-off from 10 s, about 10 minutes in all)."""
LIFECYCLE_DEADLINE_S: Final = 1200
"""Longest the index lifecycle Job may run, retries included (activeDeadlineSeconds): its back-off alone takes about
10 minutes, so 20 leaves room for the runs; past it the Job fails (DeadlineExceeded) instead of retrying on."""
LIFECYCLE_TTL_S: Final = 86400
"""A finished index lifecycle Job is deleted a day later (ttlSecondsAfterFinished), like the topics Job; a later
`pulumi up --refresh` re-runs it, which is harmless (it only sets the ISM policy and attaches it)."""


@dataclass(frozen=True, kw_only=True)
class CloudWatchSink:
    """Where the aws target ships: the log groups' prefix and region."""

    prefix: str
    """Log groups are `<prefix>/<namespace>` (LogStore in infra/aws/logging.py creates them)."""
    region: str
    """AWS region of the log groups and the domain."""
    retention_days: int
    """Days logs are kept (modelplane:logging.retentionDays): the OpenSearch indices' lifecycle uses it."""
    opensearch_host: pulumi.Input[str] | None = None
    """The OpenSearch domain's endpoint, when logs also go there."""
    lifecycle_image: str
    """Image of the index lifecycle Job: our serve image (the stack's ECR), which already carries botocore and
    httpx."""


class LogShipper(pulumi.ComponentResource):
    """Fluent Bit on every node (all taints tolerated), tailing the containers of `namespaces`."""

    release: k8s.helm.v3.Release
    """The Fluent Bit Helm release."""

    def __init__(self, name: str, *, namespaces: Sequence[str], sink: CloudWatchSink | None, monitoring: bool,
                 opts: pulumi.ResourceOptions | None = None) -> None:
        """`sink` None ships to stdout (the local stack). `monitoring` (the stack runs Prometheus; `opts` must then
        depend on the operator's CRDs) adds the chart's ServiceMonitor and admits Prometheus to METRICS_PORT."""
        super().__init__("modelplane:logging:LogShipper", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        namespace = Namespaces(f"{name}-namespace", {NAMESPACE: "privileged"}, opts=child).names[NAMESPACE]
        self.release = k8s.helm.v3.Release(
            f"{name}-fluent-bit", name=RELEASE, chart="fluent-bit", version=versions.FLUENT_BIT_CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=versions.FLUENT_BIT_REPO),
            namespace=namespace, values=fluent_bit_values(namespaces, sink, monitoring), opts=child,
        )
        if sink is not None and sink.opensearch_host is not None:
            self._index_lifecycle(name, namespace, sink, sink.opensearch_host)
        network_policy(f"{name}-kube-api-netpol", policy_name="allow-kube-api", namespace=namespace, opts=child,
                       spec=allow_spec(select(POD_LABELS), egress_rules=[to_kube_api()]))
        if monitoring:
            network_policy(f"{name}-prometheus-netpol", policy_name="allow-prometheus", namespace=namespace,
                           opts=child, spec=allow_spec(select(POD_LABELS), ingress_rules=[from_prometheus(METRICS_PORT)]))
        if sink is not None:
            network_policy(f"{name}-aws-netpol", policy_name="allow-aws", namespace=namespace, opts=child,
                           spec=allow_spec(select(), egress_rules=[to_https(), to_pod_identity()]))
        self.register_outputs({})

    def _index_lifecycle(self, name: str, namespace: pulumi.Input[str], sink: CloudWatchSink,
                         host: pulumi.Input[str]) -> None:
        env: dict[str, pulumi.Input[str]] = {
            IndexLifecycleSettings.env_name("endpoint"): pulumi.Output.concat("https://", host),
            IndexLifecycleSettings.env_name("region"): sink.region,
            IndexLifecycleSettings.env_name("retention_days"): str(sink.retention_days),
        }
        # The chart creates the ServiceAccount the Job runs as, so the Job waits for the release.
        k8s.batch.v1.Job(
            f"{name}-index-lifecycle",
            metadata={"namespace": namespace, "labels": {NAME_LABEL: "index-lifecycle"}},
            spec=manifest_block({
                "backoffLimit": LIFECYCLE_BACKOFF_LIMIT, "activeDeadlineSeconds": LIFECYCLE_DEADLINE_S,
                "ttlSecondsAfterFinished": LIFECYCLE_TTL_S,
                "template": {"spec": {
                    "serviceAccountName": SERVICE_ACCOUNT, "restartPolicy": "Never",
                    "automountServiceAccountToken": False,  # it calls OpenSearch, never the Kubernetes API
                    "securityContext": pod_security_context(),
                    "containers": [{
                        "name": "index-lifecycle", "image": sink.lifecycle_image,
                        "command": ["python3", "-m", "workloads.logging.ism"], "env": env_list(env),
                        "securityContext": container_security_context(),
                        "resources": container_resources("100m", "128Mi", 0),
                    }],
                }},
            }),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release]),
        )


def _section(kind: str, settings: Sequence[tuple[str, str]]) -> str:
    return "\n".join([f"[{kind}]", *(f"    {key} {value}" for key, value in settings)]) + "\n"


def _outputs(sink: CloudWatchSink | None, host: str | None) -> str:
    match = f"{TAG_PREFIX}*"
    if sink is None:
        return _section("OUTPUT", [("Name", "stdout"), ("Match", match), ("Format", "json_lines")])
    text = _section("OUTPUT", [
        ("Name", "cloudwatch_logs"), ("Match", match), ("region", sink.region),
        ("log_group_name", f"{sink.prefix}/{FALLBACK_GROUP}"),
        ("log_group_template", f"{sink.prefix}/$kubernetes['namespace_name']"),
        ("log_stream_prefix", "node-"),
        ("log_stream_template", "$kubernetes['pod_name'].$kubernetes['container_name']"),
        # The groups exist with retention and KMS (LogStore); the role may not create them.
        ("auto_create_group", "Off"), ("Retry_Limit", str(OUTPUT_RETRY_LIMIT)),
    ])
    if host is not None:
        text += "\n" + _section("OUTPUT", [
            ("Name", "opensearch"), ("Match", match), ("Host", host), ("Port", "443"), ("tls", "On"),
            ("tls.verify", "On"), ("AWS_Auth", "On"), ("AWS_Region", sink.region), ("Logstash_Format", "On"),
            # One index per day, named as the index lifecycle policy's pattern expects.
            ("Logstash_Prefix", INDEX_PREFIX), ("Logstash_Prefix_Separator", INDEX_SEPARATOR),
            ("Logstash_DateFormat", INDEX_DATE_FORMAT), ("Suppress_Type_Name", "On"), ("Replace_Dots", "On"),
            ("Retry_Limit", str(OUTPUT_RETRY_LIMIT)),
        ])
    return text


def fluent_bit_values(namespaces: Sequence[str], sink: CloudWatchSink | None,
                      monitoring: bool) -> pulumi.Output[dict[str, Any]]:
    """The chart's values: tail `namespaces`' containers, join Python tracebacks, merge JSON logs, ship to `sink`
    (None: stdout); with `monitoring` the chart's ServiceMonitor."""
    # Container log files are /var/log/containers/<pod>_<namespace>_<container>-<id>.log; tail takes a
    # comma-separated list of patterns (Fluent Bit manual, inputs/tail, "Path").
    paths = ",".join(f"/var/log/containers/*_{ns}_*.log" for ns in sorted(namespaces))
    inputs = _section("INPUT", [
        ("Name", "tail"), ("Path", paths), ("multiline.parser", "docker, cri"), ("Tag", f"{TAG_PREFIX}*"),
        ("Mem_Buf_Limit", "5MB"), ("Skip_Long_Lines", "On"), ("DB", TAIL_DB),
    ])
    # The runtime wraps each line in `log`; the python parser joins a traceback's lines held there.
    filters = _section("FILTER", [
        ("Name", "multiline"), ("Match", f"{TAG_PREFIX}*"), ("multiline.key_content", "log"),
        ("multiline.parser", "python"), ("buffer", "On"), ("flush_ms", str(MULTILINE_FLUSH_MS)),
    ]) + "\n" + _section("FILTER", [
        ("Name", "kubernetes"), ("Match", f"{TAG_PREFIX}*"), ("Kube_Tag_Prefix", f"{TAG_PREFIX}var.log.containers."),
        ("Merge_Log", "On"), ("Keep_Log", "Off"), ("K8S-Logging.Parser", "On"), ("K8S-Logging.Exclude", "On"),
    ])
    host = sink.opensearch_host if sink else None
    return pulumi.Output.from_input(host).apply(lambda resolved: {
        "kind": "DaemonSet",
        "serviceAccount": {"create": True, "name": SERVICE_ACCOUNT},
        "testFramework": {"enabled": False},
        # GPU and system nodes are tainted; their pods' logs matter as much as any.
        "tolerations": [{"operator": "Exists"}],
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
        "config": {"inputs": inputs, "filters": filters, "outputs": _outputs(sink, resolved)},
        **({"serviceMonitor": {"enabled": True}} if monitoring else {}),
    })
