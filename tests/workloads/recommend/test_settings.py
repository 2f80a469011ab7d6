"""The processor's and load generator's settings: bad values exit 2 naming the flag, the variable and the value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.dockerfile import REPO_ROOT
from workloads.common.settings import SettingsError
from workloads.recommend.settings import LoadgenSettings, ProcessorSettings


def test_processor_settings_come_from_modelplane_recommend_variables() -> None:
    settings = ProcessorSettings.parse([], {"MODELPLANE_RECOMMEND_BOOTSTRAP_SERVERS": "k:9092",
                                            "MODELPLANE_RECOMMEND_REDIS_URL": "redis://r:6379/0",
                                            "MODELPLANE_RECOMMEND_BATCH_SIZE": "64"})
    assert (settings.bootstrap_servers, settings.redis_url, settings.batch_size) == ("k:9092", "redis://r:6379/0", 64)
    assert LoadgenSettings.env_name("rate") == "MODELPLANE_RECOMMEND_LOADGEN_RATE"


def test_every_bad_setting_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        ProcessorSettings.parse(["--redis-url", "http://r", "--recent-items", "0"], {})
    assert info.value.errors == [
        "--bootstrap-servers (MODELPLANE_RECOMMEND_BOOTSTRAP_SERVERS): is required "
        "(Kafka bootstrap servers, HOST:PORT[,HOST:PORT...])",
        "--redis-url (MODELPLANE_RECOMMEND_REDIS_URL): use a redis://HOST:PORT/DB or rediss:// URL "
        "(the value is not shown: it may hold a secret)",
        "--recent-items (MODELPLANE_RECOMMEND_RECENT_ITEMS): Input should be greater than or equal to 1 (got '0')",
    ]


@pytest.mark.parametrize("module", ["workloads.recommend.processor", "workloads.recommend.loadgen"])
def test_the_commands_exit_2_with_the_problem_on_bad_settings(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--events", "0"] if module.endswith("loadgen")
                            else [sys.executable, "-m", module], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 2
    assert "--bootstrap-servers (MODELPLANE_RECOMMEND" in result.stderr
