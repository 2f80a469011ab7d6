"""Penalties, logit_bias and logprobs in generation, and chat prompts from the export's template."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest
import torch
from transformers import AutoTokenizer

from tests.workloads.serve.support import live_server
from workloads.lm.export import write_manifest
from workloads.lm.layout import MANIFEST_FILE, TOKENIZER_CONFIG_FILE
from workloads.lm.model import GPT
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.chat import ChatTemplate
from workloads.serve.generation import GenerationRequest, allowed_tokens, generate

TOKENIZER = ByteTokenizer()


@torch.inference_mode()
def _reference_penalised(model: GPT, prompt: str, max_tokens: int, *, presence: float, frequency: float,
                         bias: dict[int, float]) -> str:
    """Greedy decoding with OpenAI's penalty formula, by the plainest loop (full forward each step)."""
    ids = TOKENIZER.encode(prompt, bos=True)
    allowed = allowed_tokens(model.config.vocab_size, TOKENIZER.eos_id, torch.device("cpu"))
    counts = torch.zeros(model.config.vocab_size, dtype=torch.float64)
    out: list[int] = []
    for _ in range(max_tokens):
        logits = model(torch.tensor([ids]))[0, -1].masked_fill(~allowed, float("-inf")).double()
        for token, value in bias.items():
            logits[token] += value
        logits = logits - frequency * counts - presence * (counts > 0)
        token = int(logits.argmax())
        if token == TOKENIZER.eos_id:
            break
        counts[token] += 1
        ids.append(token)
        out.append(token)
    return TOKENIZER.decode(out)


def _generate(model: GPT, prompt: str, max_tokens: int, **options: object) -> str:
    request = GenerationRequest(tuple(TOKENIZER.encode(prompt, bos=True)), max_tokens, **options)  # type: ignore[arg-type]
    return generate(model, [request], eos_id=TOKENIZER.eos_id, pad_id=TOKENIZER.pad_id)[0].text


@pytest.mark.parametrize(("presence", "frequency", "bias"), [
    (2.0, 0.0, {ord("o"): -3.0}), (0.0, 2.0, {}), (0.5, 1.0, {}), (-2.0, 0.0, {ord("e"): 5.0}),
])
def test_penalties_and_bias_equal_the_reference_formula(tiny_model: GPT, presence: float, frequency: float,
                                                        bias: dict[int, float]) -> None:
    plain = _generate(tiny_model, "the quick", 40)
    ours = _generate(tiny_model, "the quick", 40, presence_penalty=presence, frequency_penalty=frequency,
                     logit_bias=tuple(bias.items()))
    assert ours == _reference_penalised(tiny_model, "the quick", 40, presence=presence, frequency=frequency,
                                        bias=bias)
    assert ours != plain, "the controls changed the text, so the comparison means something"


def test_logprobs_report_top_k_and_stop_cut_tokens(tiny_model: GPT) -> None:
    plain = _generate(tiny_model, "the quick", 20)
    stop = plain[8:10]
    request = GenerationRequest(tuple(TOKENIZER.encode("the quick", bos=True)), 20, stop=(stop,), logprobs=4)
    result = generate(tiny_model, [request], eos_id=TOKENIZER.eos_id, pad_id=TOKENIZER.pad_id)[0]
    assert bytes(t.token_id for t in result.tokens).decode() == result.text == plain[: plain.index(stop)]
    assert all(len(t.top) == 4 and t.top[0][0] == t.token_id for t in result.tokens), "greedy picks the top token"
    assert result.completion_tokens > len(result.tokens), "tokens of the stop string are generated, not reported"


def test_chat_prompt_ids_equal_transformers_apply_chat_template(tiny_export: tuple[Path, GPT]) -> None:
    folder = tiny_export[0]
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "héllo <|eos|> there"},
                {"role": "assistant", "content": "hi"}, {"role": "user", "content": "again"}]
    template = ChatTemplate.from_export(folder)
    assert template is not None
    expected = AutoTokenizer.from_pretrained(str(folder)).apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert list(template.encode(messages)) == list(expected)


def _export_with_template(source: Path, target: Path, template: str | None) -> Path:
    shutil.copytree(source, target)
    config_path = target / TOKENIZER_CONFIG_FILE
    config = json.loads(config_path.read_text())
    if template is None:
        config.pop("chat_template")
    else:
        config["chat_template"] = template
    config_path.write_text(json.dumps(config))
    # The manifest covers every file, so rewrite it for the edited config.
    write_manifest(target, sorted(p.name for p in target.iterdir() if p.name != MANIFEST_FILE))
    return target


@pytest.mark.parametrize(("template", "fragment"), [
    (None, "this model's export has no chat template"),
    ("{% if messages[0]['role'] != 'user' %}{{ raise_exception('the first message must be the user') }}{% endif %}",
     "cannot render these messages (the first message must be the user)"),
])
def test_chat_without_a_usable_template_is_400(tiny_export: tuple[Path, GPT], tmp_path: Path,
                                               template: str | None, fragment: str) -> None:
    folder = _export_with_template(tiny_export[0], tmp_path / "export", template)
    body = {"model": "tiny-lm", "messages": [{"role": "system", "content": "x"}]}
    with live_server(str(folder), model_name="tiny-lm") as server:
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == "messages" and fragment in error["message"]
