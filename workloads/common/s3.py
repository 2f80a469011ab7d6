"""S3 helpers shared by the trainers and the server.

The endpoint comes from the standard `AWS_ENDPOINT_URL` (botocore reads it), so the same code
runs against AWS, MinIO and the moto test server. Transient errors are retried with
exponential backoff by tenacity on top of botocore's own retries.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from workloads.common.uri import S3Uri


def client() -> Any:
    """A boto3 S3 client honouring `AWS_ENDPOINT_URL`, with adaptive retries."""
    config = Config(retries={"max_attempts": 5, "mode": "adaptive"}, connect_timeout=5, read_timeout=60)
    return boto3.client("s3", config=config, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code", "")
        return code in {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "503", "500"}
    return isinstance(exc, (BotoCoreError, EndpointConnectionError, ConnectionError))


retrying = retry(
    retry=retry_if_exception(_transient),
    wait=wait_exponential(multiplier=0.2, max=5),
    stop=stop_after_attempt(6),
    reraise=True,
)
"""Decorator: retry an S3 call on transient errors with exponential backoff."""


@retrying
def upload_file(path: Path, uri: S3Uri, s3: Any | None = None) -> None:
    """Upload one file (multipart above boto3's threshold), retried on transient errors."""
    (s3 or client()).upload_file(str(path), uri.bucket, uri.key)


@retrying
def download_file(uri: S3Uri, path: Path, s3: Any | None = None) -> None:
    """Download one object to `path`, creating parent folders, retried on transient errors."""
    path.parent.mkdir(parents=True, exist_ok=True)
    (s3 or client()).download_file(uri.bucket, uri.key, str(path))


@retrying
def put_bytes(uri: S3Uri, body: bytes, s3: Any | None = None) -> None:
    """Write a small object."""
    (s3 or client()).put_object(Bucket=uri.bucket, Key=uri.key, Body=body)


@retrying
def get_bytes(uri: S3Uri, s3: Any | None = None) -> bytes:
    """Read a small object."""
    body: bytes = (s3 or client()).get_object(Bucket=uri.bucket, Key=uri.key)["Body"].read()
    return body


def exists(uri: S3Uri, s3: Any | None = None) -> bool:
    """True when the object exists."""
    try:
        (s3 or client()).head_object(Bucket=uri.bucket, Key=uri.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
            return False
        raise
    return True


def list_keys(uri: S3Uri, s3: Any | None = None) -> list[str]:
    """Every key under the prefix `uri.key`, sorted."""
    paginator = (s3 or client()).get_paginator("list_objects_v2")
    keys: list[str] = []
    for page in paginator.paginate(Bucket=uri.bucket, Prefix=uri.key):
        keys.extend(obj["Key"] for obj in page.get("Contents", []))
    return sorted(keys)


def download_dir(uri: S3Uri, local: Path, s3: Any | None = None) -> list[Path]:
    """Download every object under the prefix `uri` into `local`. Returns the local paths."""
    s3 = s3 or client()
    prefix = uri.key.rstrip("/") + "/" if uri.key else ""
    paths = []
    for key in list_keys(S3Uri(uri.bucket, prefix), s3):
        path = local / key[len(prefix) :]
        download_file(S3Uri(uri.bucket, key), path, s3)
        paths.append(path)
    return paths


def delete_prefix(uri: S3Uri, s3: Any | None = None) -> int:
    """Delete every object under the prefix. Returns how many were deleted."""
    s3 = s3 or client()
    keys = list_keys(uri, s3)
    for start in range(0, len(keys), 1000):
        chunk = keys[start : start + 1000]
        s3.delete_objects(Bucket=uri.bucket, Delete={"Objects": [{"Key": k} for k in chunk]})
    return len(keys)
