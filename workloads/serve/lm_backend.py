"""The LM backend: the PyTorch trainer's export behind the engine, `/v1/completions` and v2.

Prompts are encoded with BOS first (`[bos] + utf-8 bytes`), the same framing the trainer gives
every document, so `prompt_tokens` counts the BOS. Over the v2 protocol the LM takes a BYTES
input `text_input` (one string per row) and returns a BYTES output `text_output`; generation
options come from the request's `parameters` (max_tokens, temperature, top_p, seed, stop).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from workloads.lm.hf_tokenizer import BOS_TOKEN, EOS_TOKEN, PAD_TOKEN
from workloads.lm.model import GPT
from workloads.lm.tokenizer import BYTE_VOCAB, ByteTokenizer
from workloads.serve.backends import BatchSink, InvalidInputError, ModelInfo, TensorSpec
from workloads.serve.chat import ChatTemplate
from workloads.serve.generation import GenerationRequest, GenerationResult, generate

TEXT_INPUT = "text_input"
"""v2 input name of the LM: BYTES, shape [rows]."""
TEXT_OUTPUT = "text_output"
"""v2 output name of the LM: BYTES, shape [rows]."""


class LmParameters(BaseModel):
    """Generation options of a v2 LM request (`parameters` object)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_tokens: int = Field(16, ge=1)
    """Most tokens to generate per row. Defaults to 16."""
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    """0 = greedy. Defaults to 0 (v2 clients expect repeatable tensors)."""
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    """Nucleus sampling mass. Defaults to 1."""
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    """Sampling seed. Defaults to a fresh one per request."""
    stop: list[str] = Field(default_factory=list, max_length=4)
    """Stop strings. Defaults to none."""


class LmBackend:
    """A GPT export that generates text in batches."""

    def __init__(self, model: GPT, tokenizer: ByteTokenizer, *, name: str, version: str, digest: str,
                 max_tokens_cap: int, chat: ChatTemplate | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.chat = chat
        self.vocab_size = model.config.vocab_size
        self.max_tokens_cap = max_tokens_cap
        self.context_length = model.config.max_seq_len
        self.info = ModelInfo(
            name=name, version=version, digest=digest, platform="modelplane_lm",
            inputs=(TensorSpec(TEXT_INPUT, "BYTES", (-1,)),), outputs=(TensorSpec(TEXT_OUTPUT, "BYTES", (-1,)),),
        )

    def encode(self, prompt: str) -> tuple[int, ...]:
        """Prompt token ids: BOS, then the UTF-8 bytes."""
        return tuple(self.tokenizer.encode(prompt, bos=True))

    def encode_chat(self, messages: list[dict[str, Any]]) -> tuple[int, ...]:
        """Prompt token ids for chat `messages`, through the export's chat template."""
        if self.chat is None:
            raise InvalidInputError("this model's export has no chat template (tokenizer_config.json "
                                    "'chat_template'); use /v1/completions", param="messages")
        return self.chat.encode(messages)

    def token_text(self, token_id: int) -> str:
        """A token as logprobs show it: the character of an ASCII byte, `bytes:\\xNN` for others, or its name."""
        if token_id < BYTE_VOCAB:
            return chr(token_id) if token_id < 0x80 else f"bytes:\\x{token_id:02x}"
        names = {self.tokenizer.bos_id: BOS_TOKEN, self.tokenizer.eos_id: EOS_TOKEN, self.tokenizer.pad_id: PAD_TOKEN}
        return names.get(token_id, f"<|{token_id}|>")

    def token_bytes(self, token_id: int) -> list[int]:
        """The UTF-8 bytes a token adds to the text (none for special tokens)."""
        return [token_id] if token_id < BYTE_VOCAB else []

    def check_fits(self, prompt_ids: Sequence[int], max_tokens: int) -> None:
        """Raise `InvalidInputError` when prompt plus `max_tokens` exceed the cap or the context window."""
        if max_tokens > self.max_tokens_cap:
            raise InvalidInputError(
                f"must be at most {self.max_tokens_cap} (got {max_tokens})", param="max_tokens"
            )
        if len(prompt_ids) + max_tokens > self.context_length:
            raise InvalidInputError(
                f"this model's context is {self.context_length} tokens; the prompt has {len(prompt_ids)} "
                f"and max_tokens asks for {max_tokens}: shorten the prompt or lower max_tokens",
                param="prompt",
            )

    def warm_up(self) -> None:
        """One small batch through the real batched path (two prompt lengths, padding included)."""
        requests = [GenerationRequest(self.encode("warm"), max_tokens=2), GenerationRequest(self.encode(""), 2)]
        self._generate(requests, None)

    def can_join(self, batch: Sequence[object], payload: object) -> bool:
        """The padded prompt width plus the largest max_tokens must fit the context window."""
        requests = [cast(GenerationRequest, p) for p in (*batch, payload)]
        width = max(len(r.prompt_ids) for r in requests)
        return width + max(r.max_tokens for r in requests) <= self.context_length

    def run_batch(self, payloads: Sequence[object], sink: BatchSink) -> None:
        """Generate for every payload; each result is emitted as soon as its row finishes."""
        self._generate([cast(GenerationRequest, p) for p in payloads], sink)

    def _generate(self, requests: list[GenerationRequest], sink: BatchSink | None) -> list[GenerationResult]:
        return generate(
            self.model, requests, eos_id=self.tokenizer.eos_id, pad_id=self.tokenizer.pad_id,
            on_text=(lambda i, text: sink.emit(i, text, done=False)) if sink else None,
            on_done=(lambda i, result: sink.emit(i, result, done=True)) if sink else None,
            is_cancelled=sink.cancelled if sink else None,
            on_step=sink.count_tokens if sink else None,
        )

    def v2_payloads(self, inputs: Mapping[str, np.ndarray], parameters: Mapping[str, Any]) -> list[object]:
        """One generation per `text_input` row, with options from `parameters`."""
        if set(inputs) != {TEXT_INPUT}:
            raise InvalidInputError(f"expected exactly one input named {TEXT_INPUT!r} (got {sorted(inputs)})",
                               param="inputs")
        rows = inputs[TEXT_INPUT]
        if rows.dtype != np.dtype(object) or rows.ndim != 1 or rows.size == 0:
            raise InvalidInputError(f"{TEXT_INPUT} must be BYTES with shape [rows], rows >= 1", param="inputs[0]")
        options = self._parameters(parameters)
        payloads: list[object] = []
        for index, text in enumerate(rows.tolist()):
            ids = self.encode(str(text))
            try:
                self.check_fits(ids, options.max_tokens)
            except InvalidInputError as exc:
                where = "parameters.max_tokens" if exc.param == "max_tokens" else f"inputs[0].data[{index}]"
                raise InvalidInputError(str(exc), param=where) from exc
            payloads.append(GenerationRequest(
                ids, options.max_tokens, options.temperature, options.top_p, options.seed, tuple(options.stop)
            ))
        return payloads

    @staticmethod
    def _parameters(parameters: Mapping[str, Any]) -> LmParameters:
        try:
            return LmParameters.model_validate(dict(parameters))
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"])
            raise InvalidInputError(error["msg"], param=f"parameters.{field}") from exc

    def v2_outputs(self, results: Sequence[object]) -> dict[str, np.ndarray]:
        """`text_output`: one string per row."""
        texts = [cast(GenerationResult, r).text for r in results]
        return {TEXT_OUTPUT: np.array(texts, dtype=object)}

    def is_deterministic(self, parameters: Mapping[str, Any]) -> bool:
        """Greedy or seeded generation repeats exactly."""
        options = self._parameters(parameters)
        return options.temperature == 0 or options.seed is not None


def pick_device(name: str) -> torch.device:
    """`auto` -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
