"""Entry point: validate flags, `TF_CONFIG` (or the JobSet pod's variables), S3 and the data, then import TensorFlow
and train.

Exit codes: 0 done, 2 bad configuration (the message names the flag or variable), 1 anything else (a training
step that outlived `--collective-timeout` among them).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from workloads.common import s3
from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.common.uri import S3Uri
from workloads.trainer_tf.config import TrainSettings, check_batch_size, parse_args, parse_tf_config
from workloads.trainer_tf.data import load_images
from workloads.trainer_tf.jobset import TF_CONFIG_VAR, resolve_tf_config

EXIT_CONFIG = 2
"""Exit code for a configuration error, as argparse uses."""


def check_bucket(uri: S3Uri, flag: str, client: Any | None = None) -> None:
    """Raise `SettingsError` naming `flag` unless `uri`'s bucket exists and answers."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "the AWS default endpoint"
    try:
        (client or s3.client()).head_bucket(Bucket=uri.bucket)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        reason = "does not exist" if code in {"404", "NoSuchBucket", "NotFound"} else f"is not accessible ({code})"
        raise SettingsError(f"{flag}: bucket '{uri.bucket}' {reason} at {endpoint}; create it or fix the URI "
                          f"(got '{uri}')") from exc
    except BotoCoreError as exc:
        raise SettingsError(f"{flag}: cannot reach S3 at {endpoint} for bucket '{uri.bucket}' ({exc})") from exc


def preflight(config: TrainSettings) -> None:
    """Check every S3 bucket the run will write to, before any training."""
    client = s3.client()
    check_bucket(config.export, "--export", client)
    if config.backup_uri is not None:
        check_bucket(config.backup_uri, "--backup-uri", client)


def _fail(exc: SettingsError) -> int:
    for message in exc.errors:
        print(f"error: {message}", file=sys.stderr)
    log_event("config_error", errors=exc.errors)
    return EXIT_CONFIG


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trainer; returns the process exit code."""
    try:
        config = parse_args(argv)
        tf_config = resolve_tf_config(os.environ)
        if tf_config is not None:
            # MultiWorkerMirroredStrategy's cluster resolver reads TF_CONFIG from the environment itself.
            os.environ[TF_CONFIG_VAR] = tf_config
        role = parse_tf_config(tf_config)
        check_batch_size(config, role)
        preflight(config)
        data = load_images(config.data)
    except SettingsError as exc:
        return _fail(exc)
    log_event("config", data=config.data, examples=len(data), epochs=config.epochs, batch_size=config.batch_size,
              lr=config.lr, export=str(config.export), worker=role.rank, workers=role.num_workers)
    # Imported here, after validation, so bad input fails in milliseconds instead of after TF's import.
    from workloads.trainer_tf.train import run

    try:
        run(config, role, data)
    except SettingsError as exc:
        return _fail(exc)
    return 0
