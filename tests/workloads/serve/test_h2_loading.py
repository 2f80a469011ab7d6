"""Load retries: an export that can never load fails at once with its reason; one still arriving is waited for."""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from tokenizers import Tokenizer, models

from tests.support.servers import S3Server
from tests.workloads.files import upload_dir
from tests.workloads.serve.support import live_server
from workloads.common.uri import S3Uri
from workloads.lm.export import save_export, write_manifest
from workloads.lm.hf_tokenizer import HfTokenizerExport
from workloads.lm.layout import CONFIG_FILE, MANIFEST_FILE
from workloads.lm.manifest import IncompleteExportError, verify_manifest
from workloads.lm.model import GPT
from workloads.lm.presets import PRESETS, preset_config
from workloads.serve.backends import Backend
from workloads.serve.loader import UnservableExportError, load_backend, load_with_retries
from workloads.serve.settings import ServeSettings

TIMEOUT_S = 300.0
"""load_timeout_s of these loads: far beyond what any of them may take."""


def hf_tokenizer_export(folder: Path) -> Path:
    """A complete export whose tokenizer is a word-level Hugging Face one (only vLLM serves it)."""
    words = Tokenizer(models.WordLevel({"[UNK]": 0, "the": 1, "cat": 2, "<eos>": 3}, unk_token="[UNK]"))
    tokenizer = HfTokenizerExport.parse(words.to_str().encode(), None, eos_id=3)
    save_export(GPT(preset_config("tiny")), folder, tokenizer=tokenizer)
    return folder


def corrupt_export(source: Path, folder: Path) -> Path:
    """`source` with its weights changed after the manifest was written."""
    shutil.copytree(source, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"tampered")
    return folder


def unknown_export(folder: Path) -> Path:
    """A complete folder (manifest and all) of a model type we do not serve."""
    folder.mkdir()
    (folder / CONFIG_FILE).write_text(json.dumps({"model_type": "llama"}))
    write_manifest(folder, [CONFIG_FILE])
    return folder


def counting(loader: Callable[[ServeSettings], Backend], attempts: list[float],
             before: Callable[[int], None] = lambda attempt: None) -> Callable[[ServeSettings], Backend]:
    """`loader`, recording when each attempt starts and calling `before(attempt number)` first."""
    def load(settings: ServeSettings) -> Backend:
        attempts.append(time.monotonic())
        before(len(attempts))
        return loader(settings)
    return load


@pytest.mark.parametrize(("kind", "message"), [
    ("hf-tokenizer", r"not a tokenizer our server can use .*serve this model with the vLLM runtime"),
    ("corrupt", r"checksum mismatch for model\.safetensors"),
    ("unknown", r"holds neither an LM export .* nor a TensorFlow SavedModel"),
])
def test_an_export_that_can_never_load_fails_on_the_first_attempt(
        kind: str, message: str, tiny_export: tuple[Path, GPT], tmp_path: Path) -> None:
    folder = {"hf-tokenizer": lambda: hf_tokenizer_export(tmp_path / "hf"),
              "corrupt": lambda: corrupt_export(tiny_export[0], tmp_path / "corrupt"),
              "unknown": lambda: unknown_export(tmp_path / "unknown")}[kind]()
    attempts: list[float] = []
    started = time.monotonic()
    with pytest.raises(UnservableExportError, match=message):
        load_with_retries(ServeSettings(model_uri=str(folder), load_timeout_s=TIMEOUT_S),
                          counting(load_backend, attempts), threading.Event())
    assert len(attempts) == 1
    assert time.monotonic() - started < 30


def test_the_server_reports_an_unservable_export_at_once_not_after_the_load_timeout(tmp_path: Path) -> None:
    folder = hf_tokenizer_export(tmp_path / "hf")
    with live_server(str(folder), wait_ready=False, load_timeout_s=TIMEOUT_S) as server, server.client() as client:
        deadline = time.monotonic() + 30
        while client.get("/v2/health/live").status_code == 200:
            assert time.monotonic() < deadline, "still retrying an export that can never load"
            time.sleep(0.1)
        live = client.get("/v2/health/live")
    assert live.status_code == 503
    assert "serve this model with the vLLM runtime" in live.json()["error"]


def test_an_export_still_arriving_is_retried_until_it_is_complete(s3: S3Server, tiny_export: tuple[Path, GPT],
                                                                 tmp_path: Path) -> None:
    boto3.client("s3", endpoint_url=s3.endpoint).create_bucket(Bucket="arriving")
    uri = S3Uri("arriving", "lm/tiny")
    partial = tmp_path / "partial"
    shutil.copytree(tiny_export[0], partial, ignore=shutil.ignore_patterns(MANIFEST_FILE))

    def upload(attempt: int) -> None:
        # Attempt 1 finds nothing, attempt 2 everything but the manifest (written last), attempt 3 the whole export.
        if attempt == 2:
            upload_dir(partial, uri)
        elif attempt == 3:
            upload_dir(tiny_export[0], uri)

    attempts: list[float] = []
    backend = load_with_retries(ServeSettings(model_uri=str(uri), load_timeout_s=TIMEOUT_S),
                                counting(load_backend, attempts, upload), threading.Event())
    assert len(attempts) == 3
    assert backend.info.name == "tiny"


def test_a_listed_file_not_yet_uploaded_is_waited_for(tmp_path: Path) -> None:
    # An uploader without our manifest-last order (aws s3 sync, upload_dir: alphabetical) can land manifest.json first.
    folder = tmp_path / "export"
    files = save_export(GPT(PRESETS["tiny"]), folder)
    missing = next(name for name in files if name != MANIFEST_FILE)
    (folder / missing).unlink()
    with pytest.raises(IncompleteExportError, match=f"{missing} is listed in the manifest but missing"):
        verify_manifest(folder)
