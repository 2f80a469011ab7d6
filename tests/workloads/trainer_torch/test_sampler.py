"""The data order: deterministic from the seed, partitioned across ranks, resumable from one integer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from workloads.trainer_torch.data import DTYPE, TokenWindows, WindowSampler, rank_start


def test_same_seed_gives_the_same_order_and_another_seed_does_not() -> None:
    a, b, c = WindowSampler(1000, seed=7), WindowSampler(1000, seed=7), WindowSampler(1000, seed=8)
    assert np.array_equal(a.take(0, 2500), b.take(0, 2500))
    assert not np.array_equal(a.take(0, 1000), c.take(0, 1000))


def test_each_epoch_is_a_permutation_and_epochs_differ() -> None:
    sampler = WindowSampler(257, seed=1)
    first, second = sampler.take(0, 257), sampler.take(257, 257)
    assert sorted(first.tolist()) == list(range(257)) == sorted(second.tolist())
    assert not np.array_equal(first, second)


def test_ranks_and_micro_steps_tile_each_step_without_overlap() -> None:
    world, micro_batch, grad_accum = 4, 3, 2
    global_batch = world * micro_batch * grad_accum
    for consumed in (0, global_batch, 5 * global_batch):
        starts = [rank_start(consumed, m, r, world, micro_batch) for m in range(grad_accum) for r in range(world)]
        positions = sorted(p for s in starts for p in range(s, s + micro_batch))
        assert positions == list(range(consumed, consumed + global_batch))


def test_taking_from_a_saved_position_continues_the_same_stream() -> None:
    whole = WindowSampler(100, seed=3).take(0, 300)
    resumed = WindowSampler(100, seed=3)  # a fresh process after a restart
    assert np.array_equal(resumed.take(170, 130), whole[170:])


def test_windows_are_seq_len_plus_one_tokens_within_one_shard(tmp_path: Path) -> None:
    shards = []
    for i, length in enumerate((25, 7, 16)):
        path = tmp_path / f"s{i}.bin"
        np.arange(1000 * i, 1000 * i + length, dtype=DTYPE).tofile(path)
        shards.append(path)
    windows = TokenWindows(shards, seq_len=5)
    # (25-1)//5 = 4 windows, (7-1)//5 = 1, (16-1)//5 = 3
    assert len(windows) == 8
    assert windows.window(0).tolist() == [0, 1, 2, 3, 4, 5]
    assert windows.window(3).tolist() == [15, 16, 17, 18, 19, 20]
    assert windows.window(4).tolist() == [1000, 1001, 1002, 1003, 1004, 1005]
    assert windows.window(7).tolist() == [2010, 2011, 2012, 2013, 2014, 2015]
    assert windows.batch(np.array([4, 0])).dtype == np.int64
