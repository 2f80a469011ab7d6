"""Data prepared with a Hugging Face tokenizer, end to end: prepare, torchrun training with --vocab-size, the export.

The tokenizer is a small byte-level BPE trained here on the corpus, with its own special tokens and a
tokenizer_config.json. The export must carry that tokenizer unchanged, load in transformers and vLLM with our
logits, and be refused by our own server (byte-level only) with the way to serve it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

from tests.support.servers import S3Server
from tests.support.vllm import VllmServer, vllm_server
from tests.workloads.trainer_torch.support import TINY, Bucket, events, make_corpus, subprocess_env, torchrun
from workloads.common.uri import S3Uri
from workloads.common.vocab import VLLM_DTYPE_FLAG
from workloads.lm import hf
from workloads.lm.export import ExportError, load_export, save_export
from workloads.lm.hf_tokenizer import HfTokenizerExport
from workloads.lm.model import GPT
from workloads.lm.presets import preset_config
from workloads.trainer_torch.__main__ import main
from workloads.trainer_torch.data import DataError, read_manifest
from workloads.trainer_torch.prepare import prepare

# DCP warns on every single-process save and load; the in-process runs use that mode on purpose.
pytestmark = [pytest.mark.filterwarnings("ignore:torch.distributed is:UserWarning"),
              pytest.mark.usefixtures("one_torch_thread")]

SPECIALS = ("<|endoftext|>", "<|pad|>")
"""The tokenizer's special tokens (ids 0 and 1): GPT-2's end token, and a padding token."""
TOKENIZER_CONFIG = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
                    "eos_token": "<|endoftext|>", "pad_token": "<|pad|>", "model_max_length": 256}
"""The dataset's tokenizer_config.json: GPT-2's framing (BOS = EOS), plus a pad token."""
VOCAB_SIZE = 512
"""--vocab-size of the runs: the tokenizer's id_limit rounded up to a multiple of 64."""
STEPS = 6
"""Optimizer steps of the run."""
TEXTS = ("def main(argv=None):\n    return 0\n", "héllo wörld ✓", "  spaces\tand tabs  ", "")
"""Strings the exported tokenizer must encode and decode as the original file does."""
PROMPT = "def main(argv=None):\n    parser = argparse.ArgumentParser()\n    return"
"""A prompt for vLLM, in the corpus's language, so the BPE merges it."""


def train_tokenizer(corpus: Path, folder: Path) -> Path:
    """A byte-level BPE of about 450 ids trained on `corpus`, saved with its tokenizer_config.json into `folder`."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=450, special_tokens=list(SPECIALS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train([str(p) for p in sorted(corpus.iterdir())], trainer)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG))
    return folder / "tokenizer.json"


def download(bucket: Bucket, prefix: str, folder: Path) -> Path:
    """Every object directly under `prefix` into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for key in bucket.keys(prefix):
        (folder / key.rsplit("/", 1)[1]).write_bytes(bucket.read(key))
    return folder


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The BPE tokenizer.json (with its tokenizer_config.json beside it)."""
    root = tmp_path_factory.mktemp("hf-tokenizer")
    return train_tokenizer(make_corpus(root / "corpus"), root / "tokenizer")


@pytest.fixture(scope="module")
def hf_dataset(bucket: Bucket, tokenizer_file: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The corpus prepared with the BPE into hf/data/; returns the manifest URI."""
    corpus = make_corpus(tmp_path_factory.mktemp("hf-corpus"))
    manifest = prepare(corpus, S3Uri.parse(bucket.uri("hf/data")), shard_tokens=50_000, val_fraction=0.05,
                       tokenizer=tokenizer_file)
    assert manifest["tokenizer"]["type"] == "huggingface"
    assert 320 < manifest["tokenizer"]["id_limit"] <= VOCAB_SIZE, "ids beyond the byte-level preset's rows"
    return bucket.uri("hf/data/manifest.json")


@pytest.fixture(scope="module")
def run(s3: S3Server, bucket: Bucket, hf_dataset: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Two ranks train `tiny` with --vocab-size on the BPE data and export; returns rank 0's stdout."""
    args = ["--data", hf_dataset, "--checkpoints", bucket.uri("hf/ckpt"), "--export", bucket.uri("hf/export"),
            *TINY, "--vocab-size", str(VOCAB_SIZE), "--max-steps", str(STEPS), "--checkpoint-every", str(STEPS),
            "--eval-batches", "1", "--local-dir", str(tmp_path_factory.mktemp("hf-run"))]
    proc = torchrun(args, subprocess_env(s3.env()), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


@pytest.fixture(scope="module")
def export(run: str, bucket: Bucket, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's export, downloaded."""
    return download(bucket, "hf/export/", tmp_path_factory.mktemp("hf-export"))


def ours(folder: Path) -> GPT:
    """Our GPT with the export's weights (built from its config.json: our loader refuses its tokenizer)."""
    model = GPT(hf.gpt_config(json.loads((folder / "config.json").read_text())))
    model.load_state_dict(hf.from_hf(hf.load_weights(folder)))
    return model.eval()


def test_the_run_trains_the_bpe_ids_and_exports_its_tokenizer_unchanged(
        run: str, export: Path, bucket: Bucket, tokenizer_file: Path) -> None:
    losses = [e["loss"] for e in events(run, "step")]
    assert losses and all(loss == loss for loss in losses)  # not NaN: every id had an embedding row
    assert (export / "tokenizer.json").read_bytes() == tokenizer_file.read_bytes()
    assert (export / "tokenizer_config.json").read_bytes() == tokenizer_file.with_name("tokenizer_config.json").read_bytes()
    manifest = json.loads((export / "manifest.json").read_text())["files"]
    assert manifest["tokenizer.json"]["sha256"] == hashlib.sha256(tokenizer_file.read_bytes()).hexdigest()
    config = json.loads((export / "config.json").read_text())
    generation = json.loads((export / "generation_config.json").read_text())
    # <|endoftext|> is BOS and EOS, <|pad|> the pad token: ids 0 and 1, from the dataset's tokenizer_config.json.
    assert (config["vocab_size"], config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (
        VOCAB_SIZE, 0, 0, 1)
    assert generation == {"bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 1}
    # The export holds the trained weights, all 512 embedding rows of them.
    trained = bucket.checkpoint(f"hf/ckpt/step-{STEPS:09d}")["model"]
    model = ours(export)
    assert model.tok_emb.weight.shape == (VOCAB_SIZE, 64)
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in trained.items())


def test_transformers_loads_the_export_with_its_tokenizer_and_our_logits(export: Path, tokenizer_file: Path) -> None:
    original = Tokenizer.from_file(str(tokenizer_file))
    tokenizer = AutoTokenizer.from_pretrained(export)
    for text in TEXTS:
        ids = tokenizer(text)["input_ids"]
        assert ids == original.encode(text).ids
        assert tokenizer.decode(ids) == original.decode(ids) == text
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1)
    loaded, info = AutoModelForCausalLM.from_pretrained(export, output_loading_info=True)
    assert isinstance(loaded, GPT2LMHeadModel)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    ids = torch.tensor([tokenizer(TEXTS[0] * 3)["input_ids"][:48]])
    assert ids.max() >= 320, "the input uses ids beyond the byte-level rows"
    with torch.inference_mode():
        torch.testing.assert_close(loaded.eval()(ids).logits, ours(export)(ids), atol=1e-4, rtol=0)


def test_our_server_refuses_the_export_and_names_the_vllm_runtime(export: Path) -> None:
    with pytest.raises(ExportError, match=r"tokenizer.json: not a tokenizer our server can use .*our server serves "
                                          r"byte-level exports only: serve this model with the vLLM runtime"):
        load_export(export)


def test_resuming_with_another_vocab_size_is_refused_naming_the_flag(
        run: str, bucket: Bucket, hf_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--data", hf_dataset, "--checkpoints", bucket.uri("hf/ckpt"), *TINY, "--vocab-size", "576",
                 "--max-steps", str(STEPS + 1), "--local-dir", str(tmp_path)])
    assert code == 2
    assert (f"error: --vocab-size: {bucket.uri('hf/ckpt')}/step-{STEPS:09d} holds a model with {VOCAB_SIZE} embedding "
            f"rows, not 576; use --vocab-size {VOCAB_SIZE} or a new --checkpoints prefix") in capsys.readouterr().err


def test_a_vocab_size_below_the_tokenizers_ids_fails_at_start_with_the_value_to_set(
        bucket: Bucket, hf_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    id_limit = json.loads(bucket.read("hf/data/manifest.json"))["tokenizer"]["id_limit"]
    code = main(["--data", hf_dataset, "--checkpoints", bucket.uri("hf/small-vocab"), *TINY, "--max-steps", "5",
                 "--local-dir", str(tmp_path)])
    assert code == 2
    assert (f"error: --vocab-size: {hf_dataset} was tokenized with ids up to {id_limit - 1} (id_limit {id_limit}), "
            f"more than the model's 320 embedding rows; set --vocab-size {VOCAB_SIZE} (id_limit rounded up to a "
            "multiple of 64)") in capsys.readouterr().err
    assert bucket.keys("hf/small-vocab/") == []


@pytest.mark.parametrize("change", ["tampered", "missing"])
def test_a_tokenizer_that_is_not_the_one_that_made_the_ids_is_refused(
        change: str, bucket: Bucket, hf_dataset: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prefix = f"hf/{change}/"
    bucket.copy_prefix("hf/data/", prefix)
    tokenizer = bucket.uri(prefix + "tokenizer.json")
    if change == "tampered":
        bucket.write(prefix + "tokenizer.json", bucket.read(prefix + "tokenizer.json").replace(b"<|pad|>", b"<|PAD|>"))
        expected = f"error: --data: {tokenizer} is not the tokenizer that made the ids (sha256 "
    else:
        bucket.client().delete_object(Bucket=bucket.name, Key=prefix + "tokenizer.json")
        expected = (f"error: --data: the tokenizer {bucket.uri(prefix + 'manifest.json')} names is unreadable at "
                    f"{tokenizer} (")
    code = main(["--data", bucket.uri(prefix), "--checkpoints", bucket.uri(prefix + "ckpt"), *TINY,
                 "--vocab-size", str(VOCAB_SIZE), "--max-steps", "5", "--local-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert expected in err and "; re-run prepare" in err, err
    assert bucket.keys(prefix + "ckpt/") == []


def dataset_tokenizer(data: S3Uri) -> HfTokenizerExport:
    """The tokenizer the trainer takes from the dataset at `data` into its export."""
    tokenizer = read_manifest(data).model_tokenizer("tiny", VOCAB_SIZE)
    assert isinstance(tokenizer, HfTokenizerExport)
    return tokenizer


def test_a_tampered_tokenizer_config_is_refused_naming_the_data(bucket: Bucket, hf_dataset: str) -> None:
    bucket.copy_prefix("hf/data/", "hf/config-tampered/")
    config = json.loads(bucket.read("hf/config-tampered/tokenizer_config.json"))
    bucket.write("hf/config-tampered/tokenizer_config.json", json.dumps({**config, "pad_token": None}).encode())
    manifest = read_manifest(S3Uri.parse(bucket.uri("hf/config-tampered/")))
    with pytest.raises(DataError, match=r"^--data: s3://.*/hf/config-tampered/tokenizer_config.json is not the "
                                        r"tokenizer config that made the ids \(sha256 [0-9a-f]{64}, the manifest says "
                                        r"[0-9a-f]{64}\); re-run prepare$"):
        manifest.model_tokenizer("tiny", VOCAB_SIZE)


def test_a_re_prepare_without_a_config_leaves_none_for_the_export(bucket: Bucket, tokenizer_file: Path,
                                                                   tmp_path: Path) -> None:
    # Prepared with the BPE and its config, then into the same prefix with a BPE whose one special token needs none.
    corpus, out = make_corpus(tmp_path / "corpus"), S3Uri.parse(bucket.uri("hf/again"))
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train([str(p) for p in sorted(corpus.iterdir())], trainers.BpeTrainer(
        vocab_size=300, special_tokens=[SPECIALS[0]], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    alone = tmp_path / "tokenizer.json"
    bpe.save(str(alone))
    first = prepare(corpus, out, shard_tokens=50_000, val_fraction=0.0, tokenizer=tokenizer_file)
    config = tokenizer_file.with_name("tokenizer_config.json").read_bytes()
    assert first["tokenizer"]["config_sha256"] == hashlib.sha256(config).hexdigest()
    assert dataset_tokenizer(out).tokenizer_config == config
    second = prepare(corpus, out, shard_tokens=50_000, val_fraction=0.0, tokenizer=alone)
    assert second["tokenizer"]["config_sha256"] is None
    assert "hf/again/tokenizer_config.json" not in bucket.keys("hf/again/")
    tokenizer = dataset_tokenizer(out)
    assert (tokenizer.tokenizer_config, tokenizer.pad_id) == (None, None)


@pytest.mark.parametrize("manifest_lists", ["no config", "nothing (an older manifest)"])
def test_a_config_beside_the_data_is_used_only_when_the_manifest_allows(
        manifest_lists: str, bucket: Bucket, hf_dataset: str) -> None:
    prefix = f"hf/stray-{manifest_lists.split()[0]}/"
    bucket.copy_prefix("hf/data/", prefix)
    manifest = json.loads(bucket.read(prefix + "manifest.json"))
    if manifest_lists == "no config":
        manifest["tokenizer"]["config_sha256"] = None  # as prepare writes it for a tokenizer without a config
    else:
        del manifest["tokenizer"]["config_sha256"]
    bucket.write(prefix + "manifest.json", json.dumps(manifest).encode())
    tokenizer = dataset_tokenizer(S3Uri.parse(bucket.uri(prefix)))
    # A listed "no config" ignores the stray file; a manifest from before config_sha256 takes it, as it always did.
    used = tokenizer.tokenizer_config == bucket.read(prefix + "tokenizer_config.json")
    assert (used, tokenizer.pad_id) == ((False, None) if manifest_lists == "no config" else (True, 1))


def test_an_export_of_a_tokenizer_without_a_config_gets_a_minimal_one(tokenizer_file: Path, tmp_path: Path) -> None:
    raw = tokenizer_file.read_bytes()
    tokenizer = HfTokenizerExport.parse(raw, None, eos_id=0)
    model = GPT(preset_config("tiny", VOCAB_SIZE))
    save_export(model, tmp_path, tokenizer=tokenizer)
    assert (tmp_path / "tokenizer.json").read_bytes() == raw
    assert json.loads((tmp_path / "tokenizer_config.json").read_text()) == {
        "tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>", "model_max_length": 256}
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert (loaded.eos_token_id, loaded.bos_token_id, loaded.pad_token_id, loaded.model_max_length) == (
        0, None, None, 256)
    # No BOS or pad: null in config.json, not GPT2Config's default 50256, an id beyond the vocabulary.
    hf_model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert (hf_model.config.eos_token_id, hf_model.config.bos_token_id, hf_model.config.pad_token_id) == (0, None, None)
    assert hf_model.generation_config.eos_token_id == 0
    with pytest.raises(ValueError, match=r"eos_token has id 0, but the documents end with id 1"):
        HfTokenizerExport.parse(raw, json.dumps(TOKENIZER_CONFIG).encode(), eos_id=1)
    small = GPT(preset_config("tiny"))
    with pytest.raises(ValueError, match=r"has ids up to \d+, beyond the model's vocab_size 320"):
        save_export(small, tmp_path / "small", tokenizer=tokenizer)


@pytest.fixture(scope="module")
def vllm_hf(tokenizer_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VllmServer, GPT]]:
    """vLLM (float32) serving an export of a random `mini` (vLLM's CPU attention rejects `tiny`'s 16-wide heads)
    with --vocab-size rows and the BPE tokenizer; yields the server and the model."""
    torch.manual_seed(0)
    model = GPT(preset_config("mini", VOCAB_SIZE)).eval()
    with torch.no_grad():
        model.ln_f.weight.mul_(20.0)  # clear winners, as tests/support/vllm.py's mini export has
    tokenizer = HfTokenizerExport.parse(tokenizer_file.read_bytes(),
                                        tokenizer_file.with_name("tokenizer_config.json").read_bytes(), eos_id=0)
    folder = tmp_path_factory.mktemp("vllm-hf")
    save_export(model, folder / "export", tokenizer=tokenizer)
    with vllm_server(folder / "export", folder / "vllm.log", extra_args=(VLLM_DTYPE_FLAG, "float32")) as server:
        yield server, model


def test_vllm_serves_the_export_with_its_tokenizer_and_our_logprobs(vllm_hf: tuple[VllmServer, GPT],
                                                                    tokenizer_file: Path) -> None:
    server, model = vllm_hf
    response = httpx.post(f"{server.base_url}/v1/completions", timeout=60, json={
        "model": server.model, "prompt": PROMPT, "max_tokens": 1, "temperature": 0, "prompt_logprobs": 3,
        "return_token_ids": True})
    response.raise_for_status()
    choice = response.json()["choices"][0]
    ids = Tokenizer.from_file(str(tokenizer_file)).encode(PROMPT).ids
    assert choice["prompt_token_ids"] == ids and max(ids) >= 320, "vLLM encodes with the data's BPE"
    with torch.inference_mode():
        ours = torch.log_softmax(model(torch.tensor([ids]))[0].double(), dim=-1)
    compared = 0
    for position, entry in enumerate(choice["prompt_logprobs"][1:], start=1):
        for token, logprob in entry.items():
            assert abs(logprob["logprob"] - float(ours[position - 1, int(token)])) <= 1e-4, (position, token)
            compared += 1
    assert compared >= 3 * (len(ids) - 1)
