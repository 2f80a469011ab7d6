"""Helpers for the server tests: a trained tiny export and reference generations (the live server is in tests/support)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from tests.support.liveserver import LiveServer, live_server, metric
from workloads.common import metrics as names
from workloads.lm.export import save_export
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS
from workloads.lm.tokenizer import ByteTokenizer
from workloads.serve.backends import Backend, BatchSink, ModelInfo, TensorBackend, TensorSpec
from workloads.serve.generation import allowed_tokens
from workloads.serve.loader import Loader, load_backend
from workloads.serve.settings import ServeSettings

CORPUS = "the quick brown fox jumps over the lazy dog. a lazy cat sleeps in the warm sun. " * 30
"""Training text: short and repetitive, so a few dozen steps give peaked, tie-free logits."""


def train_tiny(steps: int = 80, seed: int = 0) -> GPT:
    """A `tiny` GPT trained briefly on `CORPUS` (so greedy output is text, not noise)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    tokenizer = ByteTokenizer()
    model = GPT(PRESETS["tiny"])
    data = torch.tensor(tokenizer.encode(CORPUS, bos=True))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        starts = torch.randint(0, len(data) - 65, (16,), generator=generator)
        x = torch.stack([data[s : s + 64] for s in starts])
        y = torch.stack([data[s + 1 : s + 65] for s in starts])
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def write_tiny_export(folder: Path) -> GPT:
    """Train and export a tiny model into `folder`; returns the model."""
    model = train_tiny()
    save_export(model, folder, meta={"purpose": "serve tests"})
    return model


@torch.inference_mode()
def reference_greedy(model: GPT, prompt: str, max_tokens: int, stop: tuple[str, ...] = ()) -> tuple[str, str]:
    """Greedy text and finish reason by the plainest loop: full forward of the whole sequence each step."""
    tokenizer = ByteTokenizer()
    ids = tokenizer.encode(prompt, bos=True)
    allowed = allowed_tokens(model.config.vocab_size, tokenizer.eos_id, torch.device("cpu"))
    generated: list[int] = []
    for _ in range(max_tokens):
        logits = model(torch.tensor([ids]))[0, -1].masked_fill(~allowed, float("-inf"))
        token = int(logits.argmax())
        if token == tokenizer.eos_id:
            return tokenizer.decode(generated), "stop"
        ids.append(token)
        generated.append(token)
        text = tokenizer.decode(generated)
        cuts = [text.find(s) for s in stop if s in text]
        if cuts:
            return text[: min(cuts)], "stop"
    return tokenizer.decode(generated), "length"


WEIGHTS = np.arange(6, dtype=np.float32).reshape(3, 2) / 10
"""The affine stand-in model's weights."""
BIAS = np.array([0.5, -0.5], dtype=np.float32)
"""Its bias."""


class AffinePredictor:
    """A stand-in tensor model: y = x @ W + b, counting its calls."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Rows in, rows out."""
        self.calls.append(inputs.shape[0])
        return inputs @ WEIGHTS + BIAS


def affine_loader(predictor: AffinePredictor) -> Loader:
    """A loader serving `predictor` as a tensor model: FP32 `x` [-1, 3] -> FP32 `y` [-1, 2]."""
    def load(settings: ServeSettings) -> Backend:
        info = ModelInfo(name=settings.served_name, version="affine-1", digest="affine-1", platform="numpy",
                         inputs=(TensorSpec("x", "FP32", (-1, 3)),), outputs=(TensorSpec("y", "FP32", (-1, 2)),))
        return TensorBackend(predictor, info)

    return load


class _GatedBackend:
    """A backend whose batches start only once its gate is open (warm-up is not held)."""

    def __init__(self, inner: Backend, gate: threading.Event) -> None:
        self.inner = inner
        self.info = inner.info
        self.gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def run_batch(self, payloads: Sequence[object], sink: BatchSink) -> None:
        """Wait for the gate (at most a minute, so a failed test cannot hang the engine), then run."""
        self.gate.wait(timeout=60)
        self.inner.run_batch(payloads, sink)


class Gate:
    """Holds every batch until the test opens it: the test, not the machine's speed, decides when generation runs."""

    def __init__(self) -> None:
        self._open = threading.Event()

    def loader(self, inner: Loader = load_backend) -> Loader:
        """A loader whose backend waits for this gate before each batch."""
        def load(settings: ServeSettings) -> Backend:
            return cast(Backend, _GatedBackend(inner(settings), self._open))
        return load

    def open(self) -> None:
        """Let every held and later batch run."""
        self._open.set()


def wait_until_submitted(server: LiveServer, count: int, timeout: float = 60.0) -> dict[str, float]:
    """Poll /metrics until `count` payloads reached the engine (queued plus in started batches); returns the samples.

    Behind a closed `Gate` nothing finishes, so this is the moment every request is queued or held in a batch.
    """
    deadline = time.monotonic() + timeout
    while True:
        samples = server.metrics()
        submitted = metric(samples, names.INFERENCE_QUEUE_DEPTH) + metric(samples, f"{names.INFERENCE_BATCH_SIZE}_sum")
        if submitted >= count:
            return samples
        assert time.monotonic() < deadline, f"only {submitted} of {count} payloads reached the engine"
        time.sleep(0.02)


__all__ = ["BIAS", "CORPUS", "WEIGHTS", "AffinePredictor", "Gate", "LiveServer", "affine_loader", "live_server",
           "metric", "reference_greedy", "train_tiny", "wait_until_submitted", "write_tiny_export"]
