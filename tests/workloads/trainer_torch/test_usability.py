"""Usability: a smoke run needs no tuning flags, --data takes a prefix or its manifest, and runs that cannot fit
in memory stop before they start."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.workloads.trainer_torch.support import Bucket, events
from workloads.common.uri import S3Uri
from workloads.lm.tokenizer import ByteTokenizer
from workloads.trainer_torch.__main__ import main
from workloads.trainer_torch.config import parse_config
from workloads.trainer_torch.data import DataError, DatasetManifest, ShardInfo, read_manifest

REQUIRED = ["--data", "s3://b/data", "--checkpoints", "s3://b/ckpt"]


@pytest.mark.parametrize(("max_steps", "warmup"), [(1, 0), (5, 0), (50, 5), (999, 99), (1000, 100), (10**6, 100)])
def test_default_warmup_fits_any_max_steps(max_steps: int, warmup: int) -> None:
    cfg = parse_config([*REQUIRED, "--max-steps", str(max_steps)], environ={})
    assert cfg.warmup_steps == warmup


@pytest.mark.parametrize("suffix", ["data", "data/", "data/manifest.json"])
def test_data_accepts_the_prefix_prepare_prints_or_its_manifest(bucket: Bucket, dataset: str, suffix: str) -> None:
    manifest = read_manifest(S3Uri.parse(bucket.uri(suffix)))
    assert str(manifest.uri) == dataset
    assert manifest.splits["train"]


def test_smoke_run_with_only_max_steps_trains(bucket: Bucket, dataset: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    prefix = dataset.removesuffix("/manifest.json")
    code = main(["--data", prefix, "--checkpoints", bucket.uri("smoke/ckpt"), "--model", "tiny", "--max-steps", "5",
                 "--local-dir", str(tmp_path)])
    assert code == 0, capsys.readouterr().err[-2000:]
    assert events(capsys.readouterr().out, "done")[0]["step"] == 5
    assert bucket.committed_steps("smoke/ckpt/") == [5]


def test_the_memory_check_runs_on_cpu_only_when_asked_and_sizes_the_model() -> None:
    tiny, small = [*REQUIRED, "--model", "tiny"], [*REQUIRED, "--model", "small"]
    assert parse_config(small, environ={}).memory_problem("cpu", None, "fp32") is None
    # 1 GiB lies between tiny's CPU estimate (~0.03 GiB, no CUDA context) and small's (~6.8 GiB).
    assert parse_config([*tiny, "--device-memory-gb", "1"], environ={}).memory_problem("cpu", None, "fp32") is None
    assert parse_config([*small, "--device-memory-gb", "1"], environ={}).memory_problem("cpu", None, "fp32")


def test_a_run_that_cannot_fit_fails_at_once_with_the_estimate(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    code = main([*REQUIRED, "--model", "7b", "--micro-batch", "4", "--device-memory-gb", "80",
                 "--local-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert ("error: --model: does not fit in memory: '7b' needs an estimated 203.10 GiB per rank (params 24.04, "
            "grads 24.04, optimizer 48.09, activations 64.43, buffers 24.04, overhead 18.46) with ddp over 1 rank(s), "
            "micro-batch 4 x 2048 tokens, fp32") in err
    assert "cpu has 80.00 GiB. To fit: shard the model states with --parallel fsdp" in err
    assert not list(tmp_path.iterdir())


def test_data_of_another_tokenizer_or_with_more_ids_than_the_model_embeds_is_refused() -> None:
    uri = S3Uri("b", "data/manifest.json")
    shards = {"train": [ShardInfo("train-0.bin", 10, "0" * 64)]}
    custom = ByteTokenizer(bos_id=300, eos_id=301, pad_id=302)
    assert DatasetManifest(uri, shards, custom.to_dict()).model_tokenizer("tiny", 320) == custom
    too_big = ByteTokenizer(bos_id=400, eos_id=401, pad_id=402).to_dict()
    with pytest.raises(DataError, match=r"byte tokenizer with 403 ids .* more than --model tiny embeds \(320\); "
                                        r"prepare with special ids below 320, or raise --vocab-size to 448"):
        DatasetManifest(uri, shards, too_big).model_tokenizer("tiny", 320)
    assert DatasetManifest(uri, shards, too_big).model_tokenizer("tiny", 448).vocab_size == 403
    with pytest.raises(DataError, match=r"was not made by the byte tokenizer or a Hugging Face tokenizer.json "
                                        r"\(tokenizer.type: only 'byte' is supported \(got 'sentencepiece'\)\)"):
        DatasetManifest(uri, shards, {"type": "sentencepiece"}).model_tokenizer("tiny", 320)
    with pytest.raises(DataError, match=r"malformed tokenizer entry \(KeyError\('file'\)\); re-run prepare"):
        DatasetManifest(uri, shards, {"type": "huggingface"}).model_tokenizer("tiny", 320)
