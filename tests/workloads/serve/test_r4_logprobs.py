"""The generation engine's logprobs cover exactly the returned text: tokens cut off with a stop string are not
reported, even after a byte that is not UTF-8 (which the text shows as one 3-byte U+FFFD)."""

from __future__ import annotations

import torch

from workloads.lm.model import GPT, KVCache
from workloads.lm.presets import PRESETS
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.completion import GenerationRequest
from workloads.serve.generation import generate


class ScriptedGPT(GPT):
    """A GPT whose next token at step i is `script[i]`, whatever the input (the KV cache still advances)."""

    def __init__(self, script: list[int]) -> None:
        super().__init__(PRESETS["tiny"])
        self.script = script
        self.step = 0

    def forward(self, idx: torch.Tensor, *, kv_cache: KVCache | None = None, positions: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits that put all the mass on the scripted token."""
        if kv_cache is not None:
            kv_cache.length += idx.shape[1]
        logits = torch.zeros(idx.shape[0], idx.shape[1], self.config.vocab_size)
        logits[:, -1, self.script[min(self.step, len(self.script) - 1)]] = 30.0
        self.step += 1
        return logits


def _generate(script: bytes, stop: tuple[str, ...], max_tokens: int = 10) -> tuple[str, str, list[int]]:
    tokenizer = ByteTokenizer()
    (result,) = generate(ScriptedGPT(list(script)), [GenerationRequest(tuple(tokenizer.encode("x", bos=True)),
                                                                       max_tokens, stop=stop, logprobs=0)],
                         eos_id=tokenizer.eos_id, pad_id=tokenizer.pad_id)
    return result.text, result.finish_reason, [t.token_id for t in result.tokens]


def test_stop_after_an_invalid_byte_reports_only_the_texts_tokens() -> None:
    text, reason, tokens = _generate(b"\xffabST", ("ST",))
    assert (text, reason) == ("\ufffdab", "stop")
    assert tokens == list(b"\xffab"), "the stop string's S and T are not part of the text"


def test_stop_after_a_multibyte_character_keeps_all_its_bytes() -> None:
    text, _, tokens = _generate("éST".encode(), ("ST",))
    assert (text, tokens) == ("é", list("é".encode()))


def test_without_a_stop_every_generated_byte_is_reported() -> None:
    text, reason, tokens = _generate(b"a\xff\xc3", (), max_tokens=3)
    assert (text, reason) == ("a\ufffd\ufffd", "length")
    assert tokens == list(b"a\xff\xc3")
