"""The interaction log: planted structure from the loadgen's generator, JSON Lines shards on S3, clear read errors."""

from __future__ import annotations

import gzip
import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.support.dockerfile import REPO_ROOT
from tests.support.servers import S3Server
from tests.workloads.recommend.model_support import CLUSTERS, ITEMS, USERS, cluster_of, new_bucket
from workloads.recommend import storage
from workloads.recommend.dataset import InvalidLogError, encode_shard, read_log, synthetic_log, write_log
from workloads.recommend.loadgen import synthetic_events


def test_the_log_is_the_loadgens_events_stamped_in_order() -> None:
    log = synthetic_log(300, users=USERS, items=ITEMS, clusters=CLUSTERS, seed=4)
    stream = list(synthetic_events(300, users=USERS, items=ITEMS, clusters=CLUSTERS, seed=4))
    assert [(e.event_id, e.user_id, e.item_id, e.type) for e in log] == [
        (e.event_id, e.user_id, e.item_id, e.type) for e in stream]
    assert [b.ts - a.ts for a, b in itertools.pairwise(log)] == [1.0] * 299
    assert encode_shard(log) == encode_shard(synthetic_log(300, users=USERS, items=ITEMS, clusters=CLUSTERS, seed=4))


def test_users_mostly_pick_items_of_their_own_cluster() -> None:
    log = synthetic_log(6000, users=USERS, items=ITEMS, clusters=CLUSTERS, seed=0)
    own = Counter(cluster_of(e.item_id) == int(e.user_id.removeprefix("u")) % CLUSTERS for e in log)
    share = own[True] / len(log)
    # 80% by construction, plus the random picks that land in the own cluster by chance (20% / 6).
    assert 0.8 < share < 0.88, share


def test_a_log_written_to_s3_in_shards_reads_back_whole(s3: S3Server) -> None:
    events = synthetic_log(2500, users=20, items=30, clusters=3, seed=1)
    out = f"s3://{new_bucket()}/logs/v1"
    written = write_log(events, out, shard_events=1000)
    assert written == [f"{out}/part-0000{n}.jsonl.gz" for n in range(3)]
    storage.write_bytes(out, "_SUCCESS", b"")  # not a shard: ignored
    assert read_log(out) == events


def test_a_folder_of_plain_jsonl_reads_too(tmp_path: Path) -> None:
    events = synthetic_log(10, users=3, items=5, clusters=1, seed=2)
    (tmp_path / "a.jsonl").write_bytes(gzip.decompress(encode_shard(events)))
    assert read_log(str(tmp_path)) == events


def test_an_invalid_line_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    good = gzip.decompress(encode_shard(synthetic_log(2, users=1, items=1, clusters=1, seed=0)))
    (tmp_path / "part-00000.jsonl").write_bytes(good + b'{"schema_version": 1, "user_id": "u1"}\n')
    with pytest.raises(InvalidLogError, match=r"part-00000.jsonl line 3: invalid event: 'event_id': Field required"):
        read_log(str(tmp_path))


@pytest.mark.parametrize("damage", ["truncated", "not gzip"])
def test_a_corrupt_shard_exits_2_naming_it_without_a_traceback(tmp_path: Path, damage: str) -> None:
    log = tmp_path / "log"
    write_log(synthetic_log(500, users=5, items=8, clusters=1, seed=0), str(log), shard_events=200)
    shard = log / "part-00001.jsonl.gz"
    body = shard.read_bytes()
    shard.write_bytes(body[: len(body) // 2] if damage == "truncated" else b"not a gzip stream" + body)
    with pytest.raises(InvalidLogError, match=r"part-00001.jsonl.gz: not a readable gzip file \(.+\); rewrite"):
        read_log(str(log))
    result = subprocess.run([sys.executable, "-m", "workloads.recommend.train", "--data", str(log), "--export",
                             str(tmp_path / "export")], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2, result.stderr
    assert f"{log}/part-00001.jsonl.gz: not a readable gzip file" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["folder", "s3"])
def test_rewriting_a_shorter_log_leaves_no_stale_shards(tmp_path: Path, where: str, request: pytest.FixtureRequest) -> None:
    out = str(tmp_path / "log")
    if where == "s3":
        request.getfixturevalue("s3")
        out = f"s3://{new_bucket()}/log"
    write_log(synthetic_log(500, users=5, items=8, clusters=1, seed=0), out, shard_events=100)
    storage.write_bytes(out, "_SUCCESS", b"")
    shorter = synthetic_log(150, users=5, items=8, clusters=1, seed=1)
    write_log(shorter, out, shard_events=100)
    assert storage.list_names(out) == ["_SUCCESS", "part-00000.jsonl.gz", "part-00001.jsonl.gz"]
    assert read_log(out) == shorter


def test_an_empty_location_names_itself_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(InvalidLogError, match=r"no \*.jsonl or \*.jsonl.gz files under it; write a log with"):
        read_log(str(tmp_path / "missing"))


def test_the_command_writes_a_log_and_rejects_a_bad_location(tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "workloads.recommend.dataset", "--out", str(tmp_path / "log"),
                         "--events", "500", "--shard-events", "200"], cwd=REPO_ROOT, capture_output=True, text=True,
                        check=False)
    assert ok.returncode == 0, ok.stderr
    assert len(read_log(str(tmp_path / "log"))) == 500
    bad = subprocess.run([sys.executable, "-m", "workloads.recommend.dataset", "--out", "http://bucket/x"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    assert bad.returncode == 2
    assert "--out (MODELPLANE_RECOMMEND_DATASET_OUT): use s3://BUCKET/PREFIX" in bad.stderr
