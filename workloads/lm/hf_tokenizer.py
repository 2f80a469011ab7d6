"""Our byte tokenizer as a Hugging Face `tokenizer.json`, and Hugging Face tokenizers read back.

The export's tokenizer is a byte-level BPE with no merges whose vocabulary maps each byte to its
own id (0..255, through GPT-2's printable byte alphabet, which the ByteLevel pre-tokenizer applies),
and whose special tokens carry our BOS/EOS/pad ids; its post-processor prepends BOS, the framing the
trainer gives every document and our server gives every prompt. So `AutoTokenizer` and vLLM encode
ordinary text to exactly our ids.

Data prepared with any other Hugging Face tokenizer (`prepare --tokenizer`) is exported with that
tokenizer's own files, unchanged (`HfTokenizerExport`); our server serves byte-level exports only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

from workloads.lm.layout import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from workloads.lm.tokenizer import BYTE_VOCAB, ByteTokenizer

BOS_TOKEN: Final = "<|bos|>"
"""Text of the beginning-of-document token."""
EOS_TOKEN: Final = "<|eos|>"
"""Text of the end-of-document token."""
PAD_TOKEN: Final = "<|pad|>"
"""Text of the padding token."""
CHAT_TEMPLATE: Final = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
"""Jinja chat template: BOS, then `<|role|>` lines in plain bytes (the vocabulary has no role tokens)."""


def byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map, the one the ByteLevel pre-tokenizer applies."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)}
    unprintable = iter(range(BYTE_VOCAB, 2 * BYTE_VOCAB))
    return {byte: chr(byte if byte in printable else next(unprintable)) for byte in range(BYTE_VOCAB)}


def build_byte_tokenizer(tokenizer: ByteTokenizer) -> Tokenizer:
    """A `tokenizers.Tokenizer` that encodes text to `tokenizer`'s ids, BOS first."""
    specials = {BOS_TOKEN: tokenizer.bos_id, EOS_TOKEN: tokenizer.eos_id, PAD_TOKEN: tokenizer.pad_id}
    vocab = {char: byte for byte, char in byte_alphabet().items()} | specials
    hf = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    # No regex split: with no merges every byte is its own token anyway, and spaces stay as they are.
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken(text, special=True, normalized=False) for text in specials])
    hf.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A", pair=f"{BOS_TOKEN} $A {BOS_TOKEN} $B", special_tokens=[(BOS_TOKEN, tokenizer.bos_id)]
    )
    return hf


def write_tokenizer(tokenizer: ExportTokenizer, folder: Path, *, max_length: int) -> list[str]:
    """Write tokenizer.json and tokenizer_config.json into `folder`; returns their names."""
    if isinstance(tokenizer, HfTokenizerExport):
        return tokenizer.write(folder, max_length=max_length)
    build_byte_tokenizer(tokenizer).save(str(folder / TOKENIZER_FILE))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": BOS_TOKEN, "eos_token": EOS_TOKEN, "pad_token": PAD_TOKEN,
        "model_max_length": max_length,
        "padding_side": "left",
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (folder / TOKENIZER_CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    return [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]


def as_byte_tokenizer(hf: Tokenizer, where: Path) -> ByteTokenizer:
    """The byte tokenizer `hf` encodes like; `ValueError` naming `where` when it is any other tokenizer."""
    vocab = hf.get_vocab(with_added_tokens=True)
    if any(vocab.get(char) != byte for byte, char in byte_alphabet().items()):
        raise ValueError(f"{where}: not our byte-level tokenizer (ids 0..255 are not the bytes); "
                         "our server serves byte-level exports only: serve this model with the vLLM runtime "
                         "(runtime: vllm)")
    missing = [text for text in (BOS_TOKEN, EOS_TOKEN, PAD_TOKEN) if text not in vocab]
    if missing:
        raise ValueError(f"{where}: special tokens {missing} are missing")
    return ByteTokenizer(bos_id=vocab[BOS_TOKEN], eos_id=vocab[EOS_TOKEN], pad_id=vocab[PAD_TOKEN])


def read_byte_tokenizer(folder: Path) -> ByteTokenizer:
    """The byte tokenizer an export's tokenizer.json encodes; `ValueError` when it is any other tokenizer."""
    return as_byte_tokenizer(Tokenizer.from_file(str(folder / TOKENIZER_FILE)), folder / TOKENIZER_FILE)


def _token_text(value: Any) -> str | None:
    """A special token from tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class HfTokenizerFile:
    """A Hugging Face tokenizer.json that frames documents as its post-processor does, then EOS."""

    def __init__(self, path: Path) -> None:
        file = path / TOKENIZER_FILE if path.is_dir() else path
        self.path = file
        """The tokenizer.json read."""
        self.tokenizer = Tokenizer.from_file(str(file))
        """The loaded tokenizer, without the truncation or padding a tokenizer.json may carry: documents stay whole."""
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()
        self.eos_id = self._eos_id(file)
        """Id appended after every document."""

    @property
    def id_limit(self) -> int:
        """One more than the largest id the tokenizer can produce, special tokens included."""
        return max(self.tokenizer.get_vocab(with_added_tokens=True).values()) + 1

    def encode_document(self, text: str) -> list[int]:
        """Ids of one document: the tokenizer's own framing (e.g. BOS), then EOS unless that framing ends with it."""
        ids: list[int] = self.tokenizer.encode(text, add_special_tokens=True).ids
        return ids if ids and ids[-1] == self.eos_id else [*ids, self.eos_id]

    def _eos_id(self, file: Path) -> int:
        """EOS from tokenizer_config.json beside the file, else the tokenizer's only special token."""
        config_path = file.with_name(TOKENIZER_CONFIG_FILE)
        if config_path.is_file():
            text = _token_text(json.loads(config_path.read_text()).get("eos_token"))
            token_id = self.tokenizer.token_to_id(text) if text else None
            if token_id is None:
                raise ValueError(f"{config_path}: eos_token {text!r} is not in {file}; documents need an end token")
            return int(token_id)
        specials = {t.content: i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        if len(specials) != 1:
            raise ValueError(f"{file}: cannot tell the end-of-document token among special tokens {list(specials)}; "
                             f"put a {TOKENIZER_CONFIG_FILE} with eos_token beside it")
        return int(*specials.values())


@dataclass(frozen=True)
class HfTokenizerExport:
    """A dataset's Hugging Face tokenizer (`prepare --tokenizer`), which the export carries unchanged."""

    tokenizer_json: bytes
    """The dataset's tokenizer.json, byte for byte."""
    tokenizer_config: bytes | None
    """The dataset's tokenizer_config.json, byte for byte; None when it had none (the export gets a minimal one)."""
    eos_token: str
    """Text of the token that ends every document."""
    eos_id: int
    """Id of `eos_token`: generation stops on it."""
    bos_id: int | None
    """Id of tokenizer_config.json's bos_token; None when it names none."""
    pad_id: int | None
    """Id of tokenizer_config.json's pad_token; None when it names none."""
    id_limit: int
    """One more than the largest id the tokenizer can produce, special tokens included."""

    @classmethod
    def parse(cls, tokenizer_json: bytes, tokenizer_config: bytes | None, *, eos_id: int) -> HfTokenizerExport:
        """The tokenizer of a dataset whose documents end with `eos_id`; `ValueError` naming what does not agree."""
        hf = Tokenizer.from_str(tokenizer_json.decode("utf-8"))
        config = json.loads(tokenizer_config) if tokenizer_config is not None else {}
        ids = {}
        for key in ("bos_token", "eos_token", "pad_token"):
            text = _token_text(config.get(key))
            ids[key] = hf.token_to_id(text) if text else None
            if text and ids[key] is None:
                raise ValueError(f"{TOKENIZER_CONFIG_FILE}: {key} {text!r} is not in {TOKENIZER_FILE}")
        if ids["eos_token"] not in (None, eos_id):
            raise ValueError(f"{TOKENIZER_CONFIG_FILE}: eos_token has id {ids['eos_token']}, but the documents end "
                             f"with id {eos_id}")
        eos_token = hf.id_to_token(eos_id)
        if eos_token is None:
            raise ValueError(f"{TOKENIZER_FILE}: has no token with the end-of-document id {eos_id}")
        return cls(tokenizer_json=tokenizer_json, tokenizer_config=tokenizer_config, eos_token=eos_token,
                   eos_id=eos_id, bos_id=ids["bos_token"], pad_id=ids["pad_token"],
                   id_limit=max(hf.get_vocab(with_added_tokens=True).values()) + 1)

    @property
    def vocab_size(self) -> int:
        """Ids in use (as `ByteTokenizer.vocab_size`): every one needs an embedding row."""
        return self.id_limit

    def to_dict(self) -> dict[str, Any]:
        """A short description for messages."""
        return {"type": "huggingface", "eos_id": self.eos_id, "id_limit": self.id_limit}

    def write(self, folder: Path, *, max_length: int) -> list[str]:
        """Write tokenizer.json and tokenizer_config.json (the dataset's, else a minimal one); returns their names."""
        (folder / TOKENIZER_FILE).write_bytes(self.tokenizer_json)
        config = self.tokenizer_config
        if config is None:
            # What AutoTokenizer needs to load tokenizer.json and stop generation at the documents' end token.
            config = json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": self.eos_token,
                                 "model_max_length": max_length}, indent=2, sort_keys=True).encode()
        (folder / TOKENIZER_CONFIG_FILE).write_bytes(config)
        return [TOKENIZER_FILE, TOKENIZER_CONFIG_FILE]


ExportTokenizer = ByteTokenizer | HfTokenizerExport
"""The tokenizer an export carries: ours (byte-level), or the Hugging Face tokenizer its data was prepared with."""
