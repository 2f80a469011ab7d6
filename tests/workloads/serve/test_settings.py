"""Settings: defaults, env vs flags, and one clear message per invalid value naming its flag."""

from __future__ import annotations

import pytest

from workloads.common.settings import SettingsError
from workloads.serve.__main__ import main
from workloads.serve.settings import ServeSettings, env_name, flag_name


def test_defaults() -> None:
    settings = ServeSettings.parse(["--model-uri", "s3://models/lm/tiny-v3"], environ={})
    assert settings.served_name == "tiny-v3"
    assert (settings.max_batch_size, settings.max_wait_ms, settings.max_queue) == (16, 5.0, 256)
    assert (settings.max_tokens_cap, settings.request_timeout_s, settings.max_body_bytes) == (512, 60.0, 1 << 20)
    assert (settings.redis_url, settings.api_key, settings.port, settings.drain_timeout_s) == (None, None, 8080, 25)


def test_flags_win_over_environment_variables() -> None:
    environ = {"MODELPLANE_SERVE_MODEL_URI": "s3://models/a", "MODELPLANE_SERVE_MAX_BATCH_SIZE": "4",
               "MODELPLANE_SERVE_PORT": "9000"}
    settings = ServeSettings.parse(["--max-batch-size", "8"], environ=environ)
    assert (settings.model_uri, settings.max_batch_size, settings.port) == ("s3://models/a", 8, 9000)


def test_every_invalid_value_is_reported_at_once_naming_flag_and_variable() -> None:
    argv = ["--model-uri", "http://bucket/x", "--max-batch-size", "0", "--max-wait-ms", "soon", "--device", "tpu"]
    with pytest.raises(SettingsError) as error:
        ServeSettings.parse(argv, environ={})
    message = str(error.value)
    assert "--model-uri (MODELPLANE_SERVE_MODEL_URI): use s3://BUCKET/PREFIX or a local folder path " \
           "(got 'http://bucket/x')" in message
    assert "--max-batch-size (MODELPLANE_SERVE_MAX_BATCH_SIZE): Input should be greater than or equal to 1 " \
           "(got '0')" in message
    assert "--max-wait-ms (MODELPLANE_SERVE_MAX_WAIT_MS): Input should be a valid number" in message
    assert "--device (MODELPLANE_SERVE_DEVICE): Input should be 'auto', 'cpu' or 'cuda' (got 'tpu')" in message


def test_model_uri_is_required() -> None:
    with pytest.raises(SettingsError, match=r"--model-uri \(MODELPLANE_SERVE_MODEL_URI\): is required"):
        ServeSettings.parse([], environ={})


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--model-uri", "s3://"], "--model-uri (MODELPLANE_SERVE_MODEL_URI): the S3 URI has no bucket"),
        (["--redis-url", "localhost:6379"], "--redis-url (MODELPLANE_SERVE_REDIS_URL): use a redis://HOST:PORT/DB"),
        (["--model-name", "../etc"], "--model-name (MODELPLANE_SERVE_MODEL_NAME): use 1-128 letters"),
        (["--api-key-env", "NO_SUCH_VARIABLE_FOR_SERVE"],
         "--api-key-env (MODELPLANE_SERVE_API_KEY_ENV): environment variable NO_SUCH_VARIABLE_FOR_SERVE is unset"),
        (["--cache-ttl", "0"], "--cache-ttl (MODELPLANE_SERVE_CACHE_TTL): Input should be greater than or equal to 1"),
        (["--request-timeout-s", "0"], "--request-timeout-s (MODELPLANE_SERVE_REQUEST_TIMEOUT_S): Input should be "
                                       "greater than 0"),
    ],
)
def test_each_rule_has_its_message(argv: list[str], fragment: str) -> None:
    base = [] if argv[0] == "--model-uri" else ["--model-uri", "s3://models/x"]
    with pytest.raises(SettingsError) as error:
        ServeSettings.parse(base + argv, environ={})
    assert fragment in str(error.value)


def test_api_key_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MY_SERVE_KEY", "s3cr3t")
    settings = ServeSettings.parse(["--model-uri", "/models/x", "--api-key-env", "MY_SERVE_KEY"], environ={})
    assert settings.api_key == "s3cr3t"
    assert "s3cr3t" not in repr(settings), "the key itself is never part of the settings"


def test_help_documents_every_flag_with_its_variable() -> None:
    text = " ".join(ServeSettings.build_parser().format_help().split())
    for name in ServeSettings.model_fields:
        flag = "--" + name.replace("_", "-")
        assert flag in text
        assert f"[env MODELPLANE_SERVE_{name.upper()}]" in text


def test_main_exits_2_with_the_message_on_invalid_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--model-uri", "s3://models/x", "--port", "99999"]) == 2
    assert "--port (MODELPLANE_SERVE_PORT): Input should be less than or equal to 65535" in capsys.readouterr().err


def test_module_helpers_name_the_flag_and_variable_infra_sets() -> None:
    assert (flag_name("max_batch_size"), env_name("max_batch_size")) == (
        "--max-batch-size", "MODELPLANE_SERVE_MAX_BATCH_SIZE")
