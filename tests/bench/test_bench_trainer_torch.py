"""Benchmark the PyTorch trainer on this CPU (not part of `make test`; run with `pytest -s`).

- tokens/s and MFU of `tiny` and `small` at seq-len 128, micro-batch 4, through the real trainer;
- 1 -> 2 process DDP scaling (one BLAS thread per process, so 2 processes use 2 cores).

Checkpoint and FSDP benchmarks are in test_bench_trainer_parallel.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import Bucket, events, subprocess_env, torchrun

SEQ_LEN, MICRO_BATCH = 128, 4
RUNS = (("tiny", 40, 10), ("small", 6, 2))
"""(preset, steps, log interval): the last logged window is the steady-state measurement."""


def run_trainer(s3: S3Server, bucket: Bucket, dataset: str, model: str, steps: int, log_every: int, nproc: int,
                local: Path) -> dict[str, Any]:
    args = ["--data", dataset, "--checkpoints", bucket.uri(f"ckpt-{model}-{nproc}"), "--model", model,
            "--seq-len", str(SEQ_LEN), "--micro-batch", str(MICRO_BATCH), "--max-steps", str(steps),
            "--warmup-steps", "1", "--checkpoint-every", "100000", "--log-every", str(log_every),
            "--eval-batches", "0", "--local-dir", str(local),
            # The 1 -> 2 rank scaling figure is DDP's (as before FSDP landed); test_bench_trainer_parallel compares both.
            "--parallel", "ddp"]
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
