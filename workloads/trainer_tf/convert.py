"""Convert an image folder (`ROOT/<class name>/<image file>`) into image-record shards.

    python -m workloads.trainer_tf.convert --src s3://BUCKET/raw/ --dst s3://BUCKET/records/ --size 32x32

`--src` and `--dst` may each be a local folder or an S3 prefix. Class indices follow the sorted
class folder names. Images are decoded with TensorFlow (PNG, JPEG, GIF, BMP) and resized to
`--size` when given; otherwise every image must already have the same size.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from workloads.common import s3
from workloads.common.logs import log_event
from workloads.common.uri import S3Uri, S3UriError
from workloads.trainer_tf.records import SHARD_SUFFIX, RecordError, encode_shard

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".bmp"})
"""File name suffixes read as images; other files are ignored."""


@dataclass(frozen=True, kw_only=True)
class ConvertOptions:
    """How images become records."""

    size: tuple[int, int] | None = None
    """(height, width) to resize to. Defaults to None (keep; all images must match)."""
    channels: int = 1
    """Channels to decode to. Defaults to 1 (grayscale). Valid values: 1, 3."""
    shard_size: int = 10_000
    """Images per shard. Defaults to 10,000. Valid values: >= 1."""


def _class_folders(root: Path) -> list[Path]:
    if not root.is_dir():
        raise RecordError(f"--src: '{root}' is not a folder")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if not folders:
        raise RecordError(f"--src: no class folders under '{root}'; expected ROOT/<class name>/<image file>")
    return folders


def _decode(path: Path, options: ConvertOptions) -> np.ndarray:
    image = tf.io.decode_image(path.read_bytes(), channels=options.channels, expand_animations=False)
    if options.size is not None:
        image = tf.image.resize(image, options.size, method="bilinear")
        image = tf.cast(tf.clip_by_value(tf.round(image), 0, 255), tf.uint8)
    pixels: np.ndarray = image.numpy().astype(np.uint8)
    return pixels


def read_image_folder(root: Path, options: ConvertOptions) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
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


def convert_image_folder(src: str, dst: str, options: ConvertOptions) -> list[str]:
    """Convert the folder at `src` (local or s3://) into shards at `dst` (local or s3://). Returns their paths."""
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


def _parse_size(value: str) -> tuple[int, int]:
    height, sep, width = value.lower().partition("x")
    if not sep or not height.isdigit() or not width.isdigit() or int(height) < 1 or int(width) < 1:
        raise argparse.ArgumentTypeError(f"--size: expected HEIGHTxWIDTH such as 32x32 (got {value!r})")
    return int(height), int(width)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: convert one image folder; exit 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m workloads.trainer_tf.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--src", required=True, help="image folder ROOT/<class>/<image>, local or s3://")
    parser.add_argument("--dst", required=True, help="folder or s3:// prefix to write .npz shards to")
    parser.add_argument("--size", type=_parse_size, default=None, help="resize to HEIGHTxWIDTH, e.g. 32x32")
    parser.add_argument("--channels", type=int, choices=(1, 3), default=1, help="1 grayscale or 3 RGB")
    parser.add_argument("--shard-size", type=int, default=10_000, help="images per shard")
    args = parser.parse_args(argv)
    if args.shard_size < 1:
        parser.error(f"--shard-size: must be at least 1 (got {args.shard_size})")
    try:
        written = convert_image_folder(
            args.src, args.dst, ConvertOptions(size=args.size, channels=args.channels, shard_size=args.shard_size)
        )
    except (RecordError, S3UriError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    log_event("converted", src=args.src, dst=args.dst, shards=written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
