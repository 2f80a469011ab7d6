"""Start real servers (moto S3 server mode, redis-server, vLLM's CPU build) on free loopback ports.

Used by the tests and by `make demo`: each caller starts its own process and stops it
afterwards, so nothing depends on a service started by hand.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from workloads.common.vocab import (
    VLLM_CPU_KVCACHE_SPACE_VAR,
    VLLM_DISABLE_UVICORN_ACCESS_LOG_FLAG,
    VLLM_DO_NOT_TRACK_VAR,
    VLLM_ENFORCE_EAGER_FLAG,
    VLLM_HOST_FLAG,
    VLLM_LOGGING_LEVEL_VAR,
    VLLM_MAX_MODEL_LEN_FLAG,
    VLLM_MODEL_FLAG,
    VLLM_NO_USAGE_STATS_VAR,
    VLLM_PORT_FLAG,
    VLLM_SERVED_MODEL_NAME_FLAG,
)

REPO: Final = Path(__file__).resolve().parents[2]
"""The repository root (the venvs live there)."""


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Block until something accepts connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server on port {port} exited early with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds; always reaps it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class S3Server:
    """A running moto S3 server."""

    endpoint: str
    proc: subprocess.Popen[bytes]

    def env(self) -> dict[str, str]:
        """Environment that points boto3 (and child processes) at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


@contextlib.contextmanager
def s3_server(port: int | None = None) -> Iterator[S3Server]:
    """Run moto in server mode on a free loopback port (or `port`, to restart on the same one)."""
    port = port or free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield S3Server(endpoint=f"http://127.0.0.1:{port}", proc=proc)
    finally:
        stop_process(proc)


@dataclass
class RedisServer:
    """A running redis-server."""

    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        """The redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"


def redis_binary() -> str:
    """The redis-server binary, or a clear error saying how to install it."""
    path = shutil.which("redis-server")
    if path is None:
        raise RuntimeError("redis-server not found: install it with `apt-get install -y redis-server`")
    return path


@contextlib.contextmanager
def redis_server(workdir: Path, port: int | None = None) -> Iterator[RedisServer]:
    """Run a throwaway redis-server (no persistence) on a free loopback port."""
    port = port or free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield RedisServer(port=port, proc=proc)
    finally:
        stop_process(proc)


def aws_test_env(server: S3Server) -> dict[str, str]:
    """`os.environ` plus the variables that point at `server` (for subprocesses)."""
    return {**os.environ, **server.env()}


# vLLM's OpenAI-compatible server, CPU build (`vllm-cpu` 0.31.0 in `.venv-vllm`). Started as
# `python -m vllm.entrypoints.openai.api_server`: the `vllm` console script looks up a `vllm` distribution, and this
# one is `vllm-cpu`. Flags from vllm/engine/arg_utils.py and vllm/entrypoints/launchers/cli_args.py, environment
# variables from vllm/envs.py (vllm-cpu 0.31.0).
VLLM_PYTHON: Final = REPO / ".venv-vllm" / "bin" / "python"
"""The vLLM venv's interpreter; `make setup-vllm` creates it from tests/support/vllm-requirements.txt."""
VLLM_SETUP_HINT: Final = "run `make setup-vllm` to create the vLLM venv (.venv-vllm)"
"""What to do when VLLM_PYTHON is missing."""
SERVED_MODEL: Final = "mini-gpt"
"""The default model name vLLM serves (`--served-model-name`): what clients pass as `model`."""
MAX_MODEL_LEN: Final = 256
"""`--max-model-len`: prompt plus completion tokens; half the `mini` preset's 512 positions, for a smaller KV cache."""
VLLM_STARTUP_TIMEOUT_S: Final = 180.0
"""How long vLLM may take to answer /health (~30 s alone on 2 cores; more while other work runs)."""
VLLM_ENV: Final = {
    # Nothing is fetched at run time: the model and its tokenizer are local files.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    VLLM_NO_USAGE_STATS_VAR: "1",
    VLLM_DO_NOT_TRACK_VAR: "1",
    # GiB of KV cache on CPU (default 4): a 4-layer, 128-wide model needs a few MiB.
    VLLM_CPU_KVCACHE_SPACE_VAR: "1",
    VLLM_LOGGING_LEVEL_VAR: "WARNING",
}
"""Environment added to the caller's for the vLLM server."""


@dataclass
class VllmServer:
    """A running vLLM OpenAI-compatible server."""

    base_url: str
    """http://127.0.0.1:PORT, without `/v1` (the `openai` client's base_url is `base_url + "/v1"`)."""
    model: str
    """The served model name."""
    model_dir: Path
    """The Hugging Face folder it serves."""
    log: Path
    """vLLM's stdout and stderr, for failure messages."""
    proc: subprocess.Popen[bytes]
    """The API server process (leader of its own process group, with the engine core)."""


def log_tail(log: Path, lines: int = 40) -> str:
    """The last `lines` lines of a server log ("" if it does not exist)."""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else ""


def _stop_group(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the server's process group (API server and engine core), then SIGKILL it; always reaps."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
    # The engine core is a child in the same group: kill whatever is left of it too.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float, log: Path | None = None,
                 poll_s: float = 0.2) -> None:
    """Block until GET `url` answers 200; a clear error (with the log's tail) if `proc` exits or time runs out."""
    def tail() -> str:
        return f":\n{log_tail(log)}" if log is not None else ""

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode} before {url} answered{tail()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(poll_s)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:.0f}s{tail()}")


@contextlib.contextmanager
def vllm_server(model_dir: Path, log: Path, *, port: int | None = None, served_model: str = SERVED_MODEL,
                extra_args: tuple[str, ...] = ()) -> Iterator[VllmServer]:
    """Serve `model_dir` with vLLM (CPU, `--enforce-eager`: no graph capture, ~30 s to ready on 2 cores) on
    127.0.0.1 until the block exits; raises with vLLM's log if it never gets healthy."""
    if not VLLM_PYTHON.exists():
        raise RuntimeError(f"{VLLM_PYTHON} not found: {VLLM_SETUP_HINT}")
    port = port or free_port()
    args = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", VLLM_MODEL_FLAG, str(model_dir),
            VLLM_SERVED_MODEL_NAME_FLAG, served_model, VLLM_HOST_FLAG, "127.0.0.1", VLLM_PORT_FLAG, str(port),
            VLLM_MAX_MODEL_LEN_FLAG, str(MAX_MODEL_LEN), VLLM_ENFORCE_EAGER_FLAG, VLLM_DISABLE_UVICORN_ACCESS_LOG_FLAG,
            *extra_args]
    with log.open("wb") as out:
        # Its own session, so teardown can signal the API server and its engine-core child together.
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **VLLM_ENV},
                                start_new_session=True)
    server = VllmServer(base_url=f"http://127.0.0.1:{port}", model=served_model, model_dir=model_dir, log=log, proc=proc)
    try:
        wait_http_ok(f"{server.base_url}/health", server.proc, VLLM_STARTUP_TIMEOUT_S, server.log, poll_s=0.5)
        yield server
    finally:
        _stop_group(proc)
