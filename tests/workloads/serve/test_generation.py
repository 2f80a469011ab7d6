"""Batched generation on its own: equal to the plain reference loop, whatever the batch-mates."""

from __future__ import annotations

from typing import Any

import pytest

from tests.workloads.serve.support import reference_greedy
from workloads.lm.model import GPT
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.generation import GenerationRequest, GenerationResult, TextTracker, generate

TOKENIZER = ByteTokenizer()
PROMPTS = ["the", "the quick brown", "a lazy cat sleeps in the", "", "over the la", "sun. the quick brown fox jumps"]


def _request(prompt: str, max_tokens: int, *, temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
             stop: tuple[str, ...] = ()) -> GenerationRequest:
    return GenerationRequest(tuple(TOKENIZER.encode(prompt, bos=True)), max_tokens, temperature, top_p, seed, stop)


def _run(model: GPT, requests: list[GenerationRequest], **hooks: Any) -> list[GenerationResult]:
    return generate(model, requests, eos_id=TOKENIZER.eos_id, pad_id=TOKENIZER.pad_id, **hooks)


def test_greedy_generation_equals_the_plain_reference_loop(tiny_model: GPT) -> None:
    for prompt in PROMPTS[:3]:
        result = _run(tiny_model, [_request(prompt, 24)])[0]
        assert (result.text, result.finish_reason) == reference_greedy(tiny_model, prompt, 24)


def test_batched_greedy_equals_unbatched_for_mixed_lengths_and_budgets(tiny_model: GPT) -> None:
    requests = [_request(p, 8 + 7 * i, temperature=0.0) for i, p in enumerate(PROMPTS)]
    alone = [_run(tiny_model, [r])[0] for r in requests]
    together = _run(tiny_model, requests)
    assert [r.text for r in together] == [r.text for r in alone]
    assert [r.completion_tokens for r in together] == [8 + 7 * i for i in range(len(PROMPTS))]
    assert {r.finish_reason for r in together} == {"length"}


@pytest.mark.parametrize("top_p", [1.0, 0.9999999999999999])
def test_a_denormal_temperature_samples_like_greedy(tiny_model: GPT, top_p: float) -> None:
    # Found by schemathesis: temperature 2.2e-309 overflowed logits / T to inf and sampling raised (a 500).
    greedy = _run(tiny_model, [_request("the", 12)])[0]
    tiny = _run(tiny_model, [_request("the", 12, temperature=2.225073858507203e-309, top_p=top_p, seed=7)])[0]
    assert tiny.text == greedy.text


def test_seeded_sampling_does_not_depend_on_batch_mates(tiny_model: GPT) -> None:
    seeded = _request("the", 30, temperature=1.0, top_p=0.9, seed=1234)
    alone = _run(tiny_model, [seeded])[0].text
    mates = [_request(p, 12, temperature=0.7, seed=i) for i, p in enumerate(PROMPTS[1:4])]
    assert _run(tiny_model, [*mates, seeded])[-1].text == alone
    assert _run(tiny_model, [seeded, *mates])[0].text == alone


def test_different_seeds_give_different_samples(tiny_model: GPT) -> None:
    texts = {_run(tiny_model, [_request("the", 40, temperature=1.5, seed=s)])[0].text for s in range(4)}
    assert len(texts) > 1


def test_stop_string_cuts_text_and_finishes_only_its_row(tiny_model: GPT) -> None:
    full = reference_greedy(tiny_model, "the", 40)[0]
    stop = full[10:14]
    results = _run(tiny_model, [_request("the", 40, stop=(stop,)), _request("the", 40)])
    assert results[0].text == full[: full.find(stop)]
    assert results[0].finish_reason == "stop"
    assert results[1].text == full
    assert results[0].completion_tokens < results[1].completion_tokens


def test_streamed_deltas_concatenate_to_the_final_text(tiny_model: GPT) -> None:
    full = reference_greedy(tiny_model, "a lazy", 40)[0]
    stop = full[20:26]
    deltas: dict[int, list[str]] = {0: [], 1: []}
    results = _run(tiny_model, [_request("a lazy", 40, stop=(stop,)), _request("a lazy", 40)],
                   on_text=lambda i, d: deltas[i].append(d))
    for index, result in enumerate(results):
        streamed = "".join(deltas[index])
        assert result.text.startswith(streamed)
        assert len(streamed) >= len(result.text) - len(stop)
    assert results[0].finish_reason == "stop"
    assert stop not in "".join(deltas[0])


def test_cancelled_rows_stop_early(tiny_model: GPT) -> None:
    results = _run(tiny_model, [_request("the", 50), _request("a", 50)], is_cancelled=lambda i: i == 0)
    assert results[0].finish_reason == "cancelled"
    assert results[0].completion_tokens == 1
    assert results[1].completion_tokens == 50


@pytest.mark.parametrize(
    ("pieces", "stop", "deltas", "final"),
    [
        (["he", "llo wor", "ld"], ("wor",), ["he", "llo "], "hello "),
        (["ab", "c"], ("bd",), ["a", "bc"], "abc"),
        (["caf", "\u00e9!"], (), ["caf", "\u00e9!"], "caf\u00e9!"),
    ],
)
def test_text_tracker_holds_back_possible_stop_prefixes(pieces: list[str], stop: tuple[str, ...],
                                                         deltas: list[str], final: str) -> None:
    tracker = TextTracker(stop)
    seen = []
    for piece in pieces:
        stopped = False
        for byte in piece.encode("utf-8"):
            stopped = tracker.push(byte) or stopped
        seen.append(tracker.delta())
        if stopped:
            break
    tracker.finish()
    assert [d for d in seen if d] == deltas
    assert tracker.text == final


def test_text_tracker_never_splits_a_multibyte_character() -> None:
    tracker = TextTracker(())
    encoded = "\u00e9\u20ac".encode()
    pieces = []
    for byte in encoded:
        tracker.push(byte)
        pieces.append(tracker.delta())
    assert pieces == ["", "\u00e9", "", "", "\u20ac"]
