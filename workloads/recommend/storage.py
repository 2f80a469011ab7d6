"""Files under a location that is either `s3://BUCKET/PREFIX` or a local folder, over workloads.common.s3.

The recommender's log, checkpoints and export are a few small files, so reads and writes are whole objects.
S3 calls go through workloads.common.s3 (AWS_ENDPOINT_URL, retries), so AWS, MinIO and the test server all work.
"""

from __future__ import annotations

from pathlib import Path

from workloads.common import s3
from workloads.common.uri import S3Uri


def is_s3(location: str) -> bool:
    """True for an `s3://` location."""
    return location.startswith("s3://")


def list_names(location: str) -> list[str]:
    """Names (paths relative to the location) of every file under it, sorted; empty when there is none."""
    if is_s3(location):
        uri = S3Uri.parse(location)
        prefix = uri.key.rstrip("/") + "/" if uri.key else ""
        return [key[len(prefix):] for key in s3.list_keys(S3Uri(uri.bucket, prefix))]
    root = Path(location)
    if not root.is_dir():
        return []
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def read_bytes(location: str, name: str) -> bytes:
    """The content of file `name` under the location."""
    if is_s3(location):
        return s3.get_bytes(S3Uri.parse(location).join(name))
    return (Path(location) / name).read_bytes()


def write_bytes(location: str, name: str, body: bytes) -> str:
    """Write file `name` under the location (creating folders); returns where it went."""
    if is_s3(location):
        uri = S3Uri.parse(location).join(name)
        s3.put_bytes(uri, body)
        return str(uri)
    path = Path(location) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write then rename, so a reader (or a resumed trainer) never sees a half-written file.
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(body)
    partial.replace(path)
    return str(path)


def delete(location: str, name: str) -> None:
    """Delete file `name` under the location; an absent file is no error."""
    if is_s3(location):
        uri = S3Uri.parse(location).join(name)
        s3.retrying(lambda: s3.client().delete_object(Bucket=uri.bucket, Key=uri.key))()
        return
    (Path(location) / name).unlink(missing_ok=True)


def local_copy(location: str, scratch: Path) -> Path:
    """A local folder with the location's files: the folder itself, or a download of the S3 prefix into `scratch`."""
    if not is_s3(location):
        return Path(location)
    s3.download_dir(S3Uri.parse(location), scratch)
    return scratch
