"""Alert rules (infra/k8s/rules/*.yaml): promtool-checked, unit-tested per rule, and sensitive to their thresholds.

Runs the real `promtool` (Debian's `prometheus` package, installed by .ci/run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from infra.config.platform import ALERT_SEVERITIES
from infra.k8s.observability import RULES_DIR, load_rule_files
from tests.infra.k8s.test_dashboards import exported_metric_names, metric_names

PROMTOOL = Path("/usr/bin/promtool")
TESTS_DIR = RULES_DIR / "tests"
RULE_FILES = sorted(RULES_DIR.glob("*.yaml"))
TEST_FILES = sorted(TESTS_DIR.glob("*.yaml"))
SEVERITIES = set(ALERT_SEVERITIES)
"""The severities alert routing knows (infra/k8s/alerting.py): a rule with another one would be routed as a warning."""

# alert → (text in its expr or `for`, replacement): each breaks the rule's threshold or window, and the
# rule's promtool unit test must then fail.
MUTATIONS: dict[str, tuple[str, str]] = {
    "NodeCPUHigh": ("> 0.9", "> 0.96"),
    "InferenceLatencyP99High": ("> 0.5", "> 1"),
    "InferenceTimeToFirstTokenHigh": (") > 2", ") > 3"),
    "InferenceErrorRateHigh": ("> 0.01", "> 0.05"),
    "InferenceCacheHitRatioCollapsed": ("< 0.5 *", "< 0.1 *"),
    "GPUIdleWhileAllocated": (") < 5", ") < 1"),
    # Dropping the change test makes a sticky XID page forever (the quiet case at 19m and 55m fails).
    "GPUXidError": (" and changes(DCGM_FI_DEV_XID_ERRORS[15m]) > 0", ""),
    "GPUTemperatureHigh": ("> 85", "> 95"),
    "TrainingStalled": ("[30m]", "[60m]"),
    "TrainingCheckpointStale": ("2 *", "3 *"),
    "LLMTimeToFirstTokenHigh": (") > 2", ") > 5"),
    "LLMTimePerOutputTokenHigh": (") > 0.2", ") > 0.5"),
    "LLMRequestsWaiting": ("> 20", "> 50"),
    "LLMKVCacheFull": ("> 0.95", "> 0.99"),
    "LLMGatewayUpstreamErrors": ("> 0.01", "> 0.05"),
    "LLMGatewayCacheErrors": ("> 0.1", "> 1"),
    "RecommendConsumerLagGrowing": (") > 0", ") < 0"),
    "RecommendFeatureFreshnessOverBudget": ("histogram_quantile(0.99", "histogram_quantile(0.5"),
    "RecommendProcessorErrors": ("> 10", "> 1000"),
    "RecommendDeadLetters": ("> 0.01", "> 0.5"),
    "RecommendLatencyP99High": (") > 0.25", ") > 1"),
    "FluentBitDroppingRecords": ("> 0", "> 100"),
    "FluentBitOutputErrors": ("> 0", "> 10"),
}

# Further mutations for the edges a rule's threshold does not cover: (alert, text in its expr, replacement).
EDGE_MUTATIONS: list[tuple[str, str, str]] = [
    ("GPUXidError", "DCGM_FI_DEV_XID_ERRORS > 0 and", "DCGM_FI_DEV_XID_ERRORS > 50 and"),
    # Counting probe 503s (a pod loading its model) as failed requests alerts on a service nobody called.
    ("InferenceErrorRateHigh", '{route!~"/metrics|/v2/health/.*", status=~"5.."}', '{status=~"5.."}'),
    # Judging the OpenAI generation routes by full-request latency fires on every language model (a completion's
    # duration is its whole generation).
    ("InferenceLatencyP99High", "|/v1/completions|/v1/chat/completions", ""),
    # Without `> 0` a job that never checkpoints (gauge at 0) alerts.
    ("TrainingCheckpointStale", "and modelplane_train_last_checkpoint_timestamp_seconds > 0",
     "and modelplane_train_last_checkpoint_timestamp_seconds"),
    # Without the floor a job that checkpoints every 2 minutes alerts after 4.
    ("TrainingCheckpointStale", ", 900)", ", 60)"),
    # Judging a job that exports its interval by the fixed 30 minutes too pages on every slow-cadence job.
    ("TrainingCheckpointStale", "unless modelplane_train_checkpoint_expected_interval_seconds > 0", ""),
    # An interval not measured yet (0) is unknown, not "expect one every 0 s": it falls back to 30 minutes.
    ("TrainingCheckpointStale", "2 * (modelplane_train_checkpoint_expected_interval_seconds > 0)",
     "2 * modelplane_train_checkpoint_expected_interval_seconds"),
    # The fallback's 30 minutes.
    ("TrainingCheckpointStale", "> 1800", "> 3600"),
]


@pytest.fixture(scope="module")
def promtool() -> Path:
    """The promtool binary, or a failure that says how to install it."""
    found = PROMTOOL if PROMTOOL.exists() else Path(shutil.which("promtool") or "/nonexistent")
    if not found.exists():
        pytest.fail("promtool not found: install Debian's prometheus package (`apt-get install -y prometheus`, "
                    "as .ci/run does); the alert-rule tests need the real binary")
    return found


def _run(promtool: Path, *args: str | Path, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(promtool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120)


def _alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for groups in load_rule_files().values() for group in groups
            for rule in group["rules"] if "alert" in rule}


def test_promtool_check_rules_accepts_every_rule_file(promtool: Path) -> None:
    result = _run(promtool, "check", "rules", *RULE_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_pass(promtool: Path) -> None:
    result = _run(promtool, "test", "rules", *TEST_FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_required_alerts_exist() -> None:
    assert set(_alerts()) == set(MUTATIONS)


def test_every_alert_has_a_firing_and_a_quiet_unit_test_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    assert firing == set(_alerts()), f"no firing case: {set(_alerts()) - firing}"
    assert quiet == set(_alerts()), f"no quiet case: {set(_alerts()) - quiet}"


def test_every_alert_has_a_severity_summary_description_and_runbook() -> None:
    runbooks = (RULES_DIR / "runbooks.md").read_text()
    anchors = {re.sub(r"[^a-z0-9-]", "", line[3:].strip().lower()) for line in runbooks.splitlines()
               if line.startswith("## ")}
    for name, rule in _alerts().items():
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        assert annotations["runbook_url"].endswith(f"runbooks.md#{name.lower()}"), name
        assert name.lower() in anchors, f"{name}: no '## {name}' section in infra/k8s/rules/runbooks.md"


def test_rules_query_only_exported_metrics() -> None:
    known = exported_metric_names()
    unknown = {name: sorted(metric_names(rule["expr"]) - known) for name, rule in _alerts().items()
               if metric_names(rule["expr"]) - known}
    assert not unknown, f"rules query metrics nobody exports: {unknown}"


def test_every_rule_file_has_a_unit_test_file() -> None:
    assert {p.stem for p in RULE_FILES} == {p.stem.removesuffix("_test") for p in TEST_FILES}


@pytest.mark.parametrize("alert", sorted(MUTATIONS))
def test_breaking_a_threshold_fails_the_unit_tests(alert: str, promtool: Path, tmp_path: Path) -> None:
    _assert_mutation_fails(alert, *MUTATIONS[alert], promtool, tmp_path)


@pytest.mark.parametrize(("alert", "old", "new"), EDGE_MUTATIONS, ids=[f"{a}:{o}" for a, o, _ in EDGE_MUTATIONS])
def test_breaking_an_edge_fails_the_unit_tests(alert: str, old: str, new: str, promtool: Path,
                                               tmp_path: Path) -> None:
    _assert_mutation_fails(alert, old, new, promtool, tmp_path)


def _assert_mutation_fails(alert: str, old: str, new: str, promtool: Path, tmp_path: Path) -> None:
    shutil.copytree(TESTS_DIR, tmp_path / "tests")
    owner = None
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("alert") == alert:
                    assert rule["expr"].count(old) == 1, f"{alert}: {old!r} must occur once in its expr"
                    rule["expr"] = rule["expr"].replace(old, new)
                    owner = path
        (tmp_path / path.name).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    assert owner is not None
    mutated = _run(promtool, "test", "rules", Path("tests") / f"{owner.stem}_test.yaml", cwd=tmp_path)
    assert mutated.returncode != 0, f"{alert}: promtool still passes with {old!r} -> {new!r}:\n{mutated.stdout}"
    assert alert in mutated.stdout + mutated.stderr


def test_unmutated_copies_still_pass(promtool: Path, tmp_path: Path) -> None:
    # The control for the mutation test: a YAML round-trip alone must not break anything.
    shutil.copytree(TESTS_DIR, tmp_path / "tests")
    for path in RULE_FILES:
        doc = yaml.safe_load(path.read_text())
        (tmp_path / path.name).write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    result = _run(promtool, "test", "rules", *(Path("tests") / p.name for p in TEST_FILES), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
