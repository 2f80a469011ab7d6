"""RNG state per rank: saved and restored exactly, and a GPU rank's state restores on a node with fewer GPUs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch

from workloads.trainer_torch.distributed import rng_state, set_rng_state


def test_restored_state_replays_python_numpy_and_torch_draws() -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    saved = rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(2))
    random.seed(9)
    np.random.seed(9)
    torch.manual_seed(9)
    set_rng_state(saved)
    drawn = (random.random(), np.random.rand(), torch.rand(2))
    assert drawn[:2] == expected[:2] and torch.equal(drawn[2], expected[2])


@dataclass
class FakeGpus:
    """torch.cuda's RNG functions on a node with `count` GPUs, `current` being this rank's (this build has no CUDA)."""

    count: int
    current: int
    states: dict[int, torch.Tensor] = field(default_factory=dict)

    def index(self, device: int | str | torch.device = "cuda") -> int:
        idx = device if isinstance(device, int) else torch.device(device).index
        idx = self.current if idx is None else idx
        if idx >= self.count:  # what torch.cuda.default_generators[idx] raises
            raise IndexError("tuple index out of range")
        return idx

    def get_rng_state(self, device: int | str | torch.device = "cuda") -> torch.Tensor:
        idx = self.index(device)
        return self.states.get(idx, torch.tensor([idx], dtype=torch.uint8))

    def set_rng_state(self, new_state: torch.Tensor, device: int | str | torch.device = "cuda") -> None:
        self.states[self.index(device)] = new_state

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for module in (torch.cuda, torch.cuda.random):
            monkeypatch.setattr(module, "get_rng_state", self.get_rng_state)
            monkeypatch.setattr(module, "set_rng_state", self.set_rng_state)
            monkeypatch.setattr(module, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: self.current)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


def test_gpu_rank_state_restores_on_a_node_with_fewer_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    # Local rank 5 of an 8-GPU node saves; the same global rank resumes as local rank 1 of a 4-GPU node.
    saved_on = FakeGpus(count=8, current=5, states={5: torch.tensor([55], dtype=torch.uint8)})
    saved_on.install(monkeypatch)
    saved = rng_state()
    resumed_on = FakeGpus(count=4, current=1)
    resumed_on.install(monkeypatch)
    set_rng_state(saved)
    assert list(resumed_on.states) == [1] and torch.equal(resumed_on.states[1], torch.tensor([55], dtype=torch.uint8))


def test_state_with_every_gpus_generator_restores_this_ranks_own(monkeypatch: pytest.MonkeyPatch) -> None:
    gpus = FakeGpus(count=2, current=1)
    gpus.install(monkeypatch)
    saved = {**rng_state(), "cuda": [torch.tensor([i], dtype=torch.uint8) for i in range(8)]}
    set_rng_state(saved)
    assert list(gpus.states) == [1] and torch.equal(gpus.states[1], torch.tensor([1], dtype=torch.uint8))
