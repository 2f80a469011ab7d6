"""The Hugging Face export: transformers loads it and computes, generates and tokenizes exactly as we do."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
import torch
from safetensors.torch import save_model
from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2LMHeadModel

from tests.workloads.serve.support import train_tiny
from workloads.common import s3
from workloads.common.uri import S3Uri
from workloads.lm import hf
from workloads.lm.export import ExportError, load_export, save_export, write_manifest
from workloads.lm.layout import LEGACY_FORMAT, MANIFEST_FILE, WEIGHTS_INDEX_FILE
from workloads.lm.model import GPT
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.completion import GenerationRequest
from workloads.serve.generation import generate
from workloads.serve.lm_backend import LmBackend
from workloads.serve.loader import load_backend
from workloads.serve.settings import ServeSettings
from workloads.trainer_torch.exporting import upload_export

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TEXTS = ("the quick brown fox", "", "héllo wörld ✓ 😀", "tabs\tand\nnewlines  and  spaces ", "<|eos|> is text here")
"""Strings the tokenizers must agree on: ASCII, empty, multi-byte UTF-8, whitespace runs."""


@pytest.fixture(scope="module")
def model() -> GPT:
    """A briefly trained tiny model, so greedy decoding has clear winners."""
    return train_tiny(steps=60)


@pytest.fixture(scope="module")
def export(model: GPT, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model exported into one folder."""
    folder = tmp_path_factory.mktemp("hf") / "tiny"
    save_export(model, folder, meta={"step": 60})
    return folder


def fixed_input() -> torch.Tensor:
    """Two fixed sequences of byte ids, BOS first."""
    tokenizer = ByteTokenizer()
    ids = [tokenizer.encode(text * 4, bos=True)[:40] for text in ("the lazy dog sleeps. ", "a cat in the sun. ")]
    return torch.tensor(ids)


def load_hf(folder: Path) -> GPT2LMHeadModel:
    """The export through transformers' auto class, checking no weight was missing or left over."""
    loaded, info = AutoModelForCausalLM.from_pretrained(folder, output_loading_info=True)
    assert isinstance(loaded, GPT2LMHeadModel)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    return loaded.eval()


def assert_same_logits(hf_model: GPT2LMHeadModel, model: GPT) -> None:
    """transformers' logits equal ours to 1e-4 on the fixed input."""
    with torch.inference_mode():
        theirs, ours = hf_model(fixed_input()).logits, model(fixed_input())
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


def test_transformers_loads_the_export_as_gpt2_with_our_logits(export: Path, model: GPT) -> None:
    hf_model = load_hf(export)
    assert hf_model.config.activation_function == "gelu_pytorch_tanh"
    assert hf_model.config.tie_word_embeddings and hf_model.lm_head.weight is hf_model.transformer.wte.weight
    assert_same_logits(hf_model, model)


def test_greedy_generation_in_transformers_matches_our_server_token_for_token(export: Path, model: GPT) -> None:
    hf_model, tokenizer = load_hf(export), ByteTokenizer()
    for prompt in ("the quick", "a lazy cat"):
        prompt_ids = tokenizer.encode(prompt, bos=True)
        with torch.inference_mode():
            out = hf_model.generate(torch.tensor([prompt_ids]), max_new_tokens=48, do_sample=False)
        theirs = out[0, len(prompt_ids):].tolist()
        ours = generate(model, [GenerationRequest(tuple(prompt_ids), max_tokens=48)],
                        eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)[0]
        assert ours.text.isascii(), "the ids below are the text's bytes only for ASCII output"
        expected = tokenizer.encode(ours.text) + ([tokenizer.eos_id] if ours.finish_reason == "stop" else [])
        assert theirs == expected and len(theirs) == ours.completion_tokens
        assert len(theirs) > 8


def test_a_left_padded_batch_in_transformers_generates_what_our_batched_server_does(export: Path, model: GPT) -> None:
    hf_model, hf_tokenizer, tokenizer = load_hf(export), AutoTokenizer.from_pretrained(export), ByteTokenizer()
    prompts = ["the quick", "a lazy cat sleeps in"]
    batch = hf_tokenizer(prompts, return_tensors="pt", padding=True)
    assert batch["input_ids"][0, 0] == tokenizer.pad_id, "tokenizer_config pads on the left"
    with torch.inference_mode():
        out = hf_model.generate(**batch, max_new_tokens=30, do_sample=False)
    theirs = hf_tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
    requests = [GenerationRequest(tuple(tokenizer.encode(p, bos=True)), max_tokens=30) for p in prompts]
    ours = generate(model, requests, eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    assert theirs == [result.text for result in ours]


def test_auto_tokenizer_encodes_decodes_and_frames_like_our_byte_tokenizer(export: Path) -> None:
    ours, theirs = ByteTokenizer(), AutoTokenizer.from_pretrained(export)
    assert (theirs.bos_token_id, theirs.eos_token_id, theirs.pad_token_id) == (ours.bos_id, ours.eos_id, ours.pad_id)
    for text in TEXTS[:4]:
        assert theirs(text)["input_ids"] == ours.encode(text, bos=True)
        assert theirs(text, add_special_tokens=False)["input_ids"] == ours.encode(text)
        assert theirs.decode(ours.encode(text, bos=True, eos=True), skip_special_tokens=True) == text
    chat = theirs.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True)
    assert chat["input_ids"] == ours.encode("<|user|>\nhi\n<|assistant|>\n", bos=True)


def test_special_token_text_in_a_prompt_becomes_the_special_id_as_in_any_hf_tokenizer(export: Path) -> None:
    # The one divergence from our byte tokenizer, which has no text form of its specials.
    ids = AutoTokenizer.from_pretrained(export)(TEXTS[4], add_special_tokens=False)["input_ids"]
    assert ids[0] == ByteTokenizer().eos_id and ids[1:] == ByteTokenizer().encode(TEXTS[4][len("<|eos|>"):])


def test_our_loader_reads_the_export_back_exactly(export: Path, model: GPT) -> None:
    loaded, tokenizer, config = load_export(export)
    assert tokenizer == ByteTokenizer() and loaded.config == model.config
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    assert config["modelplane_meta"] == {"step": 60}
    listed = set(json.loads((export / MANIFEST_FILE).read_text())["files"])
    assert listed == {p.name for p in export.iterdir()} - {MANIFEST_FILE}


def test_weights_past_the_shard_limit_are_sharded_with_an_index(model: GPT, tmp_path: Path) -> None:
    files = save_export(model, tmp_path, max_shard_bytes=64 * 1024)
    shards = [name for name in files if name.startswith("model-")]
    assert len(shards) > 3 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    assert not (tmp_path / "model.safetensors").exists()
    index = json.loads((tmp_path / WEIGHTS_INDEX_FILE).read_text())
    assert sorted(set(index["weight_map"].values())) == shards
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in hf.to_hf(model.state_dict()).values())
    assert files[-1] == MANIFEST_FILE and set(files[:-1]) == set(json.loads((tmp_path / MANIFEST_FILE).read_text())[
        "files"])
    assert_same_logits(load_hf(tmp_path), model)
    loaded, _, _ = load_export(tmp_path)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_tensor_larger_than_the_limit_gets_a_shard_of_its_own(tmp_path: Path) -> None:
    state = {"a": torch.zeros(10), "big": torch.zeros(100), "c": torch.zeros(10), "d": torch.zeros(10)}
    files = hf.save_weights(state, tmp_path, max_shard_bytes=100)
    weight_map = json.loads((tmp_path / WEIGHTS_INDEX_FILE).read_text())["weight_map"]
    assert files[:-1] == [f"model-0000{i}-of-00003.safetensors" for i in (1, 2, 3)]
    assert [weight_map[name][:11] for name in state] == ["model-00001", "model-00002", "model-00003", "model-00003"]
    assert hf.load_weights(tmp_path).keys() == state.keys()


@pytest.mark.usefixtures("s3")
def test_trainer_export_path_uploads_to_s3_and_transformers_loads_the_download(model: GPT, tmp_path: Path) -> None:
    boto3.client("s3").create_bucket(Bucket="hf-export")
    uri = S3Uri("hf-export", "models/tiny/1")
    upload_export(model, uri, {"step": 60})
    assert s3.download_dir(uri, tmp_path)
    assert_same_logits(load_hf(tmp_path), model)
    assert load_export(tmp_path)[2]["modelplane_meta"] == {"step": 60}


def test_private_v1_exports_still_load(model: GPT, tmp_path: Path) -> None:
    save_model(model, str(tmp_path / "model.safetensors"))
    config = {"format": LEGACY_FORMAT, "model": model.config.to_dict(), "tokenizer": ByteTokenizer().to_dict()}
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_manifest(tmp_path, ["model.safetensors", "config.json"])
    loaded, tokenizer, _ = load_export(tmp_path)
    assert tokenizer == ByteTokenizer()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    backend = load_backend(ServeSettings.parse(["--model-uri", str(tmp_path)], {}))
    assert isinstance(backend, LmBackend) and backend.encode("hi") == (256, 104, 105)


def test_the_server_refuses_a_folder_that_is_no_export_naming_both_formats(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ValueError, match=r"holds neither an LM export \(config.json with model_type 'gpt2'"):
        load_backend(ServeSettings.parse(["--model-uri", str(tmp_path)], {}))


def test_a_gpt2_config_our_model_cannot_run_is_refused_naming_the_setting(export: Path, tmp_path: Path) -> None:
    for item in export.iterdir():
        (tmp_path / item.name).write_bytes(item.read_bytes())
    config = json.loads((tmp_path / "config.json").read_text()) | {"activation_function": "gelu_new"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    write_manifest(tmp_path, [p.name for p in tmp_path.iterdir() if p.name != MANIFEST_FILE])
    with pytest.raises(ExportError, match=r"'activation_function': 'gelu_new'.*needs.*'gelu_pytorch_tanh'"):
        load_export(tmp_path)
