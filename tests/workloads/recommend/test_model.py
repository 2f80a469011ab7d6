"""The recommender model: BPR learns, the export round-trips, the ranking combines the model and recent items."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from workloads.recommend.model import (
    CONFIG_FILE,
    MODEL_TYPE,
    WEIGHTS_FILE,
    ExportMismatchError,
    MatrixFactorization,
    Recommender,
    export_files,
)

ITEMS = [f"i{n}" for n in range(8)]
USERS = ["u0", "u1"]


def _export(tmp_path: Path, model: MatrixFactorization, popularity: list[int] | None = None) -> Recommender:
    files = export_files(model, users=USERS, items=ITEMS, popularity=popularity or [1] * len(ITEMS),
                         metrics={"recall_at_10_model": 0.5})
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    return Recommender.load(tmp_path)


def _two_groups() -> MatrixFactorization:
    """Items 0-3 point one way and 4-7 the other; u0 likes the first group, u1 the second."""
    model = MatrixFactorization(len(USERS), len(ITEMS), 2)
    with torch.no_grad():
        model.item_embedding.weight[:] = torch.tensor([[1 - 0.1 * n, 0.1 * n] for n in range(4)]
                                                   + [[0.1 * n, 1 - 0.1 * n] for n in range(4)])
        model.user_embedding.weight[:] = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    return model


def test_bpr_training_ranks_each_users_positives_above_the_rest() -> None:
    torch.manual_seed(0)
    model = MatrixFactorization(2, 8, 4)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    users, positives = torch.tensor([0] * 4 + [1] * 4), torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])
    first = None
    for _ in range(200):
        negatives = (1 - positives // 4) * 4 + torch.randint(4, (8,))  # an item of the other group
        loss = model.bpr_loss(users, positives, negatives, 1e-4)
        first = loss.item() if first is None else first
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < first / 3
    scores = model(torch.tensor([0] * 8), torch.arange(8))
    assert set(torch.topk(scores, 4).indices.tolist()) == {0, 1, 2, 3}


def test_the_export_is_safetensors_and_a_json_config_that_loads_back(tmp_path: Path) -> None:
    model = _two_groups()
    recommender = _export(tmp_path, model)
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert config["model_type"] == MODEL_TYPE and config["users"] == USERS and config["items"] == ITEMS
    assert (tmp_path / WEIGHTS_FILE).read_bytes()[8:9] == b"{"  # safetensors: u64 header length, then JSON
    ranking = recommender.rank("u0", [], k=8, exclude=set(), recent_weight=1.0)
    expected = model(torch.zeros(8, dtype=torch.long), torch.arange(8)).argsort(descending=True).tolist()
    assert [ITEMS.index(item) for item, _ in ranking.items] == expected
    assert ranking.source == "model" and recommender.metrics == {"recall_at_10_model": 0.5}


def test_recent_items_pull_their_group_up_for_a_known_user(tmp_path: Path) -> None:
    recommender = _export(tmp_path, _two_groups())
    before = recommender.rank("u0", [], k=4, exclude=set(), recent_weight=1.0)
    after = recommender.rank("u0", ["i5", "i6"], k=4, exclude={"i5", "i6"}, recent_weight=3.0)
    assert {item for item, _ in before.items} == {"i0", "i1", "i2", "i3"}
    assert after.source == "model+recent"
    assert {"i4", "i7"} <= {item for item, _ in after.items} and not {"i5", "i6"} & {i for i, _ in after.items}


def test_an_unknown_user_gets_recent_item_neighbours_then_popularity(tmp_path: Path) -> None:
    recommender = _export(tmp_path, _two_groups(), popularity=[0, 0, 9, 0, 0, 0, 0, 5])
    similar = recommender.rank("stranger", ["i1", "unknown-item"], k=3, exclude={"i1"}, recent_weight=1.0)
    assert similar.source == "recent" and {item for item, _ in similar.items} == {"i0", "i2", "i3"}
    popular = recommender.rank("stranger", [], k=2, exclude=set(), recent_weight=1.0)
    assert popular.source == "popularity" and [item for item, _ in popular.items] == ["i2", "i7"]


def test_k_larger_than_the_catalogue_returns_every_item_not_excluded(tmp_path: Path) -> None:
    recommender = _export(tmp_path, _two_groups())
    assert len(recommender.rank("u1", ["i0"], k=100, exclude={"i0"}, recent_weight=1.0).items) == 7


def test_a_foreign_export_is_refused_naming_the_field(tmp_path: Path) -> None:
    _export(tmp_path, _two_groups())
    config = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "model_type": "gpt2"}))
    with pytest.raises(ValueError, match=re.escape("config.json: model_type must be 'modelplane-mf-bpr' (got 'gpt2')")):
        Recommender.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**config, "items": ITEMS[:5], "popularity": [1] * 5}))
    with pytest.raises(ValueError, match=re.escape("do not match config.json's 2 users x 5 items: re-export")):
        Recommender.load(tmp_path)


def test_the_config_of_one_export_with_the_weights_of_another_is_refused(tmp_path: Path) -> None:
    # A pod that downloads while the trainer rewrites the export can get the old config and the new weights:
    # same row counts, so only the config's weights_sha256 tells them apart.
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    _export(old, _two_groups())
    _export(new, MatrixFactorization(len(USERS), len(ITEMS), 2))
    (old / WEIGHTS_FILE).write_bytes((new / WEIGHTS_FILE).read_bytes())
    with pytest.raises(ExportMismatchError, match=r"model\.safetensors has sha256 [0-9a-f]{64}, but config\.json's "
                       r"weights_sha256 is '[0-9a-f]{64}': the files come from two exports"):
        Recommender.load(old)
