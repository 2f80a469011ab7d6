"""`python -m workloads.recommend.train`: the recommender's training job, on CPU in seconds.

Reads the interaction log (`--data`, S3 or a folder; see workloads.recommend.dataset), holds out each user's last
`--holdout` interactions (by event time), trains `MatrixFactorization` with BPR, checkpoints after every epoch to
`--checkpoints` (and resumes from the newest one there: same data, same seed, same result as an uninterrupted run,
as each epoch's sampling is seeded by its number), evaluates recall@10 of the model and of popularity on the
held-out split (a JSON log line and the `modelplane_recommend_train_recall_at_10` gauge), and writes the export
(`--export`). A checkpoint records the settings in RESUME_FIELDS and a digest of the training split; a resume with
other values, or on another log, exits 2 naming each difference. Metrics (`--metrics-port`): the epoch, its loss
and its end time (`modelplane_train_last_step_timestamp_seconds`, which the training-stalled alert watches) every
epoch, and the time of the last checkpoint written. Exit 0 when done, 2 on bad settings, an unreadable log or a
mismatched checkpoint.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from workloads.common import metrics as names
from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.recommend import storage
from workloads.recommend.dataset import InvalidLogError, read_log
from workloads.recommend.events import Event
from workloads.recommend.model import CONFIG_FILE, MatrixFactorization, export_files
from workloads.recommend.model_settings import TrainSettings

TOP_K = 10
"""The cut-off of the recall the trainer reports (recall@10)."""
CHECKPOINT = re.compile(r"^epoch-(\d{4,})\.pt$")
"""Checkpoint file names: `epoch-NNNN.pt`, NNNN the epochs completed."""
RESUME_FIELDS = ("holdout", "seed", "dim", "lr", "batch_size", "weight_decay")
"""Settings a checkpoint records and a resumed run must repeat: they shape the split, the weights or the steps."""
SPLIT_SHA256 = "split_sha256"
"""Checkpoint key of the training split's digest (`Split.sha256`): a resume on another log is refused."""


class CheckpointMismatchError(ValueError):
    """The newest checkpoint was written with other settings or another training split than this run's."""


@dataclass(frozen=True)
class Split:
    """The log as index tensors: training interactions, held-out ones, and the id maps."""

    users: list[str]
    """User ids in embedding-row order (first appearance in the log)."""
    items: list[str]
    """Item ids in embedding-row order (first appearance in the log)."""
    train: torch.Tensor
    """(n, 2) long tensor of (user row, item row) training interactions."""
    held_out: torch.Tensor
    """(m, 2) long tensor of held-out (user row, item row) interactions."""

    def sha256(self) -> str:
        """Digest of the training split: the id maps and the training interactions in order."""
        digest = hashlib.sha256(json.dumps([self.users, self.items]).encode())
        digest.update(self.train.numpy().tobytes())
        return digest.hexdigest()


def split(events: list[Event], holdout: int) -> Split:
    """Index the log and hold out each user's last `holdout` interactions (users with more than that only).

    One interaction per event id: a log archived from the topic holds at-least-once copies, and a copy of a held-out
    event left in training would leak the answer into the evaluation (and weigh the pair twice).
    """
    ordered = sorted({event.event_id: event for event in events}.values(), key=lambda e: (e.ts, e.event_id))
    users = list(dict.fromkeys(e.user_id for e in ordered))
    items = list(dict.fromkeys(e.item_id for e in ordered))
    user_row, item_row = {u: i for i, u in enumerate(users)}, {it: i for i, it in enumerate(items)}
    per_user: dict[int, list[int]] = {}
    for event in ordered:
        per_user.setdefault(user_row[event.user_id], []).append(item_row[event.item_id])
    train, held = [], []
    for user, seq in per_user.items():
        cut = len(seq) - holdout if len(seq) > holdout else len(seq)
        train += [(user, item) for item in seq[:cut]]
        held += [(user, item) for item in seq[cut:]]
    as_tensor = lambda pairs: torch.tensor(pairs, dtype=torch.long).reshape(-1, 2)  # noqa: E731
    return Split(users=users, items=items, train=as_tensor(train), held_out=as_tensor(held))


def recall_at_k(scores: torch.Tensor, held_out: torch.Tensor, k: int = TOP_K) -> float:
    """Share of held-out (user, item) pairs whose item is in the user's top k of `scores` (users x items)."""
    if held_out.numel() == 0:
        return 0.0
    top = torch.topk(scores, min(k, scores.shape[1]), dim=1).indices
    hits = (top[held_out[:, 0]] == held_out[:, 1:2]).any(dim=1)
    return round(float(hits.float().mean()), 4)


def evaluate(model: MatrixFactorization, data: Split) -> dict[str, float]:
    """recall@10 of the model and of global popularity (training counts) on the held-out split."""
    with torch.no_grad():
        scores = model.user_embedding.weight @ model.item_embedding.weight.T + model.item_bias.weight.T
    popularity = torch.bincount(data.train[:, 1], minlength=len(data.items)).float()
    return {"recall_at_10_model": recall_at_k(scores, data.held_out),
            "recall_at_10_popularity": recall_at_k(popularity.expand(len(data.users), -1), data.held_out)}


class TrainMetrics:
    """The trainer's Prometheus series in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        """The registry /metrics serves."""
        self.epoch = Gauge(names.TRAIN_EPOCH, "The last completed epoch.", registry=self.registry)
        """Last completed epoch."""
        self.loss = Gauge(names.TRAIN_LOSS, "Mean BPR loss of the last epoch.", registry=self.registry)
        """Mean loss of the last epoch."""
        self.checkpointed = Gauge(names.TRAIN_LAST_CHECKPOINT_TIMESTAMP, "Unix time of the last checkpoint.",
                                  registry=self.registry)
        """Unix time of the last checkpoint written (never set without --checkpoints)."""
        self.stepped = Gauge(names.TRAIN_LAST_STEP_TIMESTAMP, "Unix time of the last completed epoch.",
                             registry=self.registry)
        """Unix time of the last completed epoch (the training-stalled alert watches it)."""
        self.recall = Gauge(names.RECOMMEND_TRAIN_RECALL, "recall@10 on the held-out split.", ["ranker"],
                            registry=self.registry)
        """recall@10, labelled ranker: model or popularity."""


def _resume(settings: TrainSettings, data: Split, model: MatrixFactorization, optimizer: torch.optim.Optimizer) -> int:
    """Load the newest checkpoint under --checkpoints, if any; returns the epochs it completed (0 without one)."""
    if settings.checkpoints is None:
        return 0
    found = sorted((int(m.group(1)), name) for name in storage.list_names(settings.checkpoints)
                   if (m := CHECKPOINT.match(name)))
    if not found:
        return 0
    epoch, name = found[-1]
    state = torch.load(io.BytesIO(storage.read_bytes(settings.checkpoints, name)), weights_only=True)
    saved = state.get("settings", {})
    differ = [f"{TrainSettings.flag_name(field)}: the checkpoint has {saved.get(field)!r}, this run "
              f"{getattr(settings, field)!r}" for field in RESUME_FIELDS if saved.get(field) != getattr(settings, field)]
    # Another --holdout changes the split too; it is named above, so the split is compared only at the same holdout.
    if saved.get("holdout") == settings.holdout and state.get(SPLIT_SHA256) != data.sha256():
        differ.append(f"{TrainSettings.flag_name('data')}: the training split of {settings.data} is not the one the "
                      "checkpoint was trained on (another log, or the same log grown or changed)")
    if differ:
        raise CheckpointMismatchError(
            f"{settings.checkpoints}/{name} cannot be resumed by this run:\n  " + "\n  ".join(differ) + "\nrerun with "
            "the checkpoint's values, or use a new --checkpoints prefix for a new log or new settings")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    log_event("resumed", checkpoint=f"{settings.checkpoints}/{name}", epoch=epoch)
    return epoch


def _checkpoint(settings: TrainSettings, epoch: int, data: Split, model: MatrixFactorization,
                optimizer: torch.optim.Optimizer, metrics: TrainMetrics) -> None:
    if settings.checkpoints is None:
        return
    buffer = io.BytesIO()
    torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "settings": {field: getattr(settings, field) for field in RESUME_FIELDS},
                SPLIT_SHA256: data.sha256()}, buffer)
    storage.write_bytes(settings.checkpoints, f"epoch-{epoch:04d}.pt", buffer.getvalue())
    metrics.checkpointed.set(time.time())


def train_epoch(model: MatrixFactorization, optimizer: torch.optim.Optimizer, data: Split, settings: TrainSettings,
                epoch: int) -> float:
    """One pass over the training interactions in a shuffled order, each with a random negative; the mean loss."""
    generator = torch.Generator().manual_seed(settings.seed * 1_000_003 + epoch)
    order = torch.randperm(len(data.train), generator=generator)
    negatives = torch.randint(len(data.items), (len(data.train),), generator=generator)
    total = 0.0
    for start in range(0, len(order), settings.batch_size):
        batch = order[start:start + settings.batch_size]
        loss = model.bpr_loss(data.train[batch, 0], data.train[batch, 1], negatives[batch], settings.weight_decay)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / max(1, len(order))


def run(settings: TrainSettings, metrics: TrainMetrics | None = None) -> dict[str, float]:
    """Train, evaluate and export as configured; returns the evaluation."""
    metrics = metrics or TrainMetrics()
    started = time.monotonic()
    data = split(read_log(settings.data), settings.holdout)
    log_event("data_loaded", data=settings.data, users=len(data.users), items=len(data.items),
              train=len(data.train), held_out=len(data.held_out))
    torch.manual_seed(settings.seed)
    model = MatrixFactorization(len(data.users), len(data.items), settings.dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    done = _resume(settings, data, model, optimizer)
    for epoch in range(done + 1, settings.epochs + 1):
        loss = train_epoch(model, optimizer, data, settings, epoch)
        _checkpoint(settings, epoch, data, model, optimizer, metrics)
        metrics.epoch.set(epoch)
        metrics.loss.set(loss)
        metrics.stepped.set(time.time())
        log_event("epoch", epoch=epoch, loss=round(loss, 5))
    evaluation = evaluate(model, data) if len(data.held_out) else {}
    for ranker in ("model", "popularity"):
        if f"recall_at_10_{ranker}" in evaluation:
            metrics.recall.labels(ranker=ranker).set(evaluation[f"recall_at_10_{ranker}"])
    popularity = Counter(int(i) for i in data.train[:, 1])
    files = export_files(model, users=data.users, items=data.items,
                         popularity=[popularity.get(i, 0) for i in range(len(data.items))], metrics=evaluation)
    # Config last, and it carries the weights' sha256: a loader that reads a mix of two exports refuses it.
    for name in sorted(files, key=lambda n: n == CONFIG_FILE):
        storage.write_bytes(settings.export, name, files[name])
    log_event("trained", export=settings.export, seconds=round(time.monotonic() - started, 3),
              evaluation=evaluation)
    return evaluation


def main(argv: Sequence[str] | None = None) -> int:
    """Run the training job; exit 0 when exported, 2 on bad settings, an unreadable log or a mismatched checkpoint."""
    try:
        settings = TrainSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    metrics = TrainMetrics()
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    try:
        run(settings, metrics)
    except (InvalidLogError, CheckpointMismatchError) as exc:
        print(exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
