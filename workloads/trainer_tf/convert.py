"""Convert an image folder (`ROOT/<class name>/<image file>`) into image-record shards.

    python -m workloads.trainer_tf.convert --src s3://BUCKET/raw/ --dst s3://BUCKET/records/ --size 32x32

`--src` and `--dst` may each be a local folder or an S3 prefix. Class indices follow the sorted
class folder names. Images are decoded with TensorFlow (PNG, JPEG, GIF, BMP) and resized to
`--size` when given; otherwise every image must already have the same size.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import tensorflow as tf
from pydantic import Field, field_validator

from workloads.common import s3
from workloads.common.logs import log_event
from workloads.common.settings import SettingsError, WorkloadSettings
from workloads.common.uri import S3Uri, S3UriError, s3_uri_problem
from workloads.common.vocab import CONVERT_ENV_PREFIX
from workloads.trainer_tf.records import SHARD_SUFFIX, RecordError, encode_shard

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp"})
"""File name suffixes read as images; other files are ignored."""


class ConvertSettings(WorkloadSettings):
    """Convert an image folder into image-record shards."""

    env_prefix: ClassVar[str] = CONVERT_ENV_PREFIX
    prog: ClassVar[str] = "python -m workloads.trainer_tf.convert"

    src: str
    """Image folder ROOT/<class>/<image>: a local folder or an s3://BUCKET/PREFIX."""
    dst: str
    """Where the .npz shards go: a local folder or an s3://BUCKET/PREFIX."""
    size: tuple[int, int] | None = None
    """HEIGHTxWIDTH to resize to, e.g. 32x32. Defaults to none (keep; every image must then have the same size)."""
    channels: Literal[1, 3] = 1
    """Channels to decode to. Defaults to 1 (grayscale). Valid values: 1, 3."""
    shard_size: int = Field(10_000, ge=1)
    """Images per shard. Defaults to 10,000. Valid: >= 1."""

    @field_validator("size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        height, sep, width = value.lower().partition("x")
        if not sep or not height.isdigit() or not width.isdigit() or int(height) < 1 or int(width) < 1:
            raise ValueError("expected HEIGHTxWIDTH such as 32x32")
        return int(height), int(width)

    @field_validator("src", "dst")
    @classmethod
    def _check_location(cls, value: str) -> str:
        problem = s3_uri_problem(value) if value.startswith("s3://") else None
        if problem:
            raise ValueError(problem)
        return value


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise RecordError(f"--src: '{root}' is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise RecordError(f"--src: no class folders under '{root}'; expected ROOT/<class name>/<image file>")
    return folders


def _decode(path: Path, options: ConvertSettings) -> np.ndarray:
    image = tf.io.decode_image(path.read_bytes(), channels=options.channels, expand_animations=False)
    if options.size is not None:
        image = tf.image.resize(image, options.size, method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    pixels: np.ndarray = image.numpy().astype(np.uint8)
    return pixels


def read_image_folder(root: Path, options: ConvertSettings) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(images, labels, class_names) of every image under `root`'s class folders."""
    folders = _class_folders(root)
    images: list[np.ndarray] = []
    labels: list[int] = []
    for label, folder in enumerate(folders):
        for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
            pixels = _decode(path, options)
            if images and pixels.shape != images[0].shape:
                raise RecordError(f"--src: '{path}' is {pixels.shape}, others are {images[0].shape}; pass --size")
            images.append(pixels)
            labels.append(label)
    if not images:
        raise RecordError(f"--src: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{root}'")
    return np.stack(images), np.array(labels, dtype=np.int64), tuple(folder.name for folder in folders)


def shard_bodies(
    images: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...], shard_size: int
) -> list[tuple[str, bytes]]:
    """(file name, .npz bytes) of each shard, `shard_size` images apiece."""
    count = max(1, -(-len(labels) // shard_size))
    return [
        (f"shard-{index:05d}-of-{count:05d}{SHARD_SUFFIX}",
         encode_shard(images[start:start + shard_size], labels[start:start + shard_size], class_names))
        for index, start in enumerate(range(0, len(labels), shard_size))
    ]


def convert_image_folder(options: ConvertSettings) -> list[str]:
    """Convert the folder at `src` (local or s3://) into shards at `dst` (local or s3://). Returns their paths."""
    src, dst = options.src, options.dst
    with tempfile.TemporaryDirectory(prefix="convert-") as scratch:
        root = Path(src)
        if src.startswith("s3://"):
            root = Path(scratch)
            s3.download_dir(S3Uri.parse(src, flag="--src"), root)
        images, labels, class_names = read_image_folder(root, options)
    written = []
    for name, body in shard_bodies(images, labels, class_names, options.shard_size):
        if dst.startswith("s3://"):
            target = S3Uri.parse(dst, flag="--dst").join(name)
            s3.put_bytes(target, body)
            written.append(str(target))
        else:
            path = Path(dst) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
            written.append(str(path))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert one image folder; exit 2 on bad input."""
    try:
        settings = ConvertSettings.parse(argv)
        written = convert_image_folder(settings)
    except SettingsError as exc:
        for message in exc.errors:
            print(f"error: {message}", file=sys.stderr)
        return 2
    except (RecordError, S3UriError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log_event("converted", src=settings.src, dst=settings.dst, shards=written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
