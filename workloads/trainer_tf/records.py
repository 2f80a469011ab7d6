"""The image-record shard format the trainer reads from S3.

A shard is one `.npz` file (`numpy.savez_compressed`) holding three arrays:

| array         | dtype / shape        | meaning                                                   |
|---------------|----------------------|-----------------------------------------------------------|
| `images`      | uint8 `(N, H, W, C)` | pixels, channels last                                     |
| `labels`      | int64 `(N,)`         | class index of each image, in `[0, len(class_names))`     |
| `class_names` | str `(K,)`           | class names; index i names label i; equal in every shard |

A data set is every `*.npz` object under an S3 prefix, read in key order; all shards share
`H, W, C` and `class_names`. `workloads.trainer_tf.convert` turns an image folder
(`ROOT/<class name>/<image>`) into shards. The format needs only numpy to read, so a shard is
checked before TensorFlow is imported.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

SHARD_SUFFIX = ".npz"
"""File name suffix of an image-record shard."""


class RecordError(ValueError):
    """A shard does not follow the image-record format."""


@dataclass(frozen=True)
class ImageSet:
    """Images with integer labels, in memory."""

    images: np.ndarray
    """uint8 `(N, H, W, C)` pixels."""
    labels: np.ndarray
    """int64 `(N,)` class indices."""
    class_names: tuple[str, ...]
    """Names of the classes; label i is `class_names[i]`."""

    @property
    def num_classes(self) -> int:
        """How many classes the classifier predicts."""
        return len(self.class_names)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray) -> ImageSet:
        """The subset at `index` (an integer index array), in that order."""
        return ImageSet(self.images[index], self.labels[index], self.class_names)


def validate(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], where: str) -> None:
    """Raise `RecordError` naming `where` unless the arrays follow the format."""
    if images.dtype != np.uint8 or images.ndim != 4:
        raise RecordError(f"{where}: 'images' must be uint8 (N, H, W, C) (got {images.dtype} {images.shape})")
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise RecordError(f"{where}: 'labels' must be an integer (N,) array (got {labels.dtype} {labels.shape})")
    if labels.shape[0] != images.shape[0]:
        raise RecordError(f"{where}: {images.shape[0]} images but {labels.shape[0]} labels")
    if not class_names:
        raise RecordError(f"{where}: 'class_names' must list at least one class")
    if labels.size and (labels.min() < 0 or labels.max() >= len(class_names)):
        raise RecordError(f"{where}: labels must be in [0, {len(class_names)}) for {len(class_names)} class_names "
                          f"(got {labels.min()}..{labels.max()})")


def encode_shard(images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...]) -> bytes:
    """The `.npz` bytes of one shard, after validating it."""
    validate(images, labels, class_names, "shard")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=images, labels=labels.astype(np.int64), class_names=np.array(class_names))
    return buffer.getvalue()


def decode_shard(body: bytes, where: str) -> ImageSet:
    """Read one shard from its bytes; `where` names it in errors."""
    try:
        with np.load(io.BytesIO(body), allow_pickle=False) as npz:
            missing = {"images", "labels", "class_names"} - set(npz.files)
            if missing:
                raise RecordError(f"{where}: missing array(s) {sorted(missing)}; see workloads.trainer_tf.records")
            images, labels = npz["images"], npz["labels"]
            class_names = tuple(str(name) for name in npz["class_names"].tolist())
    except (OSError, ValueError) as exc:
        if isinstance(exc, RecordError):
            raise
        raise RecordError(f"{where}: not a readable .npz image-record shard ({exc})") from exc
    validate(images, labels, class_names, where)
    return ImageSet(images, labels.astype(np.int64), class_names)


def concat(shards: list[tuple[str, ImageSet]]) -> ImageSet:
    """Join shards, checking that they agree on image shape and class names."""
    if not shards:
        raise RecordError("no shards to join")
    first_name, first = shards[0]
    for name, shard in shards[1:]:
        if shard.images.shape[1:] != first.images.shape[1:]:
            raise RecordError(f"{name}: image shape {shard.images.shape[1:]} differs from {first_name}'s "
                              f"{first.images.shape[1:]}")
        if shard.class_names != first.class_names:
            raise RecordError(f"{name}: class_names differ from {first_name}'s")
    return ImageSet(
        np.concatenate([s.images for _, s in shards]),
        np.concatenate([s.labels for _, s in shards]),
        first.class_names,
    )
