"""Settings validation: every problem named by its flag and variable, all reported at once."""

from __future__ import annotations

import pytest

from workloads.common.settings import SettingsError
from workloads.common.vocab import (
    CHECKPOINTS_FLAG,
    COLLECTIVE_TIMEOUT_FLAG,
    DATA_FLAG,
    EXPORT_FLAG,
    METRICS_PORT_FLAG,
)
from workloads.trainer_torch.config import TrainSettings, parse_config

BASE = ["--data", "s3://b/data/manifest.json", "--checkpoints", "s3://b/ckpt", "--model", "tiny"]


def errors_for(argv: list[str], world_size: int = 1) -> list[str]:
    with pytest.raises(SettingsError) as info:
        parse_config(argv, world_size=world_size, environ={})
    return info.value.errors


def test_defaults_resolve_seq_len_grad_accum_and_min_lr() -> None:
    cfg = parse_config(BASE, world_size=2, environ={})
    assert (cfg.seq_len, cfg.grad_accum, cfg.min_lr) == (256, 1, pytest.approx(6e-5))
    assert cfg.sequences_per_step == 16 and cfg.tokens_per_step == 16 * 256
    assert cfg.export is None


def test_platform_flags_are_the_vocabulary_flags() -> None:
    flags = {action.option_strings[0] for action in TrainSettings.build_parser()._actions if action.option_strings}
    assert {DATA_FLAG, CHECKPOINTS_FLAG, EXPORT_FLAG, METRICS_PORT_FLAG, COLLECTIVE_TIMEOUT_FLAG} <= flags


def test_collective_timeout_defaults_to_half_an_hour_and_must_be_positive() -> None:
    assert parse_config(BASE, environ={}).collective_timeout == 1800
    assert parse_config(BASE, environ={"MODELPLANE_TRAIN_COLLECTIVE_TIMEOUT": "60"}).collective_timeout == 60
    assert errors_for([*BASE, COLLECTIVE_TIMEOUT_FLAG, "0"]) == [
        "--collective-timeout (MODELPLANE_TRAIN_COLLECTIVE_TIMEOUT): Input should be greater than or equal to 1 "
        "(got '0')"]


def test_non_s3_uris_are_rejected_naming_the_flag() -> None:
    errors = errors_for(["--data", "/tmp/manifest.json", "--checkpoints", "gs://b/c", "--export", "s3://"])
    assert "--data (MODELPLANE_TRAIN_DATA): expected an s3://BUCKET/PREFIX URI (got '/tmp/manifest.json')" in errors
    assert any(e.startswith("--checkpoints (MODELPLANE_TRAIN_CHECKPOINTS): expected an s3://") for e in errors)
    assert any(e.startswith("--export (MODELPLANE_TRAIN_EXPORT): the S3 URI has no bucket") for e in errors)


@pytest.mark.parametrize("root", ["s3://models", "s3://models/"])
def test_an_export_to_a_bucket_root_is_refused(root: str) -> None:
    # The export replaces everything under its prefix; at the bucket root that would be the whole bucket.
    errors = errors_for([*BASE, "--export", root])
    assert [e for e in errors if e.startswith("--export (MODELPLANE_TRAIN_EXPORT): needs a prefix under the bucket")]


def test_missing_required_uris_point_at_flag_and_env() -> None:
    errors = errors_for(["--model", "tiny"])
    assert "--data (MODELPLANE_TRAIN_DATA): is required (S3 URI of the dataset `prepare` wrote: the prefix it printed, " \
           "or its manifest.json)" \
        in errors
    assert any(e.startswith("--checkpoints (MODELPLANE_TRAIN_CHECKPOINTS): is required") for e in errors)


def test_unknown_preset_lists_the_valid_ones() -> None:
    assert errors_for([*BASE, "--model", "huge"]) == [
        "--model (MODELPLANE_TRAIN_MODEL): unknown preset; valid values: tiny, mini, small, medium, large, "
        "1b, 7b (got 'huge')"]


def test_seq_len_above_the_preset_maximum_is_rejected() -> None:
    assert errors_for([*BASE, "--seq-len", "257"]) == [
        "--seq-len (MODELPLANE_TRAIN_SEQ_LEN): exceeds the 'tiny' preset's max_seq_len 256 (got '257')"]


def test_world_size_that_does_not_divide_the_global_batch_is_rejected() -> None:
    assert errors_for([*BASE, "--micro-batch", "4", "--global-batch", "20"], world_size=3) == [
        "--global-batch (MODELPLANE_TRAIN_GLOBAL_BATCH): is not divisible by --micro-batch x world size "
        "(4 x 3 = 12); use a multiple of 12 (got '20')"]
    cfg = parse_config([*BASE, "--micro-batch", "4", "--global-batch", "24"], world_size=3, environ={})
    assert (cfg.grad_accum, cfg.sequences_per_step) == (2, 24)


def test_grad_accum_that_contradicts_global_batch_is_rejected() -> None:
    assert errors_for([*BASE, "--micro-batch", "2", "--global-batch", "8", "--grad-accum", "3"], world_size=2) == [
        "--grad-accum (MODELPLANE_TRAIN_GRAD_ACCUM): contradicts --global-batch 8 at world size 2 (which needs 2); "
        "pass only one of them (got '3')"]


def test_all_numeric_problems_are_collected_at_once() -> None:
    errors = errors_for([*BASE, "--micro-batch", "0", "--max-steps", "10", "--warmup-steps", "20", "--lr", "0",
                         "--keep-last", "0", "--sigterm-grace", "0", "--peak-tflops", "-1", "--metrics-port", "70000"])
    assert {e.split(" ")[0] for e in errors} == {"--micro-batch", "--warmup-steps", "--lr", "--keep-last",
                                               "--sigterm-grace", "--peak-tflops", "--metrics-port"}


def test_flags_fall_back_to_modelplane_train_env() -> None:
    environ = {"MODELPLANE_TRAIN_DATA": "s3://env/data/manifest.json", "MODELPLANE_TRAIN_CHECKPOINTS": "s3://env/ckpt",
               "MODELPLANE_TRAIN_MAX_STEPS": "42", "MODELPLANE_TRAIN_COMPILE": "true"}
    cfg = parse_config(["--model", "tiny", "--max-steps", "50", "--warmup-steps", "0"], environ=environ)
    assert str(cfg.data) == "s3://env/data/manifest.json" and str(cfg.checkpoints) == "s3://env/ckpt"
    assert cfg.max_steps == 50 and cfg.compile is True


def test_compile_is_a_bare_switch() -> None:
    assert parse_config([*BASE, "--compile"], environ={}).compile is True
    assert parse_config(BASE, environ={}).compile is False


def test_vocab_size_defaults_to_the_presets_shapes_the_model_and_fits_uint16_ids() -> None:
    assert parse_config(BASE, environ={}).preset.vocab_size == 320
    cfg = parse_config(BASE, environ={"MODELPLANE_TRAIN_VOCAB_SIZE": "50304"})
    assert (cfg.vocab_size, cfg.preset.vocab_size, cfg.preset.d_model) == (50304, 50304, 64)
    assert errors_for([*BASE, "--vocab-size", "65537"]) == [
        "--vocab-size (MODELPLANE_TRAIN_VOCAB_SIZE): Input should be less than or equal to 65536 (got '65537')"]
    problem = parse_config([*BASE, "--model", "small", "--vocab-size", "65536", "--device-memory-gb", "8"],
                           environ={}).memory_problem("cpu", None, "fp32")
    assert problem is not None and problem.startswith("--model: does not fit in memory: 'small' with --vocab-size "
                                                      "65536 needs an estimated ")
    assert parse_config([*BASE, "--model", "small", "--device-memory-gb", "8"], environ={}).memory_problem(
        "cpu", None, "fp32") is None
