"""Training data: scikit-learn's shipped digits, or image-record shards under an S3 prefix.

Everything here is numpy and boto3, so a bad `--data` fails before TensorFlow is imported.
Data sets are read whole into memory: each worker then keeps its own shard of the training split.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from botocore.exceptions import BotoCoreError, ClientError

from workloads.common import s3
from workloads.common.settings import SettingsError
from workloads.common.uri import S3Uri
from workloads.trainer_tf.config import DIGITS
from workloads.trainer_tf.records import SHARD_SUFFIX, ImageSet, RecordError, concat, decode_shard

HOLDOUT_FRACTION = 0.2
"""Share of the examples kept out of training to measure accuracy."""

DIGITS_MAX_VALUE = 16.0
"""scikit-learn's digits are 0..16 intensities; they are rescaled to uint8 0..255."""


def load_digits() -> ImageSet:
    """The 1,797 8x8 digits images that ship inside scikit-learn (no download)."""
    # Imported on use: scikit-learn takes seconds to import and only this source needs it.
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    pixels = np.round(bunch.images * (255.0 / DIGITS_MAX_VALUE)).astype(np.uint8)[..., np.newaxis]
    class_names = tuple(str(name) for name in bunch.target_names)
    return ImageSet(pixels, bunch.target.astype(np.int64), class_names)


def shard_keys(uri: S3Uri, client: Any | None = None) -> list[str]:
    """The `.npz` shard keys under the prefix `uri`, in key order."""
    prefix = uri.key.rstrip("/") + "/" if uri.key else ""
    return [key for key in s3.list_keys(S3Uri(uri.bucket, prefix), client) if key.endswith(SHARD_SUFFIX)]


def load_s3_records(uri: S3Uri) -> ImageSet:
    """Every image-record shard under `uri`, joined; `SettingsError` naming `--data` when there are none."""
    client = s3.client()
    try:
        keys = shard_keys(uri, client)
        if not keys:
            raise SettingsError(f"--data: no {SHARD_SUFFIX} image-record shards under '{uri}'; convert images with "
                              "`python -m workloads.trainer_tf.convert`")
        shards = [(f"s3://{uri.bucket}/{key}", decode_shard(s3.get_bytes(S3Uri(uri.bucket, key), client),
                                                           f"--data s3://{uri.bucket}/{key}")) for key in keys]
        return concat(shards)
    except RecordError as exc:
        raise SettingsError(f"--data: {exc}") from exc
    except (ClientError, BotoCoreError) as exc:
        raise SettingsError(f"--data: cannot read '{uri}' ({exc})") from exc


def load_images(source: str) -> ImageSet:
    """Load the `--data` source."""
    if source == DIGITS:
        return load_digits()
    return load_s3_records(S3Uri.parse(source, flag="--data"))


def split_holdout(data: ImageSet, seed: int, fraction: float = HOLDOUT_FRACTION) -> tuple[ImageSet, ImageSet]:
    """(train, held-out): a permutation drawn from `seed`, so every worker and every rerun agrees."""
    if len(data) < 2:
        raise SettingsError(f"--data: need at least 2 examples to hold some out (got {len(data)})")
    order = np.random.default_rng(seed).permutation(len(data))
    n_holdout = min(len(data) - 1, max(1, round(len(data) * fraction)))
    return data.take(order[n_holdout:]), data.take(order[:n_holdout])
