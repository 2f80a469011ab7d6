"""Benchmark the PyTorch trainer on this CPU (not part of `make test`; run with `pytest -s`).

- tokens/s and MFU of `tiny` and `small` at seq-len 128, micro-batch 4, through the real trainer;
- 1 -> 2 process DDP scaling (one BLAS thread per process, so 2 processes use 2 cores);
- checkpoint save + upload throughput as a ratio to a raw boto3 upload of the same bytes to the
  same moto endpoint (target >= 0.8).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import Bucket, events, make_corpus, subprocess_env, torchrun
from workloads.common import s3 as s3_io
from workloads.common.uri import S3Uri
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS
from workloads.trainer_torch.checkpoint import Checkpointer, save_torch
from workloads.trainer_torch.distributed import DistContext, rng_state
from workloads.trainer_torch.prepare import prepare

SEQ_LEN, MICRO_BATCH = 128, 4
RUNS = (("tiny", 40, 10), ("small", 6, 2))
"""(preset, steps, log interval): the last logged window is the steady-state measurement."""


@pytest.fixture(scope="module")
def bench_bucket(s3: S3Server) -> Bucket:
    """A fresh bucket on the session's moto server."""
    return Bucket.create("bench-trainer")


@pytest.fixture(scope="module")
def bench_dataset(bench_bucket: Bucket, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The stdlib corpus as one dataset."""
    corpus = make_corpus(tmp_path_factory.mktemp("bench-corpus"))
    prepare(corpus, S3Uri.parse(bench_bucket.uri("data")), shard_tokens=1 << 20, val_fraction=0.0)
    return bench_bucket.uri("data/manifest.json")


def run_trainer(s3: S3Server, bucket: Bucket, dataset: str, model: str, steps: int, log_every: int, nproc: int,
                local: Path) -> dict[str, Any]:
    args = ["--data", dataset, "--checkpoints", bucket.uri(f"ckpt-{model}-{nproc}"), "--model", model,
            "--seq-len", str(SEQ_LEN), "--micro-batch", str(MICRO_BATCH), "--max-steps", str(steps),
            "--warmup-steps", "1", "--checkpoint-every", "100000", "--log-every", str(log_every),
            "--eval-batches", "0", "--local-dir", str(local)]
    proc = torchrun(args, subprocess_env(s3.env()), nproc=nproc, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    start = events(proc.stdout, "start")[0]
    last = events(proc.stdout, "step")[-1]
    return {"model": model, "procs": nproc, "tokens_per_s": last["tokens_per_s"], "mfu": last["mfu"],
            "peak_gflops_per_proc": round(start["peak_flops"] / 1e9, 1)}


@pytest.mark.timeout(3600)
def test_bench_throughput_mfu_and_ddp_scaling(s3: S3Server, bench_bucket: Bucket, bench_dataset: str,
                                              tmp_path: Path) -> None:
    rows = [run_trainer(s3, bench_bucket, bench_dataset, model, steps, log_every, nproc, tmp_path / "local")
            for model, steps, log_every in RUNS for nproc in (1, 2)]
    print(f"\ntrainer throughput on CPU (seq-len {SEQ_LEN}, micro-batch {MICRO_BATCH} per process, 1 thread each):")
    for row in rows:
        print(f"  {row['model']:>5} x{row['procs']}: {row['tokens_per_s']:>9,.0f} tok/s  MFU {100 * row['mfu']:.1f}% "
              f"(of measured {row['peak_gflops_per_proc']} GFLOP/s per process)")
    for model, *_ in RUNS:
        one, two = (r["tokens_per_s"] for r in rows if r["model"] == model)
        print(f"  {model:>5} DDP 1->2 processes: x{two / one:.2f} throughput, {100 * two / (2 * one):.0f}% efficiency")
    print(json.dumps({"trainer_throughput": rows}))
    assert all(row["tokens_per_s"] > 0 for row in rows)


def checkpoint_state(model_name: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Model and optimizer state of `model_name` after one AdamW step (so the moments exist)."""
    torch.manual_seed(0)
    model = GPT(PRESETS[model_name])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randint(0, 256, (1, 8))).sum().backward()
    optimizer.step()
    return model.state_dict(), {"optimizer": optimizer.state_dict(), "scheduler": {}}


@pytest.mark.timeout(3600)
def test_bench_checkpoint_upload_vs_raw_boto3(s3: S3Server, bench_bucket: Bucket, tmp_path: Path) -> None:
    model_state, optim_state = checkpoint_state("small")
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))
    client = s3_io.client()
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    files = {"model.pt": save_torch(model_state, raw_dir / "model.pt"),
             "optim.pt": save_torch(optim_state, raw_dir / "optim.pt")}
    total = sum(entry["bytes"] for entry in files.values())
    raw_times, ckpt_times = [], []
    for attempt in range(2):
        started = time.perf_counter()
        for name in files:
            client.upload_file(str(raw_dir / name), bench_bucket.name, f"raw-{attempt}/{name}")
        raw_times.append(time.perf_counter() - started)
        s3_io.delete_prefix(S3Uri(bench_bucket.name, f"raw-{attempt}/"), client)

        ckpt = Checkpointer(S3Uri(bench_bucket.name, f"ckpt-bench-{attempt}"), tmp_path / "local", ctx, keep_last=1,
                            client=client)
        ckpt_times.append(ckpt.save(1, model=model_state, optim=optim_state, state={"step": 1}, rng=rng_state()))
        s3_io.delete_prefix(S3Uri(bench_bucket.name, f"ckpt-bench-{attempt}/"), client)
    raw, saved = min(raw_times), min(ckpt_times)
    ratio = raw / saved
    print(f"\ncheckpoint of 'small' ({total / 2**20:.0f} MiB model+optimizer): save+upload {saved:.2f}s "
          f"({total / 2**20 / saved:.0f} MiB/s) vs raw boto3 upload {raw:.2f}s ({total / 2**20 / raw:.0f} MiB/s): "
          f"ratio {ratio:.2f} (target >= 0.8)")
    print(json.dumps({"checkpoint_bytes": total, "save_upload_s": saved, "raw_upload_s": raw, "ratio": ratio}))
    assert ratio >= 0.8
