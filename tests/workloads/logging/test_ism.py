"""The index lifecycle Job against a loopback ISM API that checks each request's SigV4 signature."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from botocore.credentials import Credentials

from tests.support.dockerfile import REPO_ROOT
from tests.workloads.logging.fake_ism import FakeDomain
from workloads.logging import ism
from workloads.logging.lifecycle import (
    INDEX_DATE_FORMAT,
    INDEX_PATTERN,
    INDEX_PREFIX,
    INDEX_SEPARATOR,
    POLICY_ID,
    IndexLifecycleSettings,
    retention_policy,
)

CREDENTIALS = Credentials("AKIDLOOPBACK", "loopback-secret", "loopback-session-token")
REGION = "eu-west-1"
POLICY_PATH = f"/_plugins/_ism/policies/{POLICY_ID}"


@pytest.fixture
def domain() -> Iterator[tuple[FakeDomain, str]]:
    fake = FakeDomain(CREDENTIALS, REGION, indices={"modelplane-2026.11.27": None, "modelplane-2026.11.28": "old",
                                                     ".opendistro-security": None})
    server, url = fake.serve()
    yield fake, url
    server.shutdown()
    server.server_close()


def settings(url: str, days: int = 30) -> IndexLifecycleSettings:
    return IndexLifecycleSettings(endpoint=url, region=REGION, retention_days=days)


def test_policy_deletes_indices_older_than_the_retention() -> None:
    policy = retention_policy(14)["policy"]
    assert policy["default_state"] == "hot"
    [hot, delete] = policy["states"]
    assert hot["transitions"] == [{"state_name": "delete", "conditions": {"min_index_age": "14d"}}]
    assert delete == {"name": "delete", "actions": [{"delete": {}}], "transitions": []}
    assert policy["ism_template"] == [{"index_patterns": [INDEX_PATTERN], "priority": 100}]


def test_the_pattern_matches_the_daily_index_fluent_bit_writes_and_nothing_else() -> None:
    todays = f"{INDEX_PREFIX}{INDEX_SEPARATOR}{time.strftime(INDEX_DATE_FORMAT, time.gmtime())}"
    assert fnmatch.fnmatchcase(todays, INDEX_PATTERN)
    assert not any(fnmatch.fnmatchcase(name, INDEX_PATTERN)
                   for name in (".opendistro-security", ".kibana_1", "logstash-2026.11.29", "modelplane"))


def test_first_run_creates_the_policy_and_applies_it_to_every_log_index(domain) -> None:
    fake, url = domain
    assert ism.run(settings(url), CREDENTIALS) == {"policy": "created", "added": 1, "changed": 2, "in_transition": []}
    assert all(request.signature_ok for request in fake.requests)
    assert [(r.method, r.path) for r in fake.requests] == [
        ("GET", POLICY_PATH), ("PUT", POLICY_PATH), ("POST", "/_plugins/_ism/add/modelplane-*"),
        ("POST", "/_plugins/_ism/change_policy/modelplane-*")]
    assert json.loads(fake.requests[1].body) == retention_policy(30)
    assert fake.indices == {"modelplane-2026.11.27": POLICY_ID, "modelplane-2026.11.28": POLICY_ID,
                            ".opendistro-security": None}


def test_a_rerun_updates_the_policy_with_the_sequence_numbers_it_read(domain) -> None:
    fake, url = domain
    ism.run(settings(url, 30), CREDENTIALS)
    assert ism.run(settings(url, 90), CREDENTIALS)["policy"] == "updated"
    put = [r for r in fake.requests if r.method == "PUT"][-1]
    assert put.path == f"{POLICY_PATH}?if_seq_no=7&if_primary_term=1" and put.signature_ok
    assert fake.policies[POLICY_ID]["states"][0]["transitions"][0]["conditions"] == {"min_index_age": "90d"}


def test_a_request_signed_with_other_credentials_is_refused_and_the_job_fails(domain) -> None:
    fake, url = domain
    wrong = Credentials("AKIDLOOPBACK", "another-secret", "loopback-session-token")
    with pytest.raises(ism.LifecycleError, match="HTTP 403"):
        ism.run(settings(url), wrong)
    assert [r.signature_ok for r in fake.requests] == [False]


def test_main_signs_with_the_default_credential_chain_and_exits_0(domain, monkeypatch, tmp_path, capsys) -> None:
    fake, url = domain
    for key, value in {"AWS_ACCESS_KEY_ID": CREDENTIALS.access_key, "AWS_SECRET_ACCESS_KEY": CREDENTIALS.secret_key,
                       "AWS_SESSION_TOKEN": CREDENTIALS.token, "AWS_CONFIG_FILE": str(tmp_path / "none"),
                       "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                       IndexLifecycleSettings.env_name("endpoint"): url,
                       IndexLifecycleSettings.env_name("region"): REGION,
                       IndexLifecycleSettings.env_name("retention_days"): "7"}.items():
        monkeypatch.setenv(key, value)
    assert ism.main([]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["event"] == "index_lifecycle_applied"
    assert fake.policies[POLICY_ID]["states"][0]["transitions"][0]["conditions"] == {"min_index_age": "7d"}


def test_an_index_the_policy_cannot_reach_fails_the_job_naming_it(domain) -> None:
    fake, url = domain
    fake.closed.add("modelplane-2026.11.27")
    with pytest.raises(ism.LifecycleError, match=r"modelplane-2026\.11\.27: This index is closed"):
        ism.run(settings(url), CREDENTIALS)


def test_a_denied_request_exits_1_naming_the_call(domain, monkeypatch, capsys) -> None:
    fake, url = domain
    fake.deny = 403
    monkeypatch.setattr(ism.botocore.session, "get_session", lambda: _Session())
    assert ism.main(["--endpoint", url, "--region", REGION, "--retention-days", "30"]) == 1
    assert f"GET {POLICY_PATH}: HTTP 403" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "message"), [
    ("--endpoint", "vpc-logs.es.amazonaws.com", "--endpoint (MODELPLANE_INDEX_LIFECYCLE_ENDPOINT): use the domain's"),
    ("--retention-days", "0", "--retention-days (MODELPLANE_INDEX_LIFECYCLE_RETENTION_DAYS)"),
])
def test_bad_settings_exit_2_naming_the_flag(flag, value, message, capsys) -> None:
    args = {"--endpoint": "https://vpc-logs.es.amazonaws.com", "--region": REGION, "--retention-days": "30"}
    args[flag] = value
    assert ism.main([part for pair in args.items() for part in pair]) == 2
    assert message in capsys.readouterr().err


class _Session:
    def get_credentials(self) -> Credentials:
        return CREDENTIALS


def test_infra_reads_the_names_and_settings_without_botocore_or_httpx() -> None:
    blocked = "import sys; sys.modules.update(dict.fromkeys(['botocore', 'boto3', 'httpx'])); "
    result = subprocess.run([sys.executable, "-c", blocked + "import workloads.logging.lifecycle"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
