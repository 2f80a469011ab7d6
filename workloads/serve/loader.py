"""Fetch the model export and build its backend, retrying with backoff until it works or time runs out.

The export is downloaded into a fresh folder on every attempt, so a half-finished download or an
upload still in progress is never mixed with a later one; `load_export` then verifies every
checksum in the manifest before any weight is used.

Only what can change is retried: an export not there yet, one without its manifest (still being written), S3
errors. A complete export that this server can never serve (a tokenizer only vLLM serves, an unknown format, a
checksum that does not match its manifest) raises `UnservableExportError` at once, so the pod fails with the reason
instead of sitting unready for `load_timeout_s`.
"""

from __future__ import annotations

import importlib
import json
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from tenacity import RetryCallState, Retrying, retry_if_not_exception_type, stop_after_delay, wait_exponential

from workloads.common import s3
from workloads.common.hashing import sha256_file
from workloads.common.logs import log_event
from workloads.common.uri import S3Uri
from workloads.lm.layout import CONFIG_FILE, LEGACY_FORMAT, MANIFEST_FILE, MODEL_TYPE
from workloads.serve.backends import Backend, ModelInfo, TensorBackend, TensorSpec
from workloads.serve.settings import ServeSettings

SAVED_MODEL_FILE = "saved_model.pb"
"""Marker file of a TensorFlow SavedModel folder."""

Loader = Callable[[ServeSettings], Backend]
"""One load attempt: settings in, a ready backend out (raises on any failure; `UnservableExportError` stops retries)."""


class UnservableExportError(RuntimeError):
    """A complete export this server can never serve (its manifest is there): retrying the download cannot help."""


def fetch(settings: ServeSettings) -> Path:
    """A local folder holding the export: the local path itself, or a fresh download from S3."""
    if not settings.model_uri.startswith("s3://"):
        folder = Path(settings.model_uri)
        if not folder.is_dir():
            raise FileNotFoundError(f"--model-uri: {folder} is not a folder")
        return folder
    uri = S3Uri.parse(settings.model_uri, flag=ServeSettings.flag_name("model_uri"))
    if settings.download_dir is not None:
        settings.download_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="model-", dir=settings.download_dir))
    try:
        if not s3.download_dir(uri, folder):
            raise FileNotFoundError(f"--model-uri: no objects under {uri}")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder


def export_digest(folder: Path) -> str:
    """The export's digest: the first 16 hex digits of the sha256 of its manifest (or SavedModel graph)."""
    for marker in (MANIFEST_FILE, SAVED_MODEL_FILE):
        if (folder / marker).is_file():
            return sha256_file(folder / marker)[:16]
    return "unversioned"


def load_backend(settings: ServeSettings) -> Backend:
    """One attempt: fetch the export and build the backend its format calls for."""
    folder = fetch(settings)
    downloaded = folder != Path(settings.model_uri)
    keep_files = False
    try:
        # A `<name>/<version>` URI names the version clients see; the cache is keyed by the digest all the same, as
        # nothing stops new weights being uploaded under an old version folder.
        digest = export_digest(folder)
        version = settings.uri_version or digest
        if _is_lm_export(folder):
            return _lm_backend(folder, settings, version, digest)
        if (folder / SAVED_MODEL_FILE).is_file():
            # TensorFlow may read assets lazily, so a SavedModel's files outlive the load.
            keep_files = True
            return _tf_backend(folder, settings.served_name, version, digest)
        problem = (f"--model-uri: {settings.model_uri} holds neither an LM export ({CONFIG_FILE} with model_type "
                   f"{MODEL_TYPE!r} + {MANIFEST_FILE}) nor a TensorFlow SavedModel ({SAVED_MODEL_FILE})")
        # The manifest lands last, so with it the export is complete and stays unknown; without it, it may be an LM
        # export whose config.json is still on its way.
        if (folder / MANIFEST_FILE).is_file():
            raise UnservableExportError(problem)
        raise ValueError(problem)
    finally:
        if downloaded and not keep_files:
            shutil.rmtree(folder, ignore_errors=True)


def _is_lm_export(folder: Path) -> bool:
    """A Hugging Face GPT-2 folder, or one of our private exports from before that layout."""
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        return False
    config = json.loads(config_path.read_text())
    return bool(config.get("model_type") == MODEL_TYPE or config.get("format") == LEGACY_FORMAT)


def _lm_backend(folder: Path, settings: ServeSettings, version: str, digest: str) -> Backend:
    # Imported only when an LM is served, so the TF-enabled image needs no torch.
    from workloads.lm.export import load_export
    from workloads.lm.manifest import ExportError, IncompleteExportError
    from workloads.serve.chat import ChatTemplate
    from workloads.serve.lm_backend import LmBackend, pick_device

    try:
        model, tokenizer, _ = load_export(folder, device=pick_device(settings.device))
    except IncompleteExportError:
        raise
    except ExportError as exc:  # its manifest is there: the next download is the same export, failing the same way
        raise UnservableExportError(str(exc)) from exc
    return LmBackend(model, tokenizer, name=settings.served_name, version=version, digest=digest,
                     max_tokens_cap=settings.max_tokens_cap, chat=ChatTemplate.from_export(folder))


def _tf_backend(folder: Path, name: str, version: str, digest: str) -> Backend:
    # Imported only when a SavedModel is served, so this image needs no TensorFlow for LMs.
    try:
        serving = importlib.import_module("workloads.trainer_tf.serving")
    except ImportError as exc:
        raise UnservableExportError(
            f"--model-uri: {folder} is a TensorFlow SavedModel, which the TF-enabled serve image serves "
            "(images/serve-tf, with tensorflow and workloads.trainer_tf.serving); this one has no TensorFlow"
        ) from exc
    predictor = serving.TfSavedModel(folder)
    # The signature's own tensor names, datatypes and shapes, so v2 clients use what TF Serving would show.
    info = ModelInfo(
        name=name, version=version, digest=digest, platform="tensorflow_savedmodel",
        inputs=tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in predictor.inputs),
        outputs=tuple(TensorSpec(t.name, t.datatype, tuple(t.shape)) for t in predictor.outputs),
    )
    return TensorBackend(predictor, info)


def load_with_retries(settings: ServeSettings, loader: Loader, stop: threading.Event) -> Backend:
    """Call `loader` until it succeeds, with exponential backoff (0.5 s doubling to 5 s).

    Gives up after `settings.load_timeout_s`, as soon as `stop` is set (shutdown), or at once on
    `UnservableExportError`, re-raising the last error.
    """
    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log_event("model_load_retry", attempt=state.attempt_number, error=repr(error),
                  wait_s=round(state.upcoming_sleep, 2))

    def should_stop(state: RetryCallState) -> bool:
        return stop.is_set() or stop_after_delay(settings.load_timeout_s)(state)

    def pause(seconds: float) -> None:
        # Sleeping on the stop event lets shutdown interrupt the backoff at once.
        stop.wait(seconds)

    retrying = Retrying(
        wait=wait_exponential(multiplier=0.5, max=5), stop=should_stop, sleep=pause,
        retry=retry_if_not_exception_type(UnservableExportError),
        before_sleep=log_retry, reraise=True,
    )
    backend: Backend = retrying(loader, settings)
    return backend
