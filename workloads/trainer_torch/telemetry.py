"""Throughput, MFU, the progress line and the Prometheus metrics rank 0 serves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Final

import torch
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from workloads.common import metrics as names

PEAK_TFLOPS: Final[tuple[tuple[str, float], ...]] = (
    # Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets, most specific name first.
    ("h200", 989.0),
    ("h100 pcie", 756.0),
    ("h100", 989.0),
    ("a100", 312.0),
    # A10G (AWS g5) has fewer tensor TFLOPS than the A10's 125:
    # https://www.baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference/
    ("a10g", 70.0),
    ("l40s", 362.0),
    ("l40", 181.0),
    ("l4", 121.0),
    ("a10", 125.0),
    ("v100", 125.0),
    ("t4", 65.0),
)
"""Per-device peak TFLOP/s by a lower-case substring of `torch.cuda.get_device_name()`."""


def lookup_peak_tflops(device_name: str) -> float | None:
    """Peak dense bf16 TFLOP/s for a CUDA device name, or None when the table does not know it."""
    lowered = device_name.lower()
    return next((tflops for key, tflops in PEAK_TFLOPS if key in lowered), None)


def measure_cpu_flops(sizes: tuple[int, ...] = (768, 1024), trials: int = 3, seconds: float = 0.1) -> float:
    """Best achieved fp32 matmul FLOP/s on this CPU with torch's current threads.

    CPUs have no useful datasheet peak for PyTorch (it depends on cores, AVX width and BLAS), so
    CPU MFU is reported against the best this host's BLAS sustains on square matmuls. The best of
    several short trials and two sizes keeps a busy neighbour or a cache-unfriendly shape from
    understating the peak (which would overstate MFU).
    """
    best = 0.0
    for size in sizes:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)
        for _ in range(trials):
            runs, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds or runs < 2:
                torch.mm(a, b)
                runs += 1
            best = max(best, 2.0 * size**3 * runs / (time.perf_counter() - start))
    return best


def peak_flops_per_device(device: torch.device, override_tflops: float | None) -> tuple[float, str]:
    """(peak FLOP/s of one device, where the number came from); 0 for a GPU the table does not know."""
    if override_tflops is not None:
        return override_tflops * 1e12, "--peak-tflops"
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        tflops = lookup_peak_tflops(name)
        # An unknown GPU is not bad input: train anyway and report MFU as 0 until --peak-tflops is given.
        return (tflops * 1e12, f"table:{name}") if tflops is not None else (0.0, f"unknown-gpu:{name}")
    return measure_cpu_flops(), "measured-cpu-matmul"


def mfu(flops_per_token: float, tokens_per_second: float, peak_flops_total: float) -> float:
    """Model FLOPs utilisation: achieved model FLOP/s over the peak of every device in the job."""
    return flops_per_token * tokens_per_second / peak_flops_total if peak_flops_total > 0 else 0.0


def format_eta(seconds: float) -> str:
    """H:MM:SS for a non-negative duration."""
    total = max(0, round(seconds))
    return f"{total // 3600}:{total // 60 % 60:02d}:{total % 60:02d}"


@dataclass
class Throughput:
    """Tokens/s and seconds/step since the last report."""

    started: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    steps: int = 0

    def add(self, tokens: int) -> None:
        """Record one finished step of `tokens` tokens."""
        self.tokens += tokens
        self.steps += 1

    def exclude(self, seconds: float) -> None:
        """Leave `seconds` (a checkpoint save) out of the window so tokens/s measures training only."""
        self.started += seconds

    def report(self) -> tuple[float, float]:
        """(tokens per second, seconds per step) over the window, then start a new window."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rates = (self.tokens / elapsed, elapsed / max(self.steps, 1))
        self.started, self.tokens, self.steps = time.perf_counter(), 0, 0
        return rates


def progress_line(step: int, max_steps: int, loss: float, lr: float, tokens_per_s: float, mfu_ratio: float,
                  eta_s: float) -> str:
    """The human progress line."""
    return (f"step {step}/{max_steps} | loss {loss:.4f} | lr {lr:.2e} | {tokens_per_s:,.0f} tok/s | "
            f"MFU {100 * mfu_ratio:.1f}% | ETA {format_eta(eta_s)}")


class TrainMetrics:
    """The shared training metrics (workloads.common.metrics names) in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.tokens = Counter(names.TRAIN_TOKENS_TOTAL, "Tokens consumed by the optimizer, all ranks.", registry=r)
        self.step = Gauge(names.TRAIN_STEP, "Last completed optimizer step.", registry=r)
        self.loss = Gauge(names.TRAIN_LOSS, "Training loss at the last logged or checkpointed step.", registry=r)
        self.mfu = Gauge(names.TRAIN_MFU_RATIO, "Model FLOPs utilisation, 0..1.", registry=r)
        self.last_checkpoint = Gauge(names.TRAIN_LAST_CHECKPOINT_TIMESTAMP,
                                     "Unix time of the last committed checkpoint.", registry=r)
        self.checkpoint_duration = Histogram(names.TRAIN_CHECKPOINT_DURATION, "Seconds to save and upload one "
                                             "checkpoint.", buckets=(1, 2.5, 5, 10, 20, 30, 60, 90, 120, 300, 600),
                                             registry=r)
        self.last_step = Gauge(names.TRAIN_LAST_STEP_TIMESTAMP, "Unix time of the last completed step.", registry=r)
        # Exported as 0 until the first log window measures a step: the checkpoint alert reads 0 as "not known".
        self.checkpoint_interval = Gauge(names.TRAIN_CHECKPOINT_EXPECTED_INTERVAL, "Seconds expected between two "
                                         "checkpoints at the measured step time.", registry=r)
        self._last_save_s = 0.0

    def serve(self, port: int) -> None:
        """Serve /metrics on `port` from a daemon thread."""
        start_http_server(port, registry=self.registry)

    def on_step(self, step: int, tokens: int, loss: float | None) -> None:
        """Record one optimizer step; `loss` only on the steps that read it back from the device (None elsewhere)."""
        self.tokens.inc(tokens)
        self.step.set(step)
        if loss is not None:
            self.loss.set(loss)
        self.last_step.set(time.time())

    def on_window(self, seconds_per_step: float, checkpoint_every: int) -> None:
        """Record a log window's measured seconds per step: a checkpoint is due every `checkpoint_every` steps.

        The window's step time leaves out checkpoint saves (`Throughput.exclude`), so the last save's wait is added.
        """
        self.checkpoint_interval.set(seconds_per_step * checkpoint_every + self._last_save_s)

    def on_checkpoint(self, duration_s: float) -> None:
        """Record one checkpoint as its COMMIT lands (`Checkpointer(on_commit=...)`): with --async-checkpoint that
        is after the background upload, so the "last committed" time never runs ahead of what a resume can load."""
        self.checkpoint_duration.observe(duration_s)
        self.last_checkpoint.set(time.time())

    def on_save_wait(self, seconds: float) -> None:
        """Record how long the step loop waited for the last save (the part of it that did not overlap training)."""
        self._last_save_s = seconds
