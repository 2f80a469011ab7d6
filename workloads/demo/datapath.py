"""`make demo`: the platform's data path on one machine, with no cloud, Docker or Kubernetes.

data → 2-process torchrun training → checkpoints in S3 → export → serving → Redis cache → metrics
→ the same export on vLLM (CPU) behind the caching gateway (when `.venv-vllm` exists: `make setup-vllm`)
→ real-time recommendation: events on a Kafka-protocol broker → stream processor → Redis features → the
  recommender (trained from logged interactions in S3) behind the gateway, following a user's new events
→ (when installed) Prometheus evaluating the repo's alert rules against the live exporters.

Every service runs on a free loopback port and is stopped on exit, Ctrl-C included; every file
lives in one temporary folder that is removed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from workloads.common import metrics
from workloads.common.uri import S3Uri
from workloads.demo.devservers import REPO, free_port, redis_server, s3_server, stop_process, wait_for_port, wait_http_ok
from workloads.demo.llm import LlmStep, serve_with_vllm
from workloads.demo.recommend import RecommendStep, recommend_path

RULES_DIR = REPO / "infra" / "k8s" / "rules"
CORPUS_PACKAGES = ("json", "email", "http", "logging")
"""Stdlib packages whose source is the demo corpus: real text that ships with Python."""
MODEL_PRESET = "mini"
"""The preset trained: `mini` has 32-wide heads (vLLM's CPU attention rejects `tiny`'s 16)."""
SEQ_LEN = 64
"""Training sequence length: short, so 300 steps of `mini` take 30-50 s on 2 cores (measured)."""
EXPORT_URI = "s3://models/demo"
"""Where the trainer writes the Hugging Face export that both servers load."""


class Story:
    """Prints numbered steps with their durations."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.step = 0

    @contextlib.contextmanager
    def chapter(self, title: str) -> Iterator[None]:
        """Print `title`, run the block, then its duration."""
        self.step += 1
        print(f"\n[{self.step}] {title}", flush=True)
        began = time.perf_counter()
        yield
        print(f"    done in {time.perf_counter() - began:.1f}s", flush=True)

    def say(self, line: str) -> None:
        """An indented detail line."""
        print(f"    {line}", flush=True)

    def total(self) -> float:
        """Seconds since the story began."""
        return time.perf_counter() - self.started


def _http(method: str, url: str, body: dict[str, Any] | None = None, timeout: float = 60) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,  # noqa: S310 - loopback http only
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _metric_value(text: str, name: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # 30 s: the server drains in-flight requests before it exits.
    stop_process(proc, timeout=30)


def _corpus(folder: Path) -> int:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    count = 0
    for package in CORPUS_PACKAGES:
        for source in sorted((stdlib / package).glob("*.py")):
            target = folder / f"{package}-{source.name}.txt"
            target.write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
            count += 1
    return count


@dataclass
class DemoResult:
    """What the story observed (the e2e test asserts on it)."""

    losses: list[float] = field(default_factory=list)
    """Training loss at each logged step."""
    checkpoints: int = 0
    """Committed checkpoints found in S3."""
    completions: list[tuple[str, str]] = field(default_factory=list)
    """(source, text) per completion request: source is `model` or `cache hit`."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Selected metric values scraped from the server at the end."""
    rule_states: dict[str, int] = field(default_factory=dict)
    """Alert-rule state counts from Prometheus (empty when Prometheus is not installed)."""
    llm: LlmStep | None = None
    """The vLLM-behind-the-gateway chat step (None when `.venv-vllm` is missing)."""
    recommend: RecommendStep | None = None
    """The real-time recommendation step."""


def run(steps: int, workdir: Path, story: Story) -> DemoResult:
    """Run the whole story inside `workdir`."""
    result = DemoResult()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    with contextlib.ExitStack() as stack:
        with story.chapter("Start an S3 endpoint (moto server mode) and redis-server on loopback"):
            s3 = stack.enter_context(s3_server())
            redis = stack.enter_context(redis_server(workdir))
            env.update(s3.env())
            os.environ.update(s3.env())
            client = boto3.client("s3", endpoint_url=s3.endpoint)
            for bucket in ("datasets", "checkpoints", "models"):
                client.create_bucket(Bucket=bucket)
            story.say(f"S3 {s3.endpoint}   Redis {redis.url}")

        with story.chapter("Prepare a corpus: Python's own stdlib source, byte-level tokens, sharded to S3"):
            corpus = workdir / "corpus"
            corpus.mkdir()
            story.say(f"{_corpus(corpus)} files from {', '.join(CORPUS_PACKAGES)}")
            subprocess.run([sys.executable, "-m", "workloads.trainer_torch.prepare", "--src", str(corpus),
                            "--out", "s3://datasets/demo", "--val-fraction", "0.05"], env=env, check=True,
                           stdout=subprocess.DEVNULL)

        with story.chapter(f"Train the {MODEL_PRESET} LM with torchrun --nproc_per_node 2 (FSDP2/gloo), {steps} steps"):
            log = workdir / "train.log"
            with log.open("wb") as handle:
                trained = subprocess.run([
                    sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                    "-m", "workloads.trainer_torch", "--data", "s3://datasets/demo/manifest.json",
                    "--checkpoints", "s3://checkpoints/demo", "--export", EXPORT_URI,
                    "--model", MODEL_PRESET, "--seq-len", str(SEQ_LEN), "--micro-batch", "8", "--max-steps", str(steps),
                    "--warmup-steps", str(max(1, steps // 10)), "--lr", "3e-3",
                    "--checkpoint-every", str(max(1, steps // 2)), "--log-every", str(max(1, steps // 5)),
                ], env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
            result.losses = _losses(log)
            if trained.returncode != 0 or not result.losses:
                print(log.read_text()[-4000:], file=sys.stderr)
                raise RuntimeError(f"training failed with exit code {trained.returncode}")
            story.say(f"loss {result.losses[0]:.3f} → {result.losses[-1]:.3f}")
            keys = [o["Key"] for o in client.list_objects_v2(Bucket="checkpoints").get("Contents", [])]
            result.checkpoints = sum(1 for k in keys if k.endswith("/COMMIT"))
            story.say(f"{result.checkpoints} committed checkpoint(s) in s3://checkpoints/demo")

        with story.chapter("Export found in S3; start the inference server on it"):
            exported = [o["Key"] for o in client.list_objects_v2(Bucket="models").get("Contents", [])]
            story.say(f"s3://models/: {', '.join(exported)}")
            port = free_port()
            server = subprocess.Popen([
                sys.executable, "-m", "workloads.serve", "--model-uri", EXPORT_URI, "--model-name", "demo",
                "--redis-url", redis.url, "--port", str(port), "--host", "127.0.0.1",
            ], env=env, stdout=subprocess.DEVNULL, stderr=(workdir / "serve.log").open("wb"))
            stack.callback(_stop, server)
            base = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{base}/v2/health/ready", server, 120, workdir / "serve.log", poll_s=0.5)
            story.say(f"ready at {base}")

        with story.chapter("Two identical completions: the second comes from the Redis cache"):
            body = {"model": "demo", "prompt": "import ", "max_tokens": 48, "temperature": 0}
            for attempt in ("first", "repeat"):
                before = _metric_value(_http("GET", f"{base}/metrics")[1].decode(), metrics.INFERENCE_CACHE_HITS_TOTAL)
                began = time.perf_counter()
                status, raw = _http("POST", f"{base}/v1/completions", body)
                took = (time.perf_counter() - began) * 1000
                after = _metric_value(_http("GET", f"{base}/metrics")[1].decode(), metrics.INFERENCE_CACHE_HITS_TOTAL)
                if status != 200:
                    raise RuntimeError(f"completion failed: HTTP {status} {raw[:300]!r}")
                text = json.loads(raw)["choices"][0]["text"]
                source = "cache hit" if after > before else "model"
                result.completions.append((source, text))
                story.say(f"{attempt}: {took:.1f} ms from {source}: {text!r}")

        with story.chapter("Scrape /metrics"):
            text = _http("GET", f"{base}/metrics")[1].decode()
            for name in (metrics.INFERENCE_REQUESTS_TOTAL, metrics.INFERENCE_CACHE_HITS_TOTAL,
                         metrics.INFERENCE_CACHE_MISSES_TOTAL, metrics.INFERENCE_GENERATED_TOKENS_TOTAL):
                result.metrics[name] = _metric_value(text, name)
                story.say(f"{name} = {result.metrics[name]:g}")

        with story.chapter("The same export on vLLM (CPU) behind the caching gateway: a chat completion, then its repeat"):
            result.llm = serve_with_vllm(story.say, workdir, S3Uri.parse(EXPORT_URI), redis.port)

        with story.chapter("Real-time recommendation: Kafka events → processor → Redis → recommender behind the gateway"):
            result.recommend = recommend_path(story.say, workdir, env, redis.port, stack)

        targets = [f"127.0.0.1:{port}", *result.recommend.scrape_targets]
        result.rule_states = _prometheus(story, workdir, targets, stack)
    print(f"\nAll services stopped. The whole story took {story.total():.0f}s.")
    return result


def _losses(log: Path) -> list[float]:
    losses = []
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == "step" and "loss" in record:
                losses.append(float(record["loss"]))
    return losses


def _evaluated_rule_groups(port: int, timeout_s: float) -> list[dict[str, Any]]:
    """Prometheus' rule groups once every group has been evaluated at least once (or the timeout passes)."""
    deadline = time.monotonic() + timeout_s
    while True:
        status, raw = _http("GET", f"http://127.0.0.1:{port}/api/v1/rules")
        groups: list[dict[str, Any]] = json.loads(raw)["data"]["groups"] if status == 200 else []
        # An unevaluated group reports the zero time; waiting for it beats sleeping for a guessed number of rounds.
        if groups and all(not g.get("lastEvaluation", "0001").startswith("0001") for g in groups):
            return groups
        if time.monotonic() > deadline:
            return groups
        time.sleep(0.2)


def _prometheus(story: Story, workdir: Path, targets: list[str], stack: contextlib.ExitStack) -> dict[str, int]:
    binary = shutil.which("prometheus")
    rule_files = sorted(str(p) for p in RULES_DIR.glob("*.yaml")) if RULES_DIR.is_dir() else []
    if binary is None or not rule_files:
        story.say("(prometheus not installed: `apt-get install -y prometheus` adds the alert-rule step)")
        return {}
    with story.chapter("Prometheus evaluates the repo's alert rules against the live servers"):
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": rule_files,
            "scrape_configs": [{"job_name": "modelplane", "static_configs": [{"targets": targets}]}],
        }
        (workdir / "prometheus.yml").write_text(json.dumps(config))
        port = free_port()
        proc = subprocess.Popen([binary, f"--config.file={workdir / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack.callback(_stop, proc)
        wait_for_port(port, proc=proc)
        groups = _evaluated_rule_groups(port, timeout_s=60)
        states: dict[str, int] = {}
        for group in groups:
            for rule in group["rules"]:
                states[rule.get("state", "recording")] = states.get(rule.get("state", "recording"), 0) + 1
        story.say(f"{sum(states.values())} rules in {len(groups)} groups: "
                  + ", ".join(f"{n} {state}" for state, n in sorted(states.items())))
    return states


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `python -m workloads.demo`."""
    parser = argparse.ArgumentParser(prog="python -m workloads.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="Training steps (default 300, about a minute).")
    args = parser.parse_args(argv)
    if args.steps < 2:
        parser.error(f"--steps: must be >= 2 (got {args.steps})")
    for tool, package in (("redis-server", "redis-server"),):
        if shutil.which(tool) is None:
            print(f"error: {tool} not found; install it with: sudo apt-get install -y {package}", file=sys.stderr)
            return 2
    story = Story()
    workdir = Path(tempfile.mkdtemp(prefix="modelplane-demo-"))
    try:
        run(args.steps, workdir, story)
    except KeyboardInterrupt:
        print("\ninterrupted: stopping every service", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0

