"""The image-record shard format, the image-folder converter, and loading shards from the test S3 server."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.support.servers import S3Server
from tests.workloads.files import upload_dir, write_shard
from workloads.common import s3 as s3io
from workloads.common.settings import SettingsError
from workloads.common.uri import S3Uri
from workloads.trainer_tf.convert import ConvertSettings, convert_image_folder, main, read_image_folder
from workloads.trainer_tf.data import load_digits, load_images, split_holdout
from workloads.trainer_tf.records import RecordError, decode_shard, encode_shard


def _bucket() -> str:
    name = f"records-{uuid.uuid4().hex[:10]}"
    s3io.client().create_bucket(Bucket=name)
    return name


def _write_png_folder(root: Path, images: np.ndarray, labels: np.ndarray) -> None:
    for index, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        path = root / f"class-{label}" / f"img-{index:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(tf.io.encode_png(pixels).numpy())


def test_shard_round_trips_images_labels_and_class_names() -> None:
    digits = load_digits()
    body = encode_shard(digits.images[:50], digits.labels[:50], digits.class_names)
    shard = decode_shard(body, "shard")
    np.testing.assert_array_equal(shard.images, digits.images[:50])
    np.testing.assert_array_equal(shard.labels, digits.labels[:50])
    assert shard.class_names == tuple(str(i) for i in range(10))
    assert shard.images.dtype == np.uint8 and shard.images.shape == (50, 8, 8, 1)


def test_digits_are_real_8x8_uint8_images_of_ten_classes() -> None:
    digits = load_digits()
    assert digits.images.shape == (1797, 8, 8, 1)
    assert digits.images.max() == 255 and digits.images.min() == 0
    assert digits.num_classes == 10 and set(digits.labels.tolist()) == set(range(10))


def test_holdout_split_is_deterministic_from_the_seed_and_disjoint() -> None:
    digits = load_digits()
    train_a, held_a = split_holdout(digits, seed=3)
    train_b, held_b = split_holdout(digits, seed=3)
    _, held_c = split_holdout(digits, seed=4)
    np.testing.assert_array_equal(held_a.images, held_b.images)
    assert not np.array_equal(held_a.labels, held_c.labels)
    assert len(held_a) == 359 and len(train_a) + len(held_a) == len(digits)
    assert len(train_b) == len(train_a)


def test_shard_with_a_label_outside_the_classes_is_rejected() -> None:
    images = np.zeros((2, 4, 4, 1), np.uint8)
    with pytest.raises(RecordError, match=r"labels must be in \[0, 2\) for 2 class_names \(got 0\.\.5\)"):
        encode_shard(images, np.array([0, 5]), ("a", "b"))


def test_shard_with_float_images_is_rejected() -> None:
    with pytest.raises(RecordError, match=r"'images' must be uint8 \(N, H, W, C\)"):
        encode_shard(np.zeros((2, 4, 4, 1), np.float32), np.array([0, 1]), ("a", "b"))


def test_npz_without_labels_names_the_missing_array(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, images=np.zeros((1, 2, 2, 1), np.uint8))
    with pytest.raises(RecordError, match=r"x\.npz: missing array\(s\) \['class_names', 'labels'\]"):
        decode_shard(path.read_bytes(), "x.npz")


def test_image_folder_converts_to_shards_with_the_same_pixels(tmp_path: Path) -> None:
    digits = load_digits()
    _write_png_folder(tmp_path / "raw", digits.images[:30], digits.labels[:30])
    written = convert_image_folder(ConvertSettings(src=str(tmp_path / "raw"), dst=str(tmp_path / "out"), shard_size=12))
    assert [Path(p).name for p in written] == [f"shard-{i:05d}-of-00003.npz" for i in range(3)]
    shards = [decode_shard(Path(p).read_bytes(), p) for p in written]
    # Class folders sort by name, so label i is the folder of the i-th smallest digit present.
    present = sorted({int(label) for label in digits.labels[:30]})
    assert shards[0].class_names == tuple(f"class-{d}" for d in present)
    images = np.concatenate([s.images for s in shards])
    labels = np.concatenate([s.labels for s in shards])
    expected = {(present[int(lab)], img.tobytes()) for img, lab in zip(images, labels, strict=True)}
    assert expected == {(int(lab), img.tobytes()) for img, lab in zip(digits.images[:30], digits.labels[:30],
                                                                       strict=True)}


def test_converter_resizes_and_reports_mixed_sizes(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "small.png").write_bytes(tf.io.encode_png(np.zeros((4, 4, 1), np.uint8)).numpy())
    (tmp_path / "a" / "big.png").write_bytes(tf.io.encode_png(np.full((6, 6, 1), 200, np.uint8)).numpy())
    with pytest.raises(RecordError, match="pass --size"):
        read_image_folder(tmp_path, ConvertSettings(src=str(tmp_path), dst="out"))
    images, labels, names = read_image_folder(tmp_path, ConvertSettings(src=str(tmp_path), dst="out", size=(5, 5)))
    assert images.shape == (2, 5, 5, 1) and names == ("a",) and labels.tolist() == [0, 0]
    assert sorted(int(img.max()) for img in images) == [0, 200]


def test_converter_cli_reports_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--src", str(tmp_path / "missing"), "--dst", str(tmp_path / "out")]) == 2
    assert "--src: '" in capsys.readouterr().err


def test_converter_cli_reports_every_bad_flag_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--src", str(tmp_path), "--dst", "s3://", "--size", "32by32", "--channels", "2", "--shard-size", "0"]) == 2
    err = capsys.readouterr().err
    for flag in ("--dst (MODELPLANE_CONVERT_DST)", "--size (MODELPLANE_CONVERT_SIZE): expected HEIGHTxWIDTH such as 32x32",
                 "--channels (MODELPLANE_CONVERT_CHANNELS)", "--shard-size (MODELPLANE_CONVERT_SHARD_SIZE)"):
        assert f"error: {flag}" in err


def test_s3_image_folder_converts_to_s3_shards_the_trainer_loads(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket()
    digits = load_digits()
    _write_png_folder(tmp_path / "raw", digits.images[:20], digits.labels[:20])
    upload_dir(tmp_path / "raw", S3Uri(bucket, "raw"))
    assert main(["--src", f"s3://{bucket}/raw/", "--dst", f"s3://{bucket}/records/", "--shard-size", "15"]) == 0
    loaded = load_images(f"s3://{bucket}/records/")
    assert len(loaded) == 20 and loaded.images.shape[1:] == (8, 8, 1)
    assert sorted(img.tobytes() for img in loaded.images) == sorted(
        img.tobytes() for img in digits.images[:20]
    )


def test_empty_s3_prefix_names_the_data_flag(s3: S3Server) -> None:
    bucket = _bucket()
    with pytest.raises(SettingsError, match=f"--data: no .npz image-record shards under 's3://{bucket}/nothing/'"):
        load_images(f"s3://{bucket}/nothing/")


def test_corrupt_s3_shard_names_the_data_flag_and_key(s3: S3Server) -> None:
    bucket = _bucket()
    s3io.put_bytes(S3Uri(bucket, "records/shard-0.npz"), b"not a zip")
    with pytest.raises(SettingsError, match=f"--data: --data s3://{bucket}/records/shard-0.npz: not a readable .npz"):
        load_images(f"s3://{bucket}/records/")


def test_shards_with_different_classes_are_rejected(s3: S3Server, tmp_path: Path) -> None:
    bucket = _bucket()
    images = np.zeros((2, 4, 4, 1), np.uint8)
    for name, classes in (("a.npz", ("x", "y")), ("b.npz", ("x", "z"))):
        write_shard(tmp_path / name, images, np.array([0, 1]), classes)
    upload_dir(tmp_path, S3Uri(bucket, "r"))
    with pytest.raises(SettingsError, match=f"s3://{bucket}/r/b.npz: class_names differ"):
        load_images(f"s3://{bucket}/r/")
