"""vLLM serves the export as GPT-2 and computes what our model computes, with our tokens and chat template.

The suite's vLLM (tests/conftest.py) serves in float32, so the comparison is tight enough to catch a small mapping
error such as the wrong GELU approximation.
"""

from __future__ import annotations

from typing import Any

import httpx
import torch

from tests.support.vllm import VllmServer
from workloads.lm.export import load_export
from workloads.serve.chat import ChatTemplate
from workloads.serve.completion import GenerationRequest
from workloads.serve.generation import generate

PROMPT = "the quick brown fox jumps"
"""A prompt whose every position vLLM scores."""


def completion(vllm: VllmServer, **body: Any) -> dict[str, Any]:
    """vLLM's /v1/completions answer for `body`."""
    response = httpx.post(f"{vllm.base_url}/v1/completions", json={"model": vllm.model, **body}, timeout=60)
    response.raise_for_status()
    choice: dict[str, Any] = response.json()["choices"][0]
    return choice


def test_vllms_prompt_logprobs_equal_our_models(vllm: VllmServer) -> None:
    model, tokenizer, _ = load_export(vllm.model_dir)
    ids = tokenizer.encode(PROMPT, bos=True)
    choice = completion(vllm, prompt=PROMPT, max_tokens=1, temperature=0, prompt_logprobs=3, return_token_ids=True)
    assert choice["prompt_token_ids"] == ids, "vLLM encodes the prompt as our server does, BOS first"
    with torch.inference_mode():
        ours = torch.log_softmax(model(torch.tensor([ids]))[0].double(), dim=-1)
    scored = choice["prompt_logprobs"]
    assert scored[0] is None and len(scored) == len(ids)
    compared = 0
    for position, entry in enumerate(scored[1:], start=1):
        for token, logprob in entry.items():
            # Each position's top 3 and the actual next token, from the logits of the position before.
            expected = float(ours[position - 1, int(token)])
            assert abs(logprob["logprob"] - expected) <= 1e-4, (position, token, expected, logprob)
            compared += 1
    assert compared >= 3 * (len(ids) - 1)


def test_vllms_greedy_tokens_equal_our_servers(vllm: VllmServer) -> None:
    # A random model repeats a few tokens, so this checks the decode loop end to end; the logprobs test above is
    # the exact check of the weights.
    model, tokenizer, _ = load_export(vllm.model_dir)
    for prompt in ("a lazy cat", PROMPT):
        theirs = completion(vllm, prompt=prompt, max_tokens=24, temperature=0, return_token_ids=True)["token_ids"]
        ours = generate(model, [GenerationRequest(tuple(tokenizer.encode(prompt, bos=True)), max_tokens=24)],
                        eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)[0]
        assert len(theirs) == ours.completion_tokens == 24
        assert bytes(theirs).decode("utf-8", errors="replace") == ours.text


def test_vllm_renders_the_chat_template_to_our_servers_tokens(vllm: VllmServer) -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "héllo ✓"}]
    response = httpx.post(f"{vllm.base_url}/tokenize", timeout=30,
                          json={"model": vllm.model, "messages": messages, "add_generation_prompt": True})
    response.raise_for_status()
    _, tokenizer, _ = load_export(vllm.model_dir)
    text = "<|system|>\nbe brief\n<|user|>\nhéllo ✓\n<|assistant|>\n"
    chat = ChatTemplate.from_export(vllm.model_dir)
    assert chat is not None
    assert response.json()["tokens"] == list(chat.encode(messages)) == tokenizer.encode(text, bos=True)
