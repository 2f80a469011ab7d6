"""Token shards: the manifest format, verified downloads, windows and the resumable sampler.

A dataset is a prefix holding `manifest.json` and raw little-endian uint16 shards (and, when a Hugging Face
tokenizer made them, that tokenizer.json, which the export carries). Each training
example is a window of `seq_len + 1` tokens inside one shard (inputs plus shifted targets). The
order of windows is a pure function of (seed, epoch), and the data position is one integer,
the number of windows consumed so far across all ranks. That makes resume exact and lets
each rank compute its own slice without coordination.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from botocore.exceptions import ClientError

from workloads.common import s3
from workloads.common.hashing import sha256_file
from workloads.common.uri import S3Uri
from workloads.lm.hf_tokenizer import ExportTokenizer, HfTokenizerExport
from workloads.lm.layout import MANIFEST_FILE, TOKENIZER_CONFIG_FILE
from workloads.lm.tokenizer import ByteTokenizer

FORMAT: Final = "modelplane-tokens/v1"
"""The `format` value of a dataset's manifest.json (the same file name as an export's, `workloads.lm.layout`)."""
DTYPE: Final = "<u2"
"""Little-endian uint16: any tokenizer with at most 65,536 ids fits (prepare checks), at half the size of int32."""


class DataError(RuntimeError):
    """The dataset is missing, malformed or corrupt; the message names `--data` and the fix."""


@dataclass(frozen=True)
class ShardInfo:
    """One shard as listed in the manifest."""

    key: str
    """Object name relative to the manifest's prefix."""
    tokens: int
    """Tokens in the shard."""
    sha256: str
    """Hex sha256 of the shard's bytes."""

    @property
    def nbytes(self) -> int:
        """Expected size of the shard file."""
        return self.tokens * np.dtype(DTYPE).itemsize


@dataclass(frozen=True)
class DatasetManifest:
    """A parsed `manifest.json`."""

    uri: S3Uri
    """Where the manifest was read from; shard keys are relative to its folder."""
    splits: dict[str, list[ShardInfo]]
    """Shards per split (`train`, and `val` when prepared with a validation fraction)."""
    tokenizer: dict[str, Any]
    """The tokenizer that produced the ids."""

    @classmethod
    def parse(cls, uri: S3Uri, data: dict[str, Any]) -> DatasetManifest:
        """Validate the JSON structure; raise `DataError` naming the bad field."""
        if data.get("format") != FORMAT:
            raise DataError(f"--data: {uri} has format {data.get('format')!r}, expected {FORMAT!r}; re-run prepare")
        try:
            splits = {
                name: [ShardInfo(str(s["key"]), int(s["tokens"]), str(s["sha256"])) for s in split["shards"]]
                for name, split in data["splits"].items()
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"--data: {uri} is malformed ({exc!r}); re-run prepare") from exc
        if not splits.get("train"):
            raise DataError(f"--data: {uri} lists no train shards; re-run prepare on a non-empty corpus")
        return cls(uri=uri, splits=splits, tokenizer=dict(data.get("tokenizer", {})))

    def model_tokenizer(self, model: str, vocab_size: int, client: Any | None = None) -> ExportTokenizer:
        """The tokenizer that made the ids, for the export: the byte tokenizer, or the dataset's Hugging Face
        tokenizer (downloaded and checked against the manifest); `DataError` when `vocab_size` rows cannot embed
        its ids."""
        if self.tokenizer.get("type") == "huggingface":
            return self._hf_tokenizer(vocab_size, client)
        try:
            tokenizer = ByteTokenizer.from_dict(self.tokenizer)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"--data: {self.uri} was not made by the byte tokenizer or a Hugging Face tokenizer.json "
                            f"({exc}); re-run prepare") from exc
        if tokenizer.vocab_size > vocab_size:
            raise DataError(f"--data: {self.uri} was made by a byte tokenizer with {tokenizer.vocab_size} ids "
                            f"({self.tokenizer}), more than --model {model} embeds ({vocab_size}); prepare with "
                            f"special ids below {vocab_size}, or raise --vocab-size to {_rows(tokenizer.vocab_size)}")
        return tokenizer

    def _hf_tokenizer(self, vocab_size: int, client: Any | None) -> HfTokenizerExport:
        """The Hugging Face tokenizer.json (and tokenizer_config.json, if any) that prepare put beside the manifest.

        The config is checked against the entry's `config_sha256`; when that is null the manifest lists no config
        and any file beside it is ignored. Manifests from before that key take whatever config is there.
        """
        try:
            file, digest = str(self.tokenizer["file"]), str(self.tokenizer["sha256"])
            id_limit, eos_id = int(self.tokenizer["id_limit"]), int(self.tokenizer["eos_id"])
            listed = "config_sha256" in self.tokenizer
            config_digest = self.tokenizer.get("config_sha256")
            if config_digest is not None and not isinstance(config_digest, str):
                raise TypeError(f"config_sha256 {config_digest!r} is not a hex string")
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"--data: {self.uri} has a malformed tokenizer entry ({exc!r}); re-run prepare") from exc
        if id_limit > vocab_size:
            raise DataError(f"--vocab-size: {self.uri} was tokenized with ids up to {id_limit - 1} (id_limit "
                            f"{id_limit}), more than the model's {vocab_size} embedding rows; set --vocab-size "
                            f"{_rows(id_limit)} (id_limit rounded up to a multiple of 64)")
        uri = self.folder.join(file)
        config_uri = self.folder.join(TOKENIZER_CONFIG_FILE)
        try:
            raw = s3.get_bytes(uri, client)
        except ClientError as exc:
            raise DataError(f"--data: the tokenizer {self.uri} names is unreadable at {uri} ({exc}); re-run "
                            "prepare") from exc
        config = None
        try:
            if config_digest is not None or (not listed and s3.exists(config_uri, client)):
                config = s3.get_bytes(config_uri, client)
        except ClientError as exc:
            raise DataError(f"--data: the tokenizer config beside {self.uri} is unreadable at {config_uri} ({exc}); "
                            "re-run prepare") from exc
        _verify(uri, raw, digest, "tokenizer")
        if config is not None and config_digest is not None:
            _verify(config_uri, config, config_digest, "tokenizer config")
        try:
            return HfTokenizerExport.parse(raw, config, eos_id=eos_id)
        except Exception as exc:  # tokenizers raises a bare Exception for a malformed file
            raise DataError(f"--data: the tokenizer beside {self.uri} is unusable ({exc}); re-run prepare") from exc

    @property
    def folder(self) -> S3Uri:
        """The prefix holding the manifest, its shards and its tokenizer."""
        return S3Uri(self.uri.bucket, self.uri.key.rsplit("/", 1)[0] if "/" in self.uri.key else "")

    def shard_uri(self, shard: ShardInfo) -> S3Uri:
        """The S3 URI of `shard`."""
        return self.folder.join(shard.key)


def _verify(uri: S3Uri, body: bytes, digest: str, what: str) -> None:
    """`DataError` unless `body` (read from `uri`) has the sha256 the manifest lists for the dataset's `what`."""
    actual = hashlib.sha256(body).hexdigest()
    if actual != digest:
        raise DataError(f"--data: {uri} is not the {what} that made the ids (sha256 {actual}, the manifest "
                        f"says {digest}); re-run prepare")


def _rows(ids: int) -> int:
    """Embedding rows for `ids` token ids: rounded up to a multiple of 64, the width fast matmuls want."""
    return -(-ids // 64) * 64


def manifest_uri(data: S3Uri) -> S3Uri:
    """The manifest of `--data`: the URI itself when it names manifest.json, else the manifest under that prefix."""
    if data.key.rsplit("/", 1)[-1] == MANIFEST_FILE:
        return data
    return data.join(MANIFEST_FILE)


def read_manifest(data: S3Uri, client: Any | None = None) -> DatasetManifest:
    """Fetch and parse the manifest of `--data` (a prefix or its manifest.json); a missing one is a clear `DataError`."""
    uri = manifest_uri(data)
    try:
        raw = s3.get_bytes(uri, client)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in {"NoSuchKey", "404", "NoSuchBucket", "NotFound"}:
            raise DataError(f"--data: no manifest at {uri} ({code}); run "
                            "`python -m workloads.trainer_torch.prepare` first or fix the URI") from exc
        raise DataError(f"--data: cannot read {uri}: {exc}") from exc
    try:
        return DatasetManifest.parse(uri, json.loads(raw))
    except json.JSONDecodeError as exc:
        raise DataError(f"--data: {uri} is not valid JSON ({exc}); re-run prepare") from exc


def fetch_shard(manifest: DatasetManifest, shard: ShardInfo, cache: Path, client: Any | None = None) -> Path:
    """Download one shard into the content-addressed `cache`, verifying size and sha256.

    The file is renamed into place only after it verifies, so a present file is a good one and
    restarts (or other ranks on the node) reuse it without downloading again.
    """
    target = cache / f"{shard.sha256}.bin"
    if target.is_file() and target.stat().st_size == shard.nbytes:
        return target
    partial = cache / f"{shard.sha256}.part-{os.getpid()}"
    uri = manifest.shard_uri(shard)
    try:
        s3.download_file(uri, partial, client)
    except ClientError as exc:
        raise DataError(f"--data: shard {shard.key} listed in {manifest.uri} is unreadable at {uri}: {exc}") from exc
    actual = sha256_file(partial)
    size = partial.stat().st_size
    if actual != shard.sha256 or size != shard.nbytes:
        partial.unlink()
        raise DataError(f"--data: shard {shard.key} is corrupt: checksum mismatch (manifest sha256 {shard.sha256}, "
                        f"{shard.nbytes} bytes; downloaded sha256 {actual}, {size} bytes); re-run prepare")
    partial.replace(target)
    return target


def fetch_split(manifest: DatasetManifest, split: str, cache: Path, client: Any | None = None) -> list[Path]:
    """Download and verify every shard of `split`; returns local paths in manifest order."""
    cache.mkdir(parents=True, exist_ok=True)
    return [fetch_shard(manifest, shard, cache, client) for shard in manifest.splits.get(split, [])]


def cached_split(manifest: DatasetManifest, split: str, cache: Path) -> list[Path]:
    """Local paths of a split that `fetch_split` already verified (on this node)."""
    return [cache / f"{shard.sha256}.bin" for shard in manifest.splits.get(split, [])]


class TokenWindows:
    """Non-overlapping windows of `seq_len + 1` tokens over memory-mapped shards."""

    def __init__(self, paths: list[Path], seq_len: int) -> None:
        self.seq_len = seq_len
        self.arrays = [np.memmap(p, dtype=DTYPE, mode="r") for p in paths]
        counts = [max(0, (len(a) - 1) // seq_len) for a in self.arrays]
        self.starts = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def window(self, index: int) -> np.ndarray:
        """Tokens of window `index`: `seq_len + 1` ids."""
        shard = int(np.searchsorted(self.starts, index, side="right")) - 1
        offset = (index - int(self.starts[shard])) * self.seq_len
        return np.asarray(self.arrays[shard][offset : offset + self.seq_len + 1])

    def batch(self, indices: np.ndarray) -> np.ndarray:
        """Windows stacked as int64 [len(indices), seq_len + 1]."""
        return np.stack([self.window(int(i)) for i in indices]).astype(np.int64)


class WindowSampler:
    """An endless, seeded stream of window ids: epoch e is a permutation drawn from (seed, e)."""

    def __init__(self, num_windows: int, seed: int) -> None:
        if num_windows < 1:
            raise ValueError("num_windows must be >= 1")
        self.num_windows = num_windows
        self.seed = seed
        self._epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def permutation(self, epoch: int) -> np.ndarray:
        """The window order of `epoch` (PCG64 seeded with [seed, epoch]: stable across numpy versions)."""
        if epoch != self._epoch:
            rng = np.random.Generator(np.random.PCG64([self.seed, epoch]))
            self._perm = rng.permutation(self.num_windows)
            self._epoch = epoch
        return self._perm

    def take(self, start: int, count: int) -> np.ndarray:
        """Window ids at global stream positions [start, start + count)."""
        out = np.empty(count, dtype=np.int64)
        for i, position in enumerate(range(start, start + count)):
            epoch, offset = divmod(position, self.num_windows)
            out[i] = self.permutation(epoch)[offset]
        return out


def rank_start(consumed: int, micro_step: int, rank: int, world_size: int, micro_batch: int) -> int:
    """Stream position of a rank's micro-batch: one step's ranks and micro-steps tile it without overlap."""
    return consumed + (micro_step * world_size + rank) * micro_batch
