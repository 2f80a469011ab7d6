"""Secrets as files: the server reads its cache URL and API key from mounted Secret files, never needing them in env."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from tests.support.servers import RedisServer
from tests.workloads.serve.support import live_server
from workloads.common.settings import API_KEY_FILE, REDIS_URL_FILE, SECRET_MASK, SettingsError
from workloads.serve.cache import HIT, MISS, STATUS_HEADER
from workloads.serve.settings import ServeSettings

KEY = "k-0123456789abcdef"
"""The API key written to the key file."""


def _secret(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    path.chmod(0o440)  # as the Secret volume mounts it (defaultMode 0440, readable through the pod's fsGroup)
    return path


def test_the_cache_url_and_the_api_key_come_from_their_files(tmp_path: Path) -> None:
    url = _secret(tmp_path, REDIS_URL_FILE, "redis://:p4ss@cache.internal:6379/0\n")
    key = _secret(tmp_path, API_KEY_FILE, f"{KEY}\n")
    settings = ServeSettings.parse([], {"MODELPLANE_SERVE_MODEL_URI": "/models/lm",
                                        "MODELPLANE_SERVE_REDIS_URL_FILE": str(url),
                                        "MODELPLANE_SERVE_API_KEY_FILE": str(key)})
    assert (settings.redis_url, settings.api_key) == ("redis://:p4ss@cache.internal:6379/0", KEY)


def test_a_url_given_itself_wins_over_the_file_for_local_runs(tmp_path: Path) -> None:
    url = _secret(tmp_path, REDIS_URL_FILE, "redis://:p4ss@cache.internal:6379/0")
    settings = ServeSettings.parse(["--redis-url", "redis://127.0.0.1:6379/1", "--redis-url-file", str(url)],
                                   {"MODELPLANE_SERVE_MODEL_URI": "/models/lm"})
    assert settings.redis_url == "redis://127.0.0.1:6379/1"


def test_a_missing_or_empty_secret_file_names_the_flag_and_the_path_but_no_secret(tmp_path: Path) -> None:
    empty = _secret(tmp_path, API_KEY_FILE, "\n")
    with pytest.raises(SettingsError) as caught:
        ServeSettings.parse(["--redis-url-file", str(tmp_path / "absent"), "--api-key-file", str(empty)],
                            {"MODELPLANE_SERVE_MODEL_URI": "/models/lm"})
    assert caught.value.errors == [
        f"--redis-url-file (MODELPLANE_SERVE_REDIS_URL_FILE): cannot read the file (FileNotFoundError: [Errno 2] No "
        f"such file or directory: '{tmp_path / 'absent'}'); mount the Secret that holds it "
        f"(got '{tmp_path / 'absent'}')",
        f"--api-key-file (MODELPLANE_SERVE_API_KEY_FILE): the file is empty; write the value into it (a Secret key "
        f"with the value) (got '{empty}')",
    ]


def _chain(exc: BaseException | None) -> list[BaseException]:
    """`exc` and every exception it was raised from or while handling."""
    found: list[BaseException] = []
    while exc is not None and exc not in found:
        found.append(exc)
        exc = exc.__cause__ or exc.__context__
    return found


def test_a_bad_url_in_the_file_names_the_file_flag_and_path_but_not_the_url(tmp_path: Path) -> None:
    url = _secret(tmp_path, REDIS_URL_FILE, "http://:p4ss@cache.internal:6379/0")
    with pytest.raises(SettingsError) as caught:
        ServeSettings.parse(["--redis-url-file", str(url)], {"MODELPLANE_SERVE_MODEL_URI": "/models/lm"})
    assert caught.value.errors == [f"--redis-url-file (MODELPLANE_SERVE_REDIS_URL_FILE): the file's value: use a "
                                   f"redis://HOST:PORT/DB or rediss:// URL (file {url})"]
    assert [str(exc) for exc in _chain(caught.value) if "p4ss" in str(exc)] == []


def test_a_bad_url_given_itself_is_not_echoed_in_the_error_or_its_cause() -> None:
    with pytest.raises(SettingsError) as caught:
        ServeSettings.parse(["--redis-url", "http://:p4ss@cache.internal:6379/0"],
                            {"MODELPLANE_SERVE_MODEL_URI": "/models/lm"})
    assert caught.value.errors == ["--redis-url (MODELPLANE_SERVE_REDIS_URL): use a redis://HOST:PORT/DB or rediss:// "
                                   "URL (the value is not shown: it may hold a secret)"]
    assert len(_chain(caught.value)) > 1, "the pydantic error stays the cause, for debugging"
    assert [str(exc) for exc in _chain(caught.value) if "p4ss" in str(exc)] == []


def test_the_settings_repr_masks_the_cache_url(tmp_path: Path) -> None:
    url = _secret(tmp_path, REDIS_URL_FILE, "redis://:p4ss@cache.internal:6379/0")
    settings = ServeSettings.parse(["--redis-url-file", str(url)], {"MODELPLANE_SERVE_MODEL_URI": "/models/lm"})
    assert "p4ss" not in repr(settings) and "p4ss" not in str(settings)
    assert f"redis_url={SECRET_MASK!r}" in repr(settings)


def test_a_stale_file_variable_does_not_break_a_run_given_the_url_itself(tmp_path: Path) -> None:
    settings = ServeSettings.parse(["--redis-url", "redis://127.0.0.1:6379/1"],
                                   {"MODELPLANE_SERVE_MODEL_URI": "/models/lm",
                                    "MODELPLANE_SERVE_REDIS_URL_FILE": str(tmp_path / "gone")})
    assert (settings.redis_url, settings.redis_url_file) == ("redis://127.0.0.1:6379/1", None)


def test_the_live_server_authenticates_and_caches_with_secrets_read_from_files(model_uri: str, redis: RedisServer,
                                                                               tmp_path: Path) -> None:
    url = _secret(tmp_path, REDIS_URL_FILE, redis.url)
    key = _secret(tmp_path, API_KEY_FILE, KEY)
    with live_server(model_uri, redis_url_file=url, api_key_file=key) as server:
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60) as client:
            answers = [client.completions.with_raw_response.create(model=server.name, prompt="the quick",
                                                                   max_tokens=8, temperature=0) for _ in "ab"]
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key="wrong", max_retries=0, timeout=60) as stranger, \
                pytest.raises(openai.AuthenticationError):
            stranger.completions.create(model=server.name, prompt="the quick", max_tokens=8, temperature=0)
        # The key was read once at start: a file gone mid-rotation fails no request (the next start reads anew).
        key.unlink()
        with openai.OpenAI(base_url=f"{server.url}/v1", api_key=KEY, max_retries=0, timeout=60) as client:
            later = client.completions.create(model=server.name, prompt="the quick", max_tokens=8, temperature=0)
        assert later.choices[0].text == answers[0].parse().choices[0].text
    assert [answer.headers[STATUS_HEADER] for answer in answers] == [MISS, HIT]
