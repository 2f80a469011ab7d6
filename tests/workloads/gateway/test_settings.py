"""Gateway settings: flags and MODELPLANE_GATEWAY_* variables, every problem named; and the process itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.dockerfile import REPO_ROOT
from tests.support.servers import free_port, wait_for_port
from tests.support.vllm import VllmServer
from workloads.common.settings import SettingsError
from workloads.common.vocab import GATEWAY_ENV_PREFIX
from workloads.gateway.__main__ import main
from workloads.gateway.settings import GatewaySettings, env_name, read_keys


def problems(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(SettingsError) as error:
        GatewaySettings.parse(argv, environ or {})
    return error.value.errors


def test_every_variable_carries_the_gateway_prefix() -> None:
    assert env_name("upstream") == "MODELPLANE_GATEWAY_UPSTREAM"
    assert all(GatewaySettings.env_name(name).startswith(GATEWAY_ENV_PREFIX) for name in GatewaySettings.model_fields)


def test_settings_come_from_the_environment_and_flags_win(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text("k1\n# a comment\nk2, k3\n")
    environ = {env_name("upstream"): "http://vllm:8000/", env_name("api_keys_file"): str(keys),
               env_name("rate_limit_rps"): "5"}
    settings = GatewaySettings.parse(["--rate-limit-rps", "7"], environ)
    assert (settings.upstream, settings.rate_limit_rps, settings.api_keys) == ("http://vllm:8000", 7.0,
                                                                              {"k1", "k2", "k3"})


def test_the_upstream_is_required() -> None:
    assert problems(["--allow-anonymous"]) == [
        "--upstream (MODELPLANE_GATEWAY_UPSTREAM): is required (Base URL of the OpenAI-compatible runtime (vLLM or "
        "our server), such as http://vllm:8000; `/v1/...` is appended)"]


@pytest.mark.parametrize(("upstream", "message"), [
    ("vllm:8000", "use an http:// or https:// URL with a host, such as http://vllm:8000"),
    ("http://vllm:8000/v1", "give the base URL without /v1 (the gateway appends /v1/...)"),
])
def test_a_bad_upstream_is_named_with_its_value(upstream: str, message: str) -> None:
    assert problems(["--upstream", upstream, "--allow-anonymous"]) == [
        f"--upstream (MODELPLANE_GATEWAY_UPSTREAM): {message} (got {upstream!r})"]


def test_api_keys_are_required_unless_anonymous_access_is_asked_for() -> None:
    assert problems(["--upstream", "http://vllm:8000"]) == [
        "no API keys: set --api-keys-file (MODELPLANE_GATEWAY_API_KEYS_FILE) or --api-keys-env, "
        "or pass --allow-anonymous"]


def test_key_sources_that_hold_no_key_are_errors(tmp_path: Path) -> None:
    empty = tmp_path / "keys"
    empty.write_text("# nothing yet\n\n")
    found = problems(["--upstream", "http://vllm:8000", "--api-keys-file", str(empty), "--api-keys-env",
                      "MODELPLANE_TEST_UNSET_VARIABLE", "--api-keys-file", str(tmp_path / "missing")])
    assert len(found) == 2
    assert found[0].startswith("--api-keys-file (MODELPLANE_GATEWAY_API_KEYS_FILE): cannot read the file "
                               "(FileNotFoundError")
    assert found[1] == ("--api-keys-env (MODELPLANE_GATEWAY_API_KEYS_ENV): environment variable "
                        "MODELPLANE_TEST_UNSET_VARIABLE is unset or empty; set it to the key(s) "
                        "(got 'MODELPLANE_TEST_UNSET_VARIABLE')")
    assert problems(["--upstream", "http://vllm:8000", "--api-keys-file", str(empty)]) == [
        f"--api-keys-file (MODELPLANE_GATEWAY_API_KEYS_FILE): the key file holds no key; write one key per line "
        f"(got '{empty}')"]


def test_read_keys_splits_lines_and_commas_and_drops_comments() -> None:
    assert read_keys(" a ,b\n#c\n\nd # e\n") == {"a", "b", "d"}


def test_invalid_settings_exit_2_naming_the_problem(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--upstream", "http://vllm:8000", "--allow-anonymous", "--rate-limit-rps", "-1"]) == 2
    assert "--rate-limit-rps (MODELPLANE_GATEWAY_RATE_LIMIT_RPS): Input should be greater than or equal to 0 " \
           "(got '-1')" in capsys.readouterr().err


def test_the_gateway_process_serves_from_env_and_exits_0_on_sigterm(vllm: VllmServer) -> None:
    port = free_port()
    env = {**os.environ, env_name("upstream"): vllm.base_url, env_name("api_keys_env"): "GATEWAY_KEYS",
           "GATEWAY_KEYS": "sk-a,sk-b", env_name("port"): str(port), env_name("host"): "127.0.0.1",
           env_name("log_level"): "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "workloads.gateway"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc=proc)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-b", max_retries=0)
        assert client.completions.create(model=vllm.model, prompt="x", max_tokens=2).choices[0].text is not None
        assert httpx.get(f"http://127.0.0.1:{port}/health").json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert '"event": "gateway_started"' in output
