"""Fluent Bit: pinned chart, values that exist in the chart, JSON logs merged, outputs per target; and the
workloads' log lines are what Merge_Log can parse."""

import fnmatch
import io
import json
import re
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import yaml

from infra import versions
from infra.review.graph import HELM_RELEASE, Graph
from tests.support.conformance import unknown_value_paths
from tests.support.graph import render_variant
from workloads.common.logs import log_event
from workloads.logging.lifecycle import INDEX_PATTERN, IndexLifecycleSettings

JOB = "kubernetes:batch/v1:Job"
VENDORED_VALUES = Path(__file__).resolve().parent / "fluent_bit_values.yaml"
SECTION = re.compile(r"^\[(\w+)\]$")
# Fluent Bit's built-in `cri` parser (conf/parsers.conf of fluent/fluent-bit), in Python's named-group syntax.
CRI_LINE = re.compile(r"^(?P<time>[^ ]+) (?P<stream>stdout|stderr) (?P<logtag>[^ ]*) (?P<log>.*)$")


def _release(graph: Graph) -> dict[str, Any]:
    found = [r.inputs for r in graph.of_type(HELM_RELEASE) if r.inputs["chart"] == "fluent-bit"]
    assert len(found) == 1, f"expected one fluent-bit release, found {len(found)}"
    return found[0]


def parse_classic(text: str) -> list[tuple[str, dict[str, str]]]:
    """Fluent Bit's classic config format: `[SECTION]` headers, then indented `Key Value` lines."""
    sections: list[tuple[str, dict[str, str]]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        header = SECTION.match(line)
        if header:
            sections.append((header.group(1), {}))
            continue
        assert line.startswith("    ") and sections, f"not a classic-mode line: {line!r}"
        key, _, value = line.strip().partition(" ")
        assert key not in sections[-1][1], f"duplicate key {key}"
        sections[-1][1][key] = value.strip()
    return sections


def test_fluent_bit_is_the_pinned_official_chart(prod: Graph) -> None:
    release = _release(prod)
    assert (release["name"], release["namespace"], release["version"]) == ("fluent-bit", "logging", "0.58.1")
    assert release["version"] == versions.FLUENT_BIT_CHART_VERSION
    assert release["repositoryOpts"] == {"repo": "https://fluent.github.io/helm-charts"}
    assert release["values"]["kind"] == "DaemonSet"
    assert release["values"]["serviceAccount"] == {"create": True, "name": "fluent-bit"}
    assert release["values"]["tolerations"] == [{"operator": "Exists"}]


def test_values_conform_to_the_vendored_chart_values(prod: Graph) -> None:
    chart = yaml.safe_load(VENDORED_VALUES.read_text())
    values = _release(prod)["values"]
    assert set(values) <= set(chart), f"top-level keys not vendored: {set(values) - set(chart)}"
    assert unknown_value_paths(values, chart) == []
    # The vendored copy itself is the chart's: its own config keys name the sections the chart templates render.
    assert set(values["config"]) <= {"service", "inputs", "filters", "outputs", "upstream", "customParsers",
                                     "extraFiles"}


def test_conformance_check_catches_a_misspelt_key() -> None:
    chart = yaml.safe_load(VENDORED_VALUES.read_text())
    assert unknown_value_paths({"config": {"output": "x"}, "serviceAccount": {"nmae": "a"}}, chart) == [
        "config.output", "serviceAccount.nmae"]
    assert unknown_value_paths({"config": "[OUTPUT]"}, chart) == ["config (str, chart has dict)"]


def test_kubernetes_filter_merges_json_logs(prod: Graph) -> None:
    sections = parse_classic(_release(prod)["values"]["config"]["filters"])
    assert [(kind, s["Name"]) for kind, s in sections] == [("FILTER", "multiline"), ("FILTER", "kubernetes")]
    settings = sections[-1][1]
    assert settings["Name"] == "kubernetes" and settings["Match"] == "kube.*"
    assert (settings["Merge_Log"], settings["Keep_Log"]) == ("On", "Off")
    assert settings["Kube_Tag_Prefix"] == "kube.var.log.containers."


def test_tail_reads_only_the_platform_namespaces_with_the_cri_parser(prod: Graph) -> None:
    ((kind, settings),) = parse_classic(_release(prod)["values"]["config"]["inputs"])
    assert (kind, settings["Name"], settings["Tag"]) == ("INPUT", "tail", "kube.*")
    assert "cri" in [p.strip() for p in settings["multiline.parser"].split(",")]
    namespaces = {re.fullmatch(r"/var/log/containers/\*_(.+)_\*\.log", p).group(1)  # type: ignore[union-attr]
                  for p in settings["Path"].split(",")}
    assert namespaces == {"inference", "training", "kube-system", "istio-system", "istio-ingress", "monitoring"}
    assert "logging" not in namespaces  # Fluent Bit never reads its own output


def test_prod_ships_to_cloudwatch_per_namespace_and_to_opensearch(prod: Graph) -> None:
    sections = parse_classic(_release(prod)["values"]["config"]["outputs"])
    assert [(kind, s["Name"], s["Match"]) for kind, s in sections] == [
        ("OUTPUT", "cloudwatch_logs", "kube.*"), ("OUTPUT", "opensearch", "kube.*")]
    cloudwatch, search = (s for _, s in sections)
    assert cloudwatch["log_group_template"] == "/modelplane/prod/$kubernetes['namespace_name']"
    assert cloudwatch["log_group_name"] == "/modelplane/prod/unmatched"
    assert (cloudwatch["region"], cloudwatch["auto_create_group"]) == ("us-east-1", "Off")
    assert search["Host"].endswith(".us-east-1.es.amazonaws.com") and search["Host"].startswith("vpc-modelplane-prod-logs-")
    assert {k: search[k] for k in ("Port", "tls", "tls.verify", "AWS_Auth", "AWS_Region")} == {
        "Port": "443", "tls": "On", "tls.verify": "On", "AWS_Auth": "On", "AWS_Region": "us-east-1"}


def test_dev_ships_to_cloudwatch_only(dev: Graph) -> None:
    sections = parse_classic(_release(dev)["values"]["config"]["outputs"])
    assert [s["Name"] for _, s in sections] == ["cloudwatch_logs"]
    assert not [r for r in dev.of_type(JOB) if r.name == "logging-index-lifecycle"]


def test_the_daily_index_fluent_bit_writes_is_one_the_lifecycle_policy_manages(prod: Graph) -> None:
    [search] = [s for _, s in parse_classic(_release(prod)["values"]["config"]["outputs"]) if s["Name"] == "opensearch"]
    assert search["Logstash_Format"] == "On"
    # opensearch.c compose_index_header: prefix, separator, then strftime(Logstash_DateFormat) of the record's UTC time.
    index = search["Logstash_Prefix"] + search["Logstash_Prefix_Separator"] + time.strftime(
        search["Logstash_DateFormat"], time.gmtime(0))
    assert index == "modelplane-1970.01.01" and fnmatch.fnmatchcase(index, INDEX_PATTERN)


def test_prod_index_lifecycle_job_runs_as_the_domain_master_with_the_stack_retention(prod: Graph) -> None:
    job = prod.one(JOB, "logging-index-lifecycle").inputs
    kubernetes_validate.validate(job, "1.35", strict=True)
    pod = job["spec"]["template"]["spec"]
    assert (job["metadata"]["namespace"], pod["serviceAccountName"], pod["restartPolicy"]) == (
        "logging", "fluent-bit", "Never")
    # Bounded and cleaned up: a domain that never answers fails the Job, and a finished one goes after a day.
    assert (job["spec"]["backoffLimit"], job["spec"]["activeDeadlineSeconds"],
            job["spec"]["ttlSecondsAfterFinished"]) == (6, 1200, 86400)
    [container] = pod["containers"]
    assert container["command"] == ["python3", "-m", "workloads.logging.ism"]
    # Our serve image from the stack's ECR repository, by its recorded digest.
    assert container["image"].startswith("123456789012.dkr.ecr.us-east-1.amazonaws.com/modelplane/prod/serve@sha256:")
    env = {e["name"]: e["value"] for e in container["env"]}
    [search] = [s for _, s in parse_classic(_release(prod)["values"]["config"]["outputs"]) if s["Name"] == "opensearch"]
    assert env == {IndexLifecycleSettings.env_name("endpoint"): f"https://{search['Host']}",
                   IndexLifecycleSettings.env_name("region"): "us-east-1",
                   IndexLifecycleSettings.env_name("retention_days"): "365"}
    settings = IndexLifecycleSettings.parse([], env)  # what the Job will read parses
    assert settings.retention_days == 365
    assert container["securityContext"]["readOnlyRootFilesystem"] is True and pod["securityContext"]["runAsNonRoot"]


def test_index_lifecycle_follows_the_logging_retention() -> None:
    graph = render_variant("prod", {"modelplane:logging": {"retentionDays": 90}})
    env = {e["name"]: e["value"] for e in graph.one(JOB, "logging-index-lifecycle").inputs["spec"]["template"]["spec"][
        "containers"][0]["env"]}
    assert env[IndexLifecycleSettings.env_name("retention_days")] == "90"


def test_local_ships_to_stdout_and_its_namespace_validates(stack_graph: Any) -> None:
    local = stack_graph("local")
    sections = parse_classic(_release(local)["values"]["config"]["outputs"])
    assert [(s["Name"], s["Format"]) for _, s in sections] == [("stdout", "json_lines")]
    (namespace,) = [r.inputs for r in local.kubernetes_objects()
                    if r.inputs.get("kind") == "Namespace" and r.inputs["metadata"]["name"] == "logging"]
    kubernetes_validate.validate(namespace, "1.35", strict=True)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_local_without_logging_has_no_fluent_bit() -> None:
    graph = render_variant("local", {"modelplane:logging": None})
    assert not [r for r in graph.of_type(HELM_RELEASE) if r.inputs["chart"] == "fluent-bit"]


def test_workload_log_lines_are_single_line_json_objects_merge_log_can_parse() -> None:
    out = io.StringIO()
    log_event("request_done", stream=out, status=200, error="line one\nline two", path=Path("/models/x"))
    log_event("started", stream=out)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # a newline inside a value never splits a record
    for line in lines:
        # The container runtime writes each stdout line as one CRI log line; `F` marks a full (unsplit) line.
        match = CRI_LINE.match(f"2026-11-29T16:00:00.000000000Z stdout F {line}")
        assert match is not None
        record = json.loads(match.group("log"))
        assert isinstance(record, dict)  # Merge_Log lifts only maps into the record
        assert isinstance(record["ts"], float) and isinstance(record["event"], str)
    first = json.loads(lines[0])
    assert (first["error"], first["path"], first["status"]) == ("line one\nline two", "/models/x", 200)
