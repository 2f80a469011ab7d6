"""Chat prompts: the export's Jinja chat template, rendered in a sandbox and tokenized with its special tokens.

Rendering follows `transformers`' `apply_chat_template` (the renderer vLLM uses too), so our server and vLLM
build the same prompt from the same messages: an `ImmutableSandboxedEnvironment` with `trim_blocks` and
`lstrip_blocks`, the `loopcontrols` extension, `raise_exception` and a non-HTML-escaping `tojson`
(transformers/utils/chat_template_utils.py, `_compile_jinja_template`). The rendered text is then encoded by
the export's own tokenizer.json without adding special tokens, because the template writes them itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from workloads.lm.layout import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from workloads.serve.backends import InvalidInputError

_SPECIAL_KEYS = ("bos_token", "eos_token", "pad_token", "unk_token")
"""tokenizer_config.json keys that templates read as variables."""


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _special_text(value: Any) -> str | None:
    """A special token in tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class ChatTemplate:
    """An export's chat template with the tokenizer that encodes what it renders."""

    def __init__(self, template: str, tokenizer: Tokenizer, special_tokens: dict[str, str]) -> None:
        environment = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                    extensions=[jinja2.ext.loopcontrols])
        environment.filters["tojson"] = _tojson
        environment.globals["raise_exception"] = _raise_exception
        self._template = environment.from_string(template)
        self._tokenizer = tokenizer
        self._special_tokens = special_tokens

    @classmethod
    def from_export(cls, folder: Path) -> ChatTemplate | None:
        """The template of an export folder; None when it has none (chat requests then get 400)."""
        config_path, tokenizer_path = folder / TOKENIZER_CONFIG_FILE, folder / TOKENIZER_FILE
        if not config_path.is_file() or not tokenizer_path.is_file():
            return None
        config = json.loads(config_path.read_text())
        template = config.get("chat_template")
        if not isinstance(template, str):
            return None
        specials = {key: text for key in _SPECIAL_KEYS if (text := _special_text(config.get(key))) is not None}
        try:
            return cls(template, Tokenizer.from_file(str(tokenizer_path)), specials)
        except jinja2.TemplateError as exc:
            raise ValueError(f"{config_path}: chat_template is not a valid Jinja template ({exc})") from exc

    def render(self, messages: list[dict[str, Any]]) -> str:
        """The prompt text for `messages`, ending with the assistant's turn opener."""
        try:
            return self._template.render(messages=messages, add_generation_prompt=True, **self._special_tokens)
        except Exception as exc:  # a template is code run on client input: whatever it raises, the input is at fault
            raise InvalidInputError(f"the model's chat template cannot render these messages ({exc})",
                                    param="messages") from exc

    def encode(self, messages: list[dict[str, Any]]) -> tuple[int, ...]:
        """Prompt token ids for `messages`: the rendered text, special tokens as the template wrote them."""
        return tuple(self._tokenizer.encode(self.render(messages), add_special_tokens=False).ids)
