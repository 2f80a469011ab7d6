"""The recommendation processor and service read the features' Redis URL from a mounted Secret file."""

from __future__ import annotations

from pathlib import Path

import pytest

from workloads.common.settings import REDIS_URL_FILE, SettingsError
from workloads.recommend.model_settings import ServiceSettings
from workloads.recommend.settings import ProcessorSettings

URL = "rediss://:t0ken@features.cache:6379/0"
"""The URL with its password, as the Secret holds it."""


def _url_file(folder: Path) -> Path:
    path = folder / REDIS_URL_FILE
    path.write_text(f"{URL}\n", encoding="utf-8")
    return path


def test_the_processor_reads_the_url_from_its_file(tmp_path: Path) -> None:
    settings = ProcessorSettings.parse([], {ProcessorSettings.env_name("bootstrap_servers"): "b:9092",
                                            ProcessorSettings.env_name("redis_url_file"): str(_url_file(tmp_path))})
    assert settings.redis_url == URL


def test_the_service_reads_the_url_from_its_file(tmp_path: Path) -> None:
    settings = ServiceSettings.parse(["--model-uri", "/models/rec", "--redis-url-file", str(_url_file(tmp_path))], {})
    assert settings.redis_url == URL


def test_the_processor_with_an_unreadable_file_names_the_file_not_a_missing_url(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as caught:
        ProcessorSettings.parse(["--redis-url-file", str(tmp_path)], {ProcessorSettings.env_name("bootstrap_servers"):
                                                                     "b:9092"})
    (problem,) = caught.value.errors
    assert problem.startswith("--redis-url-file (MODELPLANE_RECOMMEND_REDIS_URL_FILE): cannot read the file "
                              "(IsADirectoryError")


def test_the_processor_without_a_url_says_it_may_come_from_a_file() -> None:
    with pytest.raises(SettingsError) as caught:
        ProcessorSettings.parse([], {ProcessorSettings.env_name("bootstrap_servers"): "b:9092"})
    assert caught.value.errors == [
        "--redis-url (MODELPLANE_RECOMMEND_REDIS_URL): is required (Redis holding the features "
        "(redis://HOST:PORT/DB)); or set --redis-url-file (MODELPLANE_RECOMMEND_REDIS_URL_FILE) to a file holding it"]
