"""Turn local text files into uint16 token shards plus a manifest, uploaded to S3.

    python -m workloads.trainer_torch.prepare --src DIR --out s3://BUCKET/PREFIX

Every UTF-8 text file under `--src` (sorted, so the output is reproducible) becomes one
document framed as BOS + bytes + EOS by the byte tokenizer, or, with `--tokenizer`, encoded by a
Hugging Face tokenizer.json with its own framing (e.g. BOS) and then EOS, which is uploaded beside the shards
(with its tokenizer_config.json when there is one; both sha256s go in the manifest). Documents are concatenated into
shards of `--shard-tokens` tokens; the last `--val-fraction` of the token stream becomes the
`val` split. Each shard is uploaded as soon as it is written, and `manifest.json` (shard list,
token counts, sha256 per shard) is uploaded last, so a dataset without a manifest is incomplete.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field
from tokenizers import Tokenizer

from workloads.common import s3
from workloads.common.hashing import sha256_file
from workloads.common.logs import log_event
from workloads.common.settings import S3UriSetting, SettingsError, WorkloadSettings
from workloads.common.uri import S3Uri, S3UriError
from workloads.common.vocab import PREPARE_ENV_PREFIX
from workloads.lm.hf_tokenizer import HfTokenizerFile, as_byte_tokenizer
from workloads.lm.layout import MANIFEST_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from workloads.lm.tokenizer import ByteTokenizer
from workloads.trainer_torch.data import DTYPE, FORMAT


class PrepareError(RuntimeError):
    """The corpus or the destination is unusable; the message names the flag."""


def iter_documents(src: Path, pattern: str) -> Iterator[tuple[Path, bytes]]:
    """Non-empty UTF-8 files under `src` matching `pattern`, sorted by path. Binary files are skipped."""
    for path in sorted(p for p in src.rglob(pattern) if p.is_file()):
        raw = path.read_bytes()
        if not raw.strip():
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            log_event("prepare_skipped", path=str(path), reason="not UTF-8 text")
            continue
        yield path, raw


def encode(raw: bytes, tokenizer: ByteTokenizer) -> np.ndarray:
    """Byte-tokenizer ids of one document, BOS/EOS framed (same ids as `tokenizer.encode(text, bos, eos)`)."""
    ids = np.empty(len(raw) + 2, dtype=np.uint16)
    ids[0], ids[-1] = tokenizer.bos_id, tokenizer.eos_id
    ids[1:-1] = np.frombuffer(raw, dtype=np.uint8)
    return ids


def tokenizer_file(path: Path) -> Path:
    """The tokenizer.json `--tokenizer` names: the file itself, or the one in the folder it names."""
    return path / TOKENIZER_FILE if path.is_dir() else path


Encoder = Callable[[bytes], np.ndarray]
"""Token ids of one document (UTF-8 bytes in), framed as the tokenizer frames documents."""


def load_encoder(path: Path | None) -> tuple[Encoder, dict[str, Any]]:
    """The document encoder and its manifest entry: the byte tokenizer, or the tokenizer.json at `path`.

    A tokenizer.json that is our byte tokenizer (an export's) gives the byte tokenizer itself, so
    the trainer accepts the data. Any other one must fit its ids in the shards' uint16.
    """
    if path is None:
        byte = ByteTokenizer()
        return (lambda raw: encode(raw, byte)), byte.to_dict()
    file = tokenizer_file(path)
    try:
        loaded = Tokenizer.from_file(str(file))
    except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
        raise PrepareError(f"--tokenizer: cannot load a Hugging Face tokenizer.json from {path} ({exc})") from exc
    # Ours is recognised by its vocabulary alone, so an export's tokenizer.json works without its config beside it.
    try:
        byte = as_byte_tokenizer(loaded, file)
    except ValueError:  # not our byte tokenizer: encode with it as a Hugging Face tokenizer below
        pass
    else:
        return (lambda raw: encode(raw, byte)), byte.to_dict()
    try:
        hf = HfTokenizerFile(file)
    except ValueError as exc:
        raise PrepareError(f"--tokenizer: {exc}") from exc
    dtype = np.dtype(DTYPE)
    limit = np.iinfo(dtype).max + 1
    if hf.id_limit > limit:
        raise PrepareError(f"--tokenizer: {hf.path} has ids up to {hf.id_limit - 1:,}, but shards store {dtype.name} "
                           f"ids (at most {limit - 1:,}): use a tokenizer with at most {limit:,} ids")
    # config_sha256 is null, not absent, without a config: the trainer then ignores any config beside the manifest.
    config = hf.path.with_name(TOKENIZER_CONFIG_FILE)
    entry = {"type": "huggingface", "file": TOKENIZER_FILE, "sha256": sha256_file(hf.path), "id_limit": hf.id_limit,
             "eos_id": hf.eos_id, "config_sha256": sha256_file(config) if config.is_file() else None}
    return (lambda raw: np.asarray(hf.encode_document(raw.decode("utf-8")), dtype=DTYPE)), entry


class ShardWriter:
    """Buffers tokens into fixed-size shards, uploading each one when it is full."""

    def __init__(self, split: str, out: S3Uri, shard_tokens: int, workdir: Path, client: Any) -> None:
        self.split, self.out, self.shard_tokens, self.workdir, self.client = split, out, shard_tokens, workdir, client
        self.buffer = np.empty(shard_tokens, dtype=DTYPE)
        self.filled = 0
        self.shards: list[dict[str, Any]] = []

    def write(self, ids: np.ndarray) -> None:
        """Append tokens, flushing whole shards as they fill."""
        while len(ids):
            take = min(len(ids), self.shard_tokens - self.filled)
            self.buffer[self.filled : self.filled + take] = ids[:take]
            self.filled += take
            ids = ids[take:]
            if self.filled == self.shard_tokens:
                self.flush()

    def flush(self) -> None:
        """Write and upload the buffered tokens as the next shard (no-op when empty)."""
        if not self.filled:
            return
        key = f"{self.split}-{len(self.shards):05d}.bin"
        payload = self.buffer[: self.filled].tobytes()
        path = self.workdir / key
        path.write_bytes(payload)
        s3.upload_file(path, self.out.join(key), self.client)
        path.unlink()
        self.shards.append({"key": key, "tokens": self.filled, "sha256": hashlib.sha256(payload).hexdigest()})
        self.filled = 0

    def summary(self) -> dict[str, Any]:
        """The split's manifest entry."""
        return {"tokens": sum(s["tokens"] for s in self.shards), "shards": self.shards}


def prepare(src: Path, out: S3Uri, *, shard_tokens: int, val_fraction: float, pattern: str = "*",
            tokenizer: Path | None = None, client: Any | None = None) -> dict[str, Any]:
    """Tokenize `src` into shards under `out`; returns the manifest that was uploaded last."""
    if not src.is_dir():
        raise PrepareError(f"--src: {src} is not a directory")
    encoder, tokenizer_entry = load_encoder(tokenizer)
    # First pass: sizes only, so the validation split can be cut at an exact token count
    # (a Hugging Face tokenizer encodes twice rather than holding the corpus's ids in memory).
    sizes = [len(encoder(raw)) for _, raw in iter_documents(src, pattern)]
    total = sum(sizes)
    if total == 0:
        raise PrepareError(f"--src: no non-empty UTF-8 text files matching {pattern!r} under {src}")
    val_tokens = round(total * val_fraction)
    client = client or s3.client()
    with tempfile.TemporaryDirectory(prefix="modelplane-prepare-") as tmp:
        train = ShardWriter("train", out, shard_tokens, Path(tmp), client)
        val = ShardWriter("val", out, shard_tokens, Path(tmp), client)
        position = 0
        for _, raw in iter_documents(src, pattern):
            ids = encoder(raw)
            cut = max(0, min(len(ids), total - val_tokens - position))
            train.write(ids[:cut])
            val.write(ids[cut:])
            position += len(ids)
        train.flush()
        val.flush()
    if tokenizer is not None and tokenizer_entry["type"] == "huggingface":
        # The dataset carries the tokenizer that made its ids (and its config, for the special tokens), as
        # tokenizer.json beside the manifest that names it, so whatever trains or serves on it can decode them.
        source = tokenizer_file(tokenizer)
        s3.upload_file(source, out.join(TOKENIZER_FILE), client)
        if tokenizer_entry["config_sha256"] is not None:
            s3.upload_file(source.with_name(TOKENIZER_CONFIG_FILE), out.join(TOKENIZER_CONFIG_FILE), client)
        else:  # a config left by an earlier prepare into this prefix belongs to another tokenizer
            config = out.join(TOKENIZER_CONFIG_FILE)
            s3.retrying(client.delete_object)(Bucket=config.bucket, Key=config.key)
    splits = {"train": train.summary()}
    if val.shards:
        splits["val"] = val.summary()
    manifest = {
        "format": FORMAT,
        "dtype": "uint16-le",
        "tokenizer": tokenizer_entry,
        "created": round(time.time(), 3),
        "source": {"documents": len(sizes), "tokens": total},
        "splits": splits,
    }
    s3.put_bytes(out.join(MANIFEST_FILE), json.dumps(manifest, indent=2, sort_keys=True).encode(), client)
    return manifest


class PrepareSettings(WorkloadSettings):
    """Turn local text files into uint16 token shards plus a manifest, uploaded to S3."""

    env_prefix: ClassVar[str] = PREPARE_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.trainer_torch.prepare"

    src: Path
    """Folder of text files (searched recursively)."""
    out: S3UriSetting
    """S3 prefix for the shards and manifest.json: s3://BUCKET/PREFIX."""
    shard_tokens: int = Field(1 << 24, ge=16)
    """Tokens per shard. Defaults to 16Mi (32 MiB). Valid: >= 16."""
    val_fraction: float = Field(0.0, ge=0.0, le=0.5)
    """Fraction of tokens held out as the `val` split. Defaults to 0. Valid: 0 to 0.5."""
    glob: str = "*"
    """Only files whose name matches this pattern. Defaults to all files."""
    tokenizer: Path | None = None
    """A Hugging Face tokenizer.json, or a folder holding one (e.g. an export), with ids below 65536.
    Defaults to none: the byte-level tokenizer."""


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input)."""
    try:
        settings = PrepareSettings.parse(argv)
    except SettingsError as exc:
        for message in exc.errors:
            print(f"error: {message}", file=sys.stderr)
        return 2
    out = settings.out
    try:
        manifest = prepare(settings.src, out, shard_tokens=settings.shard_tokens, val_fraction=settings.val_fraction,
                           pattern=settings.glob, tokenizer=settings.tokenizer)
    except (PrepareError, S3UriError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
        print(f"error: --out: cannot write to {out}: {exc}", file=sys.stderr)
        return 2
    counts = {name: (split["tokens"], len(split["shards"])) for name, split in manifest["splits"].items()}
    log_event("prepared", out=str(out), documents=manifest["source"]["documents"],
              splits={name: {"tokens": t, "shards": n} for name, (t, n) in counts.items()})
    described = ", ".join(f"{name}: {t:,} tokens in {n} shard(s)" for name, (t, n) in counts.items())
    print(f"prepared {manifest['source']['documents']} documents -> {out} ({described})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
