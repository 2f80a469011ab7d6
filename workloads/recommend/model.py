"""The recommender: matrix factorisation trained with BPR, its Hugging Face-style export, and its ranking.

Model: score(u, i) = user_u · item_i + bias_i, trained with the Bayesian Personalized Ranking loss
-log σ(score(u, pos) - score(u, neg)) on uniformly sampled negatives (Rendle et al. 2009,
https://arxiv.org/abs/1205.2618). Small enough to train on CPU in seconds.

Export (a folder or S3 prefix): `model.safetensors` (tensors `user_embedding`, `item_embedding`, `item_bias`)
and `config.json` (`model_type`, `dim`, the id maps `users` / `items` in row order, the training `popularity`
of each item, the evaluation `metrics`, and `weights_sha256`, the digest of model.safetensors). Loading needs
only safetensors and torch, no pickle, and refuses weights whose digest is not the config's: a reader that
downloads while the trainer rewrites the export can get one file of each, with matching row counts.

Ranking (`Recommender.rank`) combines the model with the user's live recent items: both parts are standardised
over the catalogue (z-scores), so `recent_weight` means the same for every user however peaked their model
scores are; a user the model never saw is ranked by the recent items alone, and one with neither by popularity.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import torch
from safetensors.torch import load, save

MODEL_TYPE: Final = "modelplane-mf-bpr"
"""config.json `model_type` of our exports; a loader refuses anything else."""
CONFIG_FILE: Final = "config.json"
"""The export's config: dimensions, id maps, popularity, metrics."""
WEIGHTS_FILE: Final = "model.safetensors"
"""The export's tensors."""
WEIGHTS_SHA256: Final = "weights_sha256"
"""config.json key of the sha256 (hex) of WEIGHTS_FILE's bytes."""


class ExportMismatchError(ValueError):
    """The export's config.json and model.safetensors are not one export (or the config is not ours)."""
Source = Literal["model+recent", "model", "recent", "popularity"]
"""What a ranking was computed from."""


class MatrixFactorization(torch.nn.Module):
    """User and item embeddings plus an item bias; a score is their dot product plus the bias."""

    def __init__(self, users: int, items: int, dim: int) -> None:
        super().__init__()
        self.user_embedding = torch.nn.Embedding(users, dim)
        self.item_embedding = torch.nn.Embedding(items, dim)
        self.item_bias = torch.nn.Embedding(items, 1)
        torch.nn.init.normal_(self.user_embedding.weight, std=0.1)
        torch.nn.init.normal_(self.item_embedding.weight, std=0.1)
        torch.nn.init.zeros_(self.item_bias.weight)

    def forward(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of (user, item) index pairs."""
        dot = (self.user_embedding(users) * self.item_embedding(items)).sum(-1)
        return dot + self.item_bias(items).squeeze(-1)

    def bpr_loss(self, users: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
                 weight_decay: float) -> torch.Tensor:
        """Mean BPR loss of (user, positive, negative) triples plus an L2 penalty on the embeddings they touch."""
        margin = self(users, positives) - self(users, negatives)
        penalty = sum((e.pow(2).sum(-1).mean() for e in (self.user_embedding(users), self.item_embedding(positives),
                                                          self.item_embedding(negatives))), torch.zeros(()))
        return -torch.nn.functional.logsigmoid(margin).mean() + weight_decay * penalty


def export_files(model: MatrixFactorization, *, users: list[str], items: list[str], popularity: list[int],
                 metrics: dict[str, float]) -> dict[str, bytes]:
    """The export's files by name: the safetensors weights and the JSON config."""
    tensors = {name: getattr(model, name).weight.detach().contiguous()
               for name in ("user_embedding", "item_embedding", "item_bias")}
    weights = save(tensors)
    config = {"model_type": MODEL_TYPE, "dim": model.user_embedding.embedding_dim, "users": users, "items": items,
              "popularity": popularity, "metrics": metrics, WEIGHTS_SHA256: hashlib.sha256(weights).hexdigest()}
    return {WEIGHTS_FILE: weights, CONFIG_FILE: json.dumps(config, indent=1).encode()}


def _zscore(values: torch.Tensor) -> torch.Tensor:
    spread = values.std()
    return (values - values.mean()) / spread if spread > 0 else values - values.mean()


@dataclass(frozen=True)
class Ranking:
    """Top-k items and what they were ranked by."""

    items: list[tuple[str, float]]
    """(item id, score), best first."""
    source: Source
    """model+recent, model, recent (an unknown user) or popularity (neither)."""


class Recommender:
    """A loaded export, ready to rank the catalogue for a user."""

    def __init__(self, config: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
        if config.get("model_type") != MODEL_TYPE:
            raise ExportMismatchError(f"{CONFIG_FILE}: model_type must be {MODEL_TYPE!r} (got {config.get('model_type')!r}); "
                             "point the service at an export of workloads.recommend.train")
        self.users: dict[str, int] = {u: i for i, u in enumerate(config["users"])}
        """User id -> embedding row."""
        self.items: list[str] = list(config["items"])
        """Item ids in embedding-row order."""
        self.item_index: dict[str, int] = {item: i for i, item in enumerate(self.items)}
        """Item id -> embedding row."""
        self.metrics: dict[str, float] = dict(config.get("metrics", {}))
        """The trainer's evaluation (recall@10 of the model and of popularity)."""
        self._user = tensors["user_embedding"].float()
        self._item = tensors["item_embedding"].float()
        self._bias = tensors["item_bias"].float().squeeze(-1)
        self._unit = torch.nn.functional.normalize(self._item, dim=-1)
        self._popularity = torch.tensor(config["popularity"], dtype=torch.float32)
        expected = (len(self.users), len(self.items))
        if (self._user.shape[0], self._item.shape[0]) != expected or self._popularity.shape[0] != len(self.items):
            raise ExportMismatchError(f"{WEIGHTS_FILE} rows {self._user.shape[0]} users x {self._item.shape[0]} items do not "
                             f"match {CONFIG_FILE}'s {expected[0]} users x {expected[1]} items: re-export the model")

    @classmethod
    def load(cls, folder: Path) -> Recommender:
        """Load an export folder; `ExportMismatchError` when its weights are not the ones its config was written with."""
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        weights = (folder / WEIGHTS_FILE).read_bytes()
        digest = hashlib.sha256(weights).hexdigest()
        if config.get(WEIGHTS_SHA256) != digest:
            raise ExportMismatchError(
                f"{WEIGHTS_FILE} has sha256 {digest}, but {CONFIG_FILE}'s {WEIGHTS_SHA256} is "
                f"{config.get(WEIGHTS_SHA256)!r}: the files come from two exports (the trainer was rewriting it) or an "
                "old one; restart once the export is complete (a pod retries), or re-export the model")
        return cls(config, load(weights))

    def rank(self, user_id: str, recent: list[str], *, k: int, exclude: set[str], recent_weight: float) -> Ranking:
        """The k best items for the user, given their recent items (newest first), never any of `exclude`."""
        row = self.users.get(user_id)
        rows = [self.item_index[item] for item in recent if item in self.item_index]
        with torch.no_grad():
            parts: list[torch.Tensor] = []
            if row is not None:
                parts.append(_zscore(self._item @ self._user[row] + self._bias))
            if rows:
                similarity = (self._unit @ self._unit[rows].T).mean(-1)
                parts.append(_zscore(similarity) * (recent_weight if row is not None else 1.0))
            source: Source = ("model+recent" if row is not None and rows else "model" if row is not None
                              else "recent" if rows else "popularity")
            scores = torch.stack(parts).sum(0) if parts else torch.log1p(self._popularity)
            for item in exclude:
                if item in self.item_index:
                    scores[self.item_index[item]] = float("-inf")
            top = torch.topk(scores, min(k, len(self.items)))
        return Ranking([(self.items[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist(), strict=True)
                        if s != float("-inf")], source)
