"""Flag validation: every problem named by its flag, all reported at once."""

from __future__ import annotations

import pytest

from workloads.trainer_torch.config import ConfigError, parse_config

BASE = ["--data", "s3://b/data/manifest.json", "--checkpoints", "s3://b/ckpt", "--model", "tiny"]


def errors_for(argv: list[str], world_size: int = 1) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(argv, world_size=world_size)
    return info.value.errors


def test_defaults_resolve_seq_len_grad_accum_and_min_lr() -> None:
    cfg = parse_config(BASE, world_size=2)
    assert (cfg.seq_len, cfg.grad_accum, cfg.min_lr) == (256, 1, pytest.approx(6e-5))
    assert cfg.global_batch == 16 and cfg.tokens_per_step == 16 * 256
    assert cfg.export is None


def test_non_s3_uris_are_rejected_naming_the_flag() -> None:
    errors = errors_for(["--data", "/tmp/manifest.json", "--checkpoints", "gs://b/c", "--export", "s3://"])
    assert any(e.startswith("--data: expected an s3://BUCKET/PREFIX URI") for e in errors)
    assert any(e.startswith("--checkpoints: expected an s3://") for e in errors)
    assert any(e.startswith("--export: the S3 URI has no bucket") for e in errors)


def test_missing_required_uris_point_at_flag_and_env() -> None:
    errors = errors_for(["--model", "tiny"])
    assert "--data: required (an s3://BUCKET/PREFIX URI; or set MODELPLANE_TRAIN_DATA)" in errors
    assert any(e.startswith("--checkpoints: required") for e in errors)


def test_unknown_preset_lists_the_valid_ones() -> None:
    assert errors_for([*BASE, "--model", "huge"]) == [
        "--model: unknown preset 'huge'; valid values: tiny, mini, small, medium, large"]


def test_seq_len_above_the_preset_maximum_is_rejected() -> None:
    assert errors_for([*BASE, "--seq-len", "257"]) == [
        "--seq-len: 257 exceeds the 'tiny' preset's max_seq_len 256"]


def test_world_size_that_does_not_divide_the_global_batch_is_rejected() -> None:
    assert errors_for([*BASE, "--micro-batch", "4", "--global-batch", "20"], world_size=3) == [
        "--global-batch: 20 sequences is not divisible by --micro-batch x world size (4 x 3 = 12); "
        "use a multiple of 12"]
    assert parse_config([*BASE, "--micro-batch", "4", "--global-batch", "24"], world_size=3).grad_accum == 2


def test_grad_accum_that_contradicts_global_batch_is_rejected() -> None:
    assert errors_for([*BASE, "--micro-batch", "2", "--global-batch", "8", "--grad-accum", "3"], world_size=2) == [
        "--grad-accum: 3 contradicts --global-batch 8 at world size 2 (which needs 2); pass only one of them"]


def test_all_numeric_problems_are_collected_at_once() -> None:
    errors = errors_for([*BASE, "--micro-batch", "0", "--max-steps", "10", "--warmup-steps", "20", "--lr", "0",
                         "--keep-last", "0", "--sigterm-grace", "0", "--peak-tflops", "-1", "--metrics-port", "70000"])
    assert {e.split(":")[0] for e in errors} == {"--micro-batch", "--warmup-steps", "--lr", "--keep-last",
                                               "--sigterm-grace", "--peak-tflops", "--metrics-port"}


def test_flags_fall_back_to_modelplane_train_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELPLANE_TRAIN_DATA", "s3://env/data/manifest.json")
    monkeypatch.setenv("MODELPLANE_TRAIN_CHECKPOINTS", "s3://env/ckpt")
    monkeypatch.setenv("MODELPLANE_TRAIN_MAX_STEPS", "42")
    monkeypatch.setenv("MODELPLANE_TRAIN_COMPILE", "true")
    cfg = parse_config(["--model", "tiny", "--max-steps", "50", "--warmup-steps", "0"])
    assert str(cfg.data) == "s3://env/data/manifest.json" and str(cfg.checkpoints) == "s3://env/ckpt"
    assert cfg.max_steps == 50 and cfg.compile is True
