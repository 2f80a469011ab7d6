"""A byte-level tokenizer: nothing to download, every string round-trips exactly."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

BYTE_VOCAB: Final = 256


@dataclass(frozen=True)
class ByteTokenizer:
    """Token ids 0..255 are raw UTF-8 bytes; the specials follow them."""

    bos_id: int = 256
    """Beginning-of-document token id."""
    eos_id: int = 257
    """End-of-document token id (generation stops on it)."""
    pad_id: int = 258
    """Padding token id (never attended to)."""

    @property
    def vocab_size(self) -> int:
        """Ids in use: 256 bytes plus the specials."""
        return max(self.bos_id, self.eos_id, self.pad_id) + 1

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """UTF-8 bytes of `text`, optionally framed by BOS/EOS."""
        ids = list(text.encode("utf-8"))
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def decode(self, ids: list[int]) -> str:
        """Text from ids; specials are dropped and broken UTF-8 is replaced, never raised."""
        return bytes(i for i in ids if 0 <= i < BYTE_VOCAB).decode("utf-8", errors="replace")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form written into an export's config."""
        return {"type": "byte", "bos_id": self.bos_id, "eos_id": self.eos_id, "pad_id": self.pad_id}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ByteTokenizer:
        """Inverse of `to_dict`."""
        if data.get("type") != "byte":
            raise ValueError(f"tokenizer.type: only 'byte' is supported (got {data.get('type')!r})")
        return cls(bos_id=int(data["bos_id"]), eos_id=int(data["eos_id"]), pad_id=int(data["pad_id"]))
