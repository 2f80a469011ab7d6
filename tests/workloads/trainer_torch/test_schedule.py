"""The learning-rate schedule: linear warmup, then cosine decay to the floor."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from workloads.trainer_torch.schedule import WarmupCosine, build_scheduler


def test_warmup_rises_linearly_to_the_peak() -> None:
    schedule = WarmupCosine(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=100)
    assert [schedule.lr_at(s) for s in (0, 4, 9)] == pytest.approx([1e-4, 5e-4, 1e-3])


def test_cosine_decays_from_peak_through_midpoint_to_min_lr() -> None:
    schedule = WarmupCosine(lr=1e-3, min_lr=1e-4, warmup_steps=10, max_steps=110)
    assert schedule.lr_at(10) == pytest.approx(1e-3)
    assert schedule.lr_at(60) == pytest.approx((1e-3 + 1e-4) / 2)
    assert schedule.lr_at(110) == pytest.approx(1e-4)
    assert schedule.lr_at(500) == pytest.approx(1e-4)


def test_schedule_is_monotone_after_warmup() -> None:
    schedule = WarmupCosine(lr=6e-4, min_lr=6e-5, warmup_steps=5, max_steps=50)
    values = [schedule.lr_at(s) for s in range(5, 51)]
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_lambda_lr_follows_the_schedule_step_by_step() -> None:
    schedule = WarmupCosine(lr=2e-3, min_lr=0.0, warmup_steps=3, max_steps=12)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=schedule.lr)
    scheduler = build_scheduler(optimizer, schedule)
    for step in range(12):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(schedule.lr_at(step))
        optimizer.step()
        scheduler.step()
    assert math.isclose(optimizer.param_groups[0]["lr"], 0.0, abs_tol=1e-12)
