"""`python -m workloads.lm.fetch`: an LM export from S3, only when its manifest vouches for every file.

vLLM loads whatever folder it is given. This runs before it (an init container in our serve image, see
infra/k8s/inference_runtimes.py), so an export still being written (no `manifest.json` yet: the trainer writes it
last), an upload that crashed or a corrupted file stops the pod with a clear message instead of being served:
- by default: read the manifest, download exactly the files it lists (the folder's own files: a subfolder may hold
  other exports), then check them with `verify_manifest`, the check our own server's loader runs;
- `--verify-only`, for vLLM's Run:ai streamer, which reads S3 itself: the manifest and every file it lists must be
  in S3 with the listed size, and no weight file outside it may sit in the folder (it would shadow the listed ones).

Exit codes: 0 the export is complete, 1 it is not (the message names the URI, the file and what to do), 2 invalid
settings.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Final

from botocore.exceptions import ClientError

from workloads.common import s3
from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.common.uri import S3Uri
from workloads.lm.fetch_settings import FetchSettings
from workloads.lm.layout import MANIFEST_FILE
from workloads.lm.manifest import WEIGHT_FILES_GLOB, ExportError, verify_manifest

ADVICE: Final = ("if the export is still being written, wait for it to finish (the pod retries this step); "
                 "otherwise re-run the export")
"""What to do about an incomplete or corrupt export, appended to every refusal."""
NOT_FOUND_CODES: Final = frozenset({"404", "NoSuchKey", "NotFound"})
"""S3 error codes of a missing object (HEAD answers a bare 404)."""


def _refuse(uri: S3Uri, problem: str) -> ExportError:
    return ExportError(f"{uri}: {problem}; {ADVICE}")


def read_manifest(uri: S3Uri, client: Any) -> tuple[bytes, dict[str, dict[str, Any]]]:
    """The raw `manifest.json` under `uri` and its `files` entries (name -> sha256 and bytes)."""
    if not s3.exists(uri.join(MANIFEST_FILE), client):
        raise _refuse(uri, f"no {MANIFEST_FILE}: the export is incomplete (the trainer writes it last)")
    raw = s3.get_bytes(uri.join(MANIFEST_FILE), client)
    try:
        files: dict[str, dict[str, Any]] = json.loads(raw)["files"]
        names = list(files)
    except (ValueError, KeyError, TypeError) as exc:
        raise _refuse(uri, f"{MANIFEST_FILE} is not a manifest ({exc!r})") from exc
    # Only the folder's own files: a name with a path would reach outside the target folder or into a subfolder.
    odd = [name for name in names if Path(name).name != name or name in {".", ".."} or name == MANIFEST_FILE]
    if odd:
        raise _refuse(uri, f"{MANIFEST_FILE} lists {odd}, which are not file names of the export's own folder")
    return raw, files


def download(uri: S3Uri, target: Path, client: Any | None = None) -> list[str]:
    """Replace `target` with the files the manifest under `uri` lists and verify them; returns their names."""
    client = client or s3.client()
    raw, files = read_manifest(uri, client)
    # An earlier attempt (an init container restarted in the same pod) may have left another export's files there.
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    try:
        for name in files:
            try:
                s3.download_file(uri.join(name), target / name, client)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") not in NOT_FOUND_CODES:
                    raise
                raise _refuse(uri, f"{name} is listed in {MANIFEST_FILE} but missing in S3") from exc
        (target / MANIFEST_FILE).write_bytes(raw)
        try:
            verify_manifest(target)
        except ExportError as exc:
            raise _refuse(uri, f"the downloaded copy failed the manifest check: {exc}") from exc
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return [*files, MANIFEST_FILE]


def _object_sizes(uri: S3Uri, client: Any) -> dict[str, int]:
    """Name -> size of the export folder's own objects (not its subfolders'), from HEAD requests on its listing."""
    prefix = uri.key.rstrip("/") + "/"
    names = [key.removeprefix(prefix) for key in s3.list_keys(S3Uri(uri.bucket, prefix), client)]
    head = s3.retrying(client.head_object)
    return {name: int(head(Bucket=uri.bucket, Key=prefix + name)["ContentLength"]) for name in names if "/" not in name}


def verify_in_place(uri: S3Uri, client: Any | None = None) -> list[str]:
    """Check in S3, downloading no weights, that the export under `uri` is complete; returns the listed names."""
    client = client or s3.client()
    _, files = read_manifest(uri, client)
    sizes = _object_sizes(uri, client)
    for name, entry in files.items():
        if name not in sizes:
            raise _refuse(uri, f"{name} is listed in {MANIFEST_FILE} but missing in S3")
        if sizes[name] != entry["bytes"]:
            raise _refuse(uri, f"{name} has {sizes[name]} bytes in S3, {entry['bytes']} in {MANIFEST_FILE}")
    stray = sorted(name for name in sizes if fnmatch(name, WEIGHT_FILES_GLOB) and name not in files)
    if stray:
        raise _refuse(uri, f"weight files {stray} are not in {MANIFEST_FILE} (left from an earlier export?) and "
                           "would shadow the listed ones; re-export into an empty prefix or delete them")
    return [*files, MANIFEST_FILE]


def main(argv: Sequence[str] | None = None) -> int:
    """Fetch or verify the export; returns the process exit code (1 for a refused export, 2 for invalid settings)."""
    try:
        settings = FetchSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    try:
        if settings.verify_only:
            names = verify_in_place(settings.model_uri)
        else:
            assert settings.target is not None  # the settings require it without --verify-only
            names = download(settings.model_uri, settings.target)
    except ExportError as exc:
        print(f"refusing the model export: {exc}", file=sys.stderr)
        return 1
    log_event("export_verified", uri=str(settings.model_uri), files=len(names),
              target=None if settings.verify_only else str(settings.target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
