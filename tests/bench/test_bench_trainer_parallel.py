"""Benchmark parallelism and checkpoints of the PyTorch trainer on this CPU (not in `make test`; `pytest -s`).

- DDP vs FSDP at 2 ranks: tokens/s of `mini` through the real trainer (one BLAS thread per rank) and each
  rank's peak resident memory (VmHWM);
- 1 -> 2 rank scaling of the same run (target >= 1.6x), 1 rank alternated with DDP and FSDP at 2 ranks;
- the step loop's stall per checkpoint of `small` (124M, model + AdamW state) with `--async-checkpoint`
  against a synchronous save (target: async < 10% of sync), and the synchronous DCP save against a
  raw boto3 upload of the same bytes to the same moto endpoint.
"""

from __future__ import annotations

import io
import json
import statistics
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.support.servers import S3Server
from tests.workloads.trainer_torch.support import Bucket, events, subprocess_env, torchrun
from workloads.common import s3 as s3_io
from workloads.common.uri import S3Uri
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS
from workloads.trainer_torch.checkpoint import Checkpointer
from workloads.trainer_torch.distributed import DistContext, rng_state

CTX = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class PeakRss:
    """Peak resident memory (VmHWM, MiB) by RANK of the trainer processes whose command line holds `marker`.

    Sampled from /proc every 0.1 s while the run lasts: VmHWM is the kernel's own high-water mark, so a
    sample only misses growth in a rank's last 0.1 s before it exits.
    """

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.peaks: dict[int, float] = {}
        self._ranks: dict[Path, int] = {}
        self._seen: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _classify(self, proc: Path) -> None:
        """Remember `proc` as a rank of this run, or as unrelated; the launcher and its children before their
        exec (which still show the launcher's command line) stay unclassified, to be looked at again."""
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        if self.marker.encode() not in cmdline:
            self._seen.add(proc)
        elif b"torch.distributed.run" not in cmdline:
            self._ranks[proc] = next(int(item[len(b"RANK="):]) for item in
                                     (proc / "environ").read_bytes().split(b"\0") if item.startswith(b"RANK="))
            self._seen.add(proc)

    def _sample(self) -> None:
        # Each pid is classified once, so a tick costs a /proc listing plus one status read per rank.
        while not self._stop.wait(0.1):
            for proc in Path("/proc").glob("[0-9]*"):
                try:
                    if proc not in self._seen:
                        self._classify(proc)
                    if proc in self._ranks:
                        hwm = next(line for line in (proc / "status").read_text().splitlines()
                                   if line.startswith("VmHWM:"))
                        rank = self._ranks[proc]
                        self.peaks[rank] = max(self.peaks.get(rank, 0.0), int(hwm.split()[1]) / 1024)
                except (OSError, StopIteration):  # the process exited between listing and reading
                    continue


def tokens_per_s(s3: S3Server, bucket: Bucket, dataset: str, parallel: str,
                 local: Path, nproc: int = 2) -> tuple[float, dict[int, float]]:
    """Steady-state tokens/s of `mini` on `nproc` ranks and each rank's peak MiB.

    The median of per-step rates over steps 11-40 (`--log-every 1`): on a shared machine one busy second
    skews a single 10-step window but barely moves a median.
    """
    checkpoints = bucket.uri(f"ckpt-{parallel}-{uuid.uuid4().hex[:6]}")
    args = ["--data", dataset, "--checkpoints", checkpoints,
            "--model", "mini", "--seq-len", "128", "--micro-batch", "4", "--max-steps", "40", "--warmup-steps", "1",
            "--checkpoint-every", "100000", "--log-every", "1", "--eval-batches", "0", "--parallel", parallel,
            "--local-dir", str(local)]
    with PeakRss(checkpoints) as rss:
        proc = torchrun(args, subprocess_env(s3.env()), nproc=nproc, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return statistics.median(float(step["tokens_per_s"]) for step in events(proc.stdout, "step")[10:]), rss.peaks


@pytest.mark.timeout(3600)
def test_bench_one_to_two_rank_scaling(s3: S3Server, bench_bucket: Bucket, bench_dataset: str, tmp_path: Path) -> None:
    """Global tokens/s at 2 ranks over 1 rank (same per-rank micro-batch), 3 alternated rounds; the target is printed."""
    rounds = [{name: tokens_per_s(s3, bench_bucket, bench_dataset, mode, tmp_path, nproc)[0]
               for name, mode, nproc in (("1 rank", "ddp", 1), ("2 ranks ddp", "ddp", 2), ("2 ranks fsdp", "fsdp", 2))}
              for _ in range(3)]
    print("\nmini 1 -> 2 ranks on CPU (seq-len 128, micro-batch 4 per rank, one thread per rank), global tokens/s:")
    print("| round | 1 rank | 2 ranks DDP | 2 ranks FSDP | DDP scaling | FSDP scaling |\n|---|---|---|---|---|---|")
    for run, row in enumerate(rounds, 1):
        one = row["1 rank"]
        print(f"| {run} | {one:,.0f} | {row['2 ranks ddp']:,.0f} | {row['2 ranks fsdp']:,.0f} "
              f"| x{row['2 ranks ddp'] / one:.2f} | x{row['2 ranks fsdp'] / one:.2f} |")
    for mode in ("ddp", "fsdp"):
        scaling = statistics.median(row[f"2 ranks {mode}"] / row["1 rank"] for row in rounds)
        print(f"{mode} median scaling x{scaling:.2f}: target >= x1.6 {'MET' if scaling >= 1.6 else 'NOT MET'}")
    print(json.dumps({"rank_scaling_tokens_per_s": rounds}))
    assert all(rate > 0 for row in rounds for rate in row.values())


@pytest.mark.timeout(3600)
def test_bench_ddp_vs_fsdp_tokens_per_s(s3: S3Server, bench_bucket: Bucket, bench_dataset: str,
                                        tmp_path: Path) -> None:
    runs = {mode: [tokens_per_s(s3, bench_bucket, bench_dataset, mode, tmp_path) for _ in range(2)]
            for mode in ("ddp", "fsdp")}
    rates = {mode: [rate for rate, _ in values] for mode, values in runs.items()}
    best = {mode: max(values) for mode, values in rates.items()}
    print(f"\nmini, 2 ranks on CPU (seq-len 128, micro-batch 4): DDP {best['ddp']:,.0f} tok/s, "
          f"FSDP {best['fsdp']:,.0f} tok/s (x{best['fsdp'] / best['ddp']:.2f})")
    print("| mode | run | tokens/s | rank 0 peak RSS MiB | rank 1 peak RSS MiB |\n|---|---|---|---|---|")
    for mode, values in runs.items():
        for run, (rate, peaks) in enumerate(values, 1):
            print(f"| {mode} | {run} | {rate:,.0f} | {peaks[0]:,.0f} | {peaks[1]:,.0f} |")
    print(json.dumps({"ddp_vs_fsdp_tokens_per_s": rates,
                      "peak_rss_mib": {mode: [peaks for _, peaks in values] for mode, values in runs.items()}}))
    assert all(rate > 0 for rate in best.values())
    assert all(set(peaks) == {0, 1} for values in runs.values() for _, peaks in values), "a rank was never sampled"


def small_model() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """`small` after one AdamW step (so the moments exist)."""
    torch.manual_seed(0)
    model = GPT(PRESETS["small"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model(torch.randint(0, 256, (1, 8))).sum().backward()
    optimizer.step()
    return model, optimizer


def save_seconds(bucket: Bucket, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 async_save: bool) -> tuple[float, float]:
    """(seconds the caller is blocked, seconds until committed) for one checkpoint."""
    ckpt = Checkpointer(S3Uri(bucket.name, f"ckpt-{uuid.uuid4().hex[:6]}"), CTX, keep_last=1, async_save=async_save)
    started = time.perf_counter()
    stall = ckpt.save(1, model, optimizer, state={"step": 1}, rng=rng_state())
    ckpt.wait()
    total = time.perf_counter() - started
    s3_io.delete_prefix(S3Uri(bucket.name, ckpt.root.key + "/"))
    return stall, total


@pytest.mark.timeout(3600)
def test_bench_checkpoint_stall_async_vs_sync(s3: S3Server, bench_bucket: Bucket) -> None:
    model, optimizer = small_model()
    sync = min(save_seconds(bench_bucket, model, optimizer, async_save=False) for _ in range(2))
    async_ = min(save_seconds(bench_bucket, model, optimizer, async_save=True) for _ in range(2))
    payload: dict[str, Any] = {"model": model.state_dict(), "optim": optimizer.state_dict()}
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    client = s3_io.client()
    started = time.perf_counter()
    client.upload_fileobj(io.BytesIO(buffer.getvalue()), bench_bucket.name, "raw/checkpoint.pt")
    raw = time.perf_counter() - started
    size_mib = len(buffer.getvalue()) / 2**20
    ratio = async_[0] / sync[0]
    print(f"\ncheckpoint of 'small' ({size_mib:.0f} MiB model + optimizer): sync save stalls {sync[0]:.2f}s; "
          f"async stalls {async_[0]:.2f}s ({100 * ratio:.1f}% of sync, target < 10%) and commits after "
          f"{async_[1]:.2f}s; raw boto3 upload of the same bytes {raw:.2f}s")
    print(json.dumps({"checkpoint_mib": size_mib, "sync_stall_s": sync[0], "async_stall_s": async_[0],
                      "async_commit_s": async_[1], "raw_upload_s": raw, "stall_ratio": ratio}))
    assert ratio < 0.1
