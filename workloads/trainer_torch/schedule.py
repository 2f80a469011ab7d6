"""Learning-rate schedule: linear warmup, then cosine decay to a floor."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """lr(step) for 0-based optimizer steps: warmup to `lr`, cosine down to `min_lr` at `max_steps`.

    A plain object (not a lambda) so `LambdaLR.state_dict()` saves its fields with the checkpoint.
    """

    def __init__(self, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> None:
        self.lr = lr
        self.min_lr = min_lr
        self.warmup_steps = warmup_steps
        self.max_steps = max_steps

    def lr_at(self, step: int) -> float:
        """Learning rate for the update that follows `step` completed steps."""
        if step < self.warmup_steps:
            # (step + 1) so the first update is not wasted at lr = 0.
            return self.lr * (step + 1) / self.warmup_steps
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (self.lr - self.min_lr)

    def __call__(self, step: int) -> float:
        """The multiplier `LambdaLR` applies to the base lr."""
        return self.lr_at(step) / self.lr


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: WarmupCosine) -> LambdaLR:
    """A `LambdaLR` driving `optimizer` along `schedule` (its base lr must be `schedule.lr`)."""
    return LambdaLR(optimizer, schedule)
