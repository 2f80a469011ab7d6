"""MFU math, the peak-FLOPs table, the progress line and the Prometheus metrics."""

from __future__ import annotations

import urllib.request

import pytest
import torch
from prometheus_client import generate_latest

from tests.support.servers import free_port, wait_for_port
from workloads.common import metrics as names
from workloads.lm.presets import PRESETS
from workloads.trainer_torch.telemetry import (
    TrainMetrics,
    format_eta,
    lookup_peak_tflops,
    mfu,
    peak_flops_per_device,
    progress_line,
)


def test_mfu_is_model_flops_per_second_over_total_peak() -> None:
    small = PRESETS["small"]
    flops_per_token = small.flops_per_token(1024)
    # 6N + 12·L·H·Q·T with N = 85.06M non-embedding parameters (GPT-2 124M shape) plus the tied 320 x 768 output
    # projection.
    assert flops_per_token == 6 * (85_056_000 + 320 * 768) + 12 * 12 * 12 * 64 * 1024
    ratio = mfu(flops_per_token, tokens_per_second=400_000, peak_flops_total=8 * 989e12)
    assert ratio == pytest.approx(flops_per_token * 400_000 / 7.912e15)
    assert mfu(flops_per_token, 1000.0, 0.0) == 0.0


@pytest.mark.parametrize(
    ("device_name", "tflops"),
    [
        ("NVIDIA H200", 989.0),
        ("NVIDIA H100 80GB HBM3", 989.0),
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A10G", 70.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.0),
        ("Some Future GPU", None),
    ],
)
def test_peak_table_matches_device_names(device_name: str, tflops: float | None) -> None:
    assert lookup_peak_tflops(device_name) == tflops


def test_peak_tflops_flag_overrides_and_cpu_is_measured() -> None:
    assert peak_flops_per_device(torch.device("cpu"), 2.5) == (2.5e12, "--peak-tflops")
    measured, source = peak_flops_per_device(torch.device("cpu"), None)
    assert source == "measured-cpu-matmul"
    assert 1e8 < measured < 1e14


def test_progress_line_shows_step_loss_throughput_mfu_and_eta() -> None:
    line = progress_line(120, 1000, 2.34567, 3e-4, 123456.7, 0.4567, 3725)
    assert line == "step 120/1000 | loss 2.3457 | lr 3.00e-04 | 123,457 tok/s | MFU 45.7% | ETA 1:02:05"
    assert format_eta(-5) == "0:00:00"


def test_metrics_use_the_shared_names_and_are_served_over_http() -> None:
    metrics = TrainMetrics()
    metrics.on_step(7, tokens=4096, loss=2.5)
    metrics.mfu.set(0.25)
    metrics.on_checkpoint(1.5)
    text = generate_latest(metrics.registry).decode()
    for name in (names.TRAIN_TOKENS_TOTAL, names.TRAIN_STEP, names.TRAIN_LOSS, names.TRAIN_MFU_RATIO,
                 names.TRAIN_LAST_CHECKPOINT_TIMESTAMP, names.TRAIN_LAST_STEP_TIMESTAMP):
        assert f"\n{name} " in f"\n{text}", name
    assert f"{names.TRAIN_CHECKPOINT_DURATION}_count 1.0" in text
    assert f"{names.TRAIN_TOKENS_TOTAL} 4096.0" in text
    port = free_port()
    metrics.serve(port)
    wait_for_port(port)
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        assert f"{names.TRAIN_STEP} 7.0" in response.read().decode()


def _sample(metrics: TrainMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None, name
    return value


def test_expected_checkpoint_interval_is_the_measured_step_time_times_checkpoint_every_plus_the_last_save() -> None:
    metrics = TrainMetrics()
    # 0 until a log window measured a step: the TrainingCheckpointStale rule reads 0 as "not known".
    assert _sample(metrics, names.TRAIN_CHECKPOINT_EXPECTED_INTERVAL) == 0
    metrics.on_window(seconds_per_step=4.0, checkpoint_every=500)
    assert _sample(metrics, names.TRAIN_CHECKPOINT_EXPECTED_INTERVAL) == 2000
    # The window's step time leaves the save out (Throughput.exclude): the next window adds it back.
    metrics.on_save_wait(30.0)
    metrics.on_window(seconds_per_step=5.0, checkpoint_every=500)
    assert _sample(metrics, names.TRAIN_CHECKPOINT_EXPECTED_INTERVAL) == 2530
