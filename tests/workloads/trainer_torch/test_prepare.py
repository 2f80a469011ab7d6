"""prepare: text files to verified uint16 shards plus a manifest, and clear errors for empty input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from tests.workloads.trainer_torch.support import Bucket
from workloads.common.uri import S3Uri
from workloads.lm.tokenizer import ByteTokenizer
from workloads.trainer_torch.prepare import PrepareError, main, prepare


def test_prepare_writes_framed_documents_in_verified_shards(bucket: Bucket, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("héllo")
    (src / "sub" / "b.txt").write_text("world\n")
    (src / "empty.txt").write_text("")
    (src / "blob.bin").write_bytes(b"\xff\xfe\x00binary")
    manifest = prepare(src, S3Uri.parse(bucket.uri("prep/ok")), shard_tokens=5, val_fraction=0.0)

    assert manifest == json.loads(bucket.read("prep/ok/manifest.json"))
    assert manifest["source"] == {"documents": 2, "tokens": 16}
    shards = manifest["splits"]["train"]["shards"]
    assert [s["tokens"] for s in shards] == [5, 5, 5, 1]
    stream = []
    for shard in shards:
        raw = bucket.read(f"prep/ok/{shard['key']}")
        assert hashlib.sha256(raw).hexdigest() == shard["sha256"]
        stream += np.frombuffer(raw, dtype="<u2").tolist()
    tok = ByteTokenizer()
    assert stream == tok.encode("héllo", bos=True, eos=True) + tok.encode("world\n", bos=True, eos=True)


def test_val_fraction_holds_out_the_tail_of_the_stream(bucket: Bucket, tmp_path: Path) -> None:
    (tmp_path / "doc.txt").write_text("x" * 98)
    manifest = prepare(tmp_path, S3Uri.parse(bucket.uri("prep/val")), shard_tokens=64, val_fraction=0.25)
    assert manifest["splits"]["train"]["tokens"] == 75
    assert manifest["splits"]["val"]["tokens"] == 25
    val = np.frombuffer(bucket.read("prep/val/val-00000.bin"), dtype="<u2")
    assert val[-1] == ByteTokenizer().eos_id


def test_folder_without_text_is_a_clear_error_naming_src(bucket: Bucket, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("  \n")
    with pytest.raises(PrepareError, match=r"^--src: no non-empty UTF-8 text files matching '\*' under "):
        prepare(tmp_path, S3Uri.parse(bucket.uri("prep/none")), shard_tokens=64, val_fraction=0.0)
    assert bucket.keys("prep/none") == []


def test_cli_reports_bad_input_with_exit_code_2(bucket: Bucket, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--src", str(tmp_path / "missing"), "--out", bucket.uri("prep/x")]) == 2
    assert "error: --src: " in capsys.readouterr().err
    assert main(["--src", str(tmp_path), "--out", "/local/path"]) == 2
    expected = "error: --out (MODELPLANE_PREPARE_OUT): expected an s3://BUCKET/PREFIX URI (got '/local/path')"
    assert expected in capsys.readouterr().err
    (tmp_path / "t.txt").write_text("text")
    assert main(["--src", str(tmp_path), "--out", "s3://no-such-bucket-here/x"]) == 2
    assert "error: --out: cannot write to s3://no-such-bucket-here/x" in capsys.readouterr().err


def test_cli_reports_every_bad_flag_at_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--src", str(tmp_path), "--out", "/local/path", "--shard-tokens", "8", "--val-fraction", "0.9"]) == 2
    err = capsys.readouterr().err
    assert "error: --out (MODELPLANE_PREPARE_OUT): expected an s3://BUCKET/PREFIX URI" in err
    assert "error: --shard-tokens (MODELPLANE_PREPARE_SHARD_TOKENS): Input should be greater than or equal to 16 (got '8')" in err
    assert "error: --val-fraction (MODELPLANE_PREPARE_VAL_FRACTION): Input should be less than or equal to 0.5 (got '0.9')" in err


def test_cli_takes_its_settings_from_the_environment(bucket: Bucket, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text("hello")
    monkeypatch.setenv("MODELPLANE_PREPARE_SRC", str(tmp_path))
    monkeypatch.setenv("MODELPLANE_PREPARE_OUT", bucket.uri("prep/env"))
    assert main([]) == 0
    assert bucket.keys("prep/env")
