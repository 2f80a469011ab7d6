"""prepare --tokenizer: a Hugging Face tokenizer.json instead of the byte tokenizer, ids checked against uint16."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers

from tests.workloads.trainer_torch.support import Bucket
from workloads.common.uri import S3Uri
from workloads.lm.hf_tokenizer import write_tokenizer
from workloads.lm.tokenizer import ByteTokenizer
from workloads.trainer_torch.prepare import PrepareError, main, prepare

DOCS = {"a.txt": "the cat sat on the mat. " * 20, "b.txt": "a dog sat on a log.\n" * 20}
"""Two small documents."""


def write_docs(folder: Path) -> Path:
    """The documents as files under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in DOCS.items():
        (folder / name).write_text(text)
    return folder


def stream(bucket: Bucket, prefix: str, manifest: dict[str, Any]) -> list[int]:
    """Every token id of the train split, in order."""
    shards = manifest["splits"]["train"]["shards"]
    return [i for s in shards for i in np.frombuffer(bucket.read(f"{prefix}/{s['key']}"), dtype="<u2").tolist()]


def bpe_tokenizer(path: Path) -> Tokenizer:
    """A small BPE trained on the documents, with one special token (<|endoftext|>, as in GPT-2's tokenizer.json)."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(DOCS.values(), trainer)
    tokenizer.save(str(path))
    return tokenizer


def test_a_bpe_tokenizer_json_frames_each_document_with_its_end_token(bucket: Bucket, tmp_path: Path) -> None:
    tokenizer = bpe_tokenizer(tmp_path / "tokenizer.json")
    eos = tokenizer.token_to_id("<|endoftext|>")
    manifest = prepare(write_docs(tmp_path / "src"), S3Uri.parse(bucket.uri("tok/bpe")), shard_tokens=64,
                       val_fraction=0.0, tokenizer=tmp_path / "tokenizer.json")
    expected = [i for text in DOCS.values() for i in [*tokenizer.encode(text).ids, eos]]
    assert stream(bucket, "tok/bpe", manifest) == expected
    assert len(expected) < sum(len(t) for t in DOCS.values()) / 2, "merges make fewer tokens than bytes"
    entry = manifest["tokenizer"]
    assert (entry["type"], entry["file"], entry["eos_id"], len(entry["sha256"])) == ("huggingface", "tokenizer.json",
                                                                                   eos, 64)
    # The dataset carries the tokenizer its manifest names, so its ids can be decoded later.
    carried = bucket.read("tok/bpe/tokenizer.json")
    assert carried == (tmp_path / "tokenizer.json").read_bytes()
    assert hashlib.sha256(carried).hexdigest() == entry["sha256"]
    # No tokenizer_config.json beside it: listed as none, so no config found beside the data is ever taken for it.
    assert entry["config_sha256"] is None and bucket.keys("tok/bpe/tokenizer_config.json") == []


def test_an_exports_byte_tokenizer_gives_the_byte_tokenizers_data(bucket: Bucket, tmp_path: Path) -> None:
    src = write_docs(tmp_path / "src")
    write_tokenizer(ByteTokenizer(), tmp_path, max_length=256)
    default = prepare(src, S3Uri.parse(bucket.uri("tok/bytes")), shard_tokens=64, val_fraction=0.1)
    from_file = prepare(src, S3Uri.parse(bucket.uri("tok/bytes-hf")), shard_tokens=64, val_fraction=0.1,
                        tokenizer=tmp_path)
    assert from_file["tokenizer"] == default["tokenizer"] == ByteTokenizer().to_dict()
    assert from_file["splits"] == default["splits"]


def test_ids_beyond_uint16_fail_naming_the_flag_and_the_limit(bucket: Bucket, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    wide = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1, "b": 70_000}, unk_token="[UNK]"))
    wide.add_special_tokens(["<eos>"])
    wide.save(str(tmp_path / "tokenizer.json"))
    code = main(["--src", str(write_docs(tmp_path / "src")), "--out", bucket.uri("tok/wide"),
                 "--tokenizer", str(tmp_path / "tokenizer.json")])
    assert code == 2
    assert ("--tokenizer: " + str(tmp_path / "tokenizer.json") + " has ids up to 70,000, but shards store uint16 ids "
            "(at most 65,535): use a tokenizer with at most 65,536 ids") in capsys.readouterr().err
    assert bucket.keys("tok/wide") == []


def test_an_unreadable_tokenizer_or_unknown_end_token_is_a_clear_error(bucket: Bucket, tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text("{not json")
    out = S3Uri.parse(bucket.uri("tok/bad"))
    with pytest.raises(PrepareError, match=r"^--tokenizer: cannot load a Hugging Face tokenizer.json from "):
        prepare(write_docs(tmp_path / "src"), out, shard_tokens=64, val_fraction=0.0, tokenizer=tmp_path)
    bpe_tokenizer(tmp_path / "tokenizer.json")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": "</s>"}))
    with pytest.raises(PrepareError, match=r"eos_token '</s>' is not in .*documents need an end token"):
        prepare(write_docs(tmp_path / "src"), out, shard_tokens=64, val_fraction=0.0, tokenizer=tmp_path)


def test_an_exports_tokenizer_json_alone_is_still_the_byte_tokenizer(bucket: Bucket, tmp_path: Path) -> None:
    # Copied out of an export without its tokenizer_config.json: three special tokens, but our vocabulary.
    write_tokenizer(ByteTokenizer(bos_id=300, eos_id=301, pad_id=302), tmp_path, max_length=256)
    (tmp_path / "tokenizer_config.json").unlink()
    manifest = prepare(write_docs(tmp_path / "src"), S3Uri.parse(bucket.uri("tok/alone")), shard_tokens=64,
                       val_fraction=0.0, tokenizer=tmp_path / "tokenizer.json")
    assert manifest["tokenizer"] == ByteTokenizer(bos_id=300, eos_id=301, pad_id=302).to_dict()
    assert stream(bucket, "tok/alone", manifest)[:3] == [300, *b"th"]


def test_a_tokenizer_saved_with_truncation_or_padding_still_encodes_whole_documents(bucket: Bucket,
                                                                                    tmp_path: Path) -> None:
    # tokenizer.json keeps `truncation` and `padding` settings, and `encode` applies them: documents would be cut.
    tokenizer = bpe_tokenizer(tmp_path / "plain.json")
    tokenizer.enable_truncation(max_length=8)
    tokenizer.enable_padding(length=8)
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    eos = tokenizer.token_to_id("<|endoftext|>")
    manifest = prepare(write_docs(tmp_path / "src"), S3Uri.parse(bucket.uri("tok/cut")), shard_tokens=64,
                       val_fraction=0.0, tokenizer=tmp_path / "tokenizer.json")
    plain = Tokenizer.from_file(str(tmp_path / "plain.json"))
    assert stream(bucket, "tok/cut", manifest) == [i for text in DOCS.values() for i in [*plain.encode(text).ids, eos]]


def test_a_tokenizer_whose_framing_ends_with_eos_gets_no_second_one(bucket: Bucket, tmp_path: Path) -> None:
    tokenizer = bpe_tokenizer(tmp_path / "tokenizer.json")
    eos = tokenizer.token_to_id("<|endoftext|>")
    # As T5's and BART's tokenizer.json do: the post-processor closes every sequence with the end token.
    tokenizer.post_processor = processors.TemplateProcessing(single="$A <|endoftext|>",
                                                             special_tokens=[("<|endoftext|>", eos)])
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    manifest = prepare(write_docs(tmp_path / "src"), S3Uri.parse(bucket.uri("tok/framed")), shard_tokens=64,
                       val_fraction=0.0, tokenizer=tmp_path / "tokenizer.json")
    ids = stream(bucket, "tok/framed", manifest)
    assert ids.count(eos) == len(DOCS) and ids[-1] == eos
