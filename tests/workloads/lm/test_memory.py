"""The per-rank memory estimate: ZeRO model states, Korthikanti activations, and the fit message."""

from __future__ import annotations

import pytest

from workloads.lm.memory import CUDA_OVERHEAD, GIB, activation_bytes, default_parallel, estimate, fit_problem
from workloads.lm.presets import PRESETS


def test_ddp_holds_sixteen_bytes_of_model_state_per_parameter() -> None:
    config = PRESETS["small"]
    n = config.n_params(non_embedding=False)
    got = estimate(config, parallel="ddp", world_size=8, micro_batch=1, seq_len=128, precision="fp32")
    assert (got.params, got.grads, got.optimizer) == (4 * n, 4 * n, 8 * n)
    assert got.buffers == 4 * n  # DDP's gradient buckets


def test_fsdp_shards_model_states_over_the_world() -> None:
    config = PRESETS["7b"]
    n = config.n_params(non_embedding=False)
    got = estimate(config, parallel="fsdp", world_size=16, micro_batch=1, seq_len=2048, precision="bf16")
    assert got.params + got.grads + got.optimizer == pytest.approx(16 * n / 16, rel=1e-6)
    assert got.total < estimate(config, parallel="ddp", world_size=16, micro_batch=1, seq_len=2048,
                                precision="bf16").total / 4


def test_activation_checkpointing_and_bf16_shrink_activations() -> None:
    config, shape = PRESETS["1b"], {"micro_batch": 4, "seq_len": 2048}
    none, selective, full = (activation_bytes(config, precision="bf16", checkpointing=c, **shape)
                             for c in ("none", "selective", "full"))
    assert full < selective < none
    assert activation_bytes(config, precision="fp32", checkpointing="none", **shape) > 1.9 * none


def test_activations_follow_korthikanti_without_dropout_or_stored_scores() -> None:
    config = PRESETS["small"]
    s, b, h, layers = 1024, 8, config.d_model, config.n_layer
    per_block = 16 * s * b * h * 2 + s * b * config.n_head * 4
    head = 3 * s * b * h * 2 + 2 * s * b * config.vocab_size * 4
    assert activation_bytes(config, micro_batch=b, seq_len=s, precision="bf16", checkpointing="none") == (
        layers * per_block + head)


def test_default_parallel_matches_the_trainer() -> None:
    assert (default_parallel(1), default_parallel(2)) == ("ddp", "fsdp")


def test_an_impossible_configuration_is_rejected_with_its_numbers_and_fixes() -> None:
    problem = fit_problem("7b", device_bytes=80 * GIB, device="cuda:0 (NVIDIA H100 80GB HBM3)", parallel="ddp",
                          world_size=1, micro_batch=4, seq_len=2048, precision="bf16")
    assert problem is not None
    assert problem.startswith("'7b' needs an estimated 181.42 GiB per rank (params 24.04, grads 24.04, "
                              "optimizer 48.09, activations 32.24, buffers 36.06, overhead 16.95)")
    assert "cuda:0 (NVIDIA H100 80GB HBM3) has 80.00 GiB" in problem
    for fix in ("--parallel fsdp", "--activation-checkpointing selective or full", "lower --micro-batch (got 4",
                "smaller --model than '7b'"):
        assert fix in problem


def test_a_configuration_that_fits_is_accepted() -> None:
    assert fit_problem("7b", device_bytes=80 * GIB, device="gpu", parallel="fsdp", world_size=16, micro_batch=2,
                       seq_len=2048, precision="bf16", checkpointing="full") is None


def test_the_cuda_context_is_counted_on_cuda_only() -> None:
    on_gpu, on_cpu = (estimate(PRESETS["tiny"], parallel="ddp", world_size=1, micro_batch=1, seq_len=64,
                               precision="fp32", cuda=cuda) for cuda in (True, False))
    assert on_gpu.overhead - on_cpu.overhead == CUDA_OVERHEAD
    assert on_gpu.total - on_cpu.total == CUDA_OVERHEAD
