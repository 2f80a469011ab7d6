"""`s3://bucket/key` URIs, parsed without boto3 so settings models (and infra) can validate them."""

from __future__ import annotations

from dataclasses import dataclass


class S3UriError(ValueError):
    """A value that should be an `s3://bucket/prefix` URI is not one."""


def s3_uri_problem(uri: str) -> str | None:
    """Why `uri` is not an `s3://BUCKET/PREFIX` URI, or None when it is one."""
    if not uri.startswith("s3://"):
        return "expected an s3://BUCKET/PREFIX URI"
    if not uri[len("s3://") :].partition("/")[0]:
        return "the S3 URI has no bucket"
    return None


@dataclass(frozen=True)
class S3Uri:
    """A parsed `s3://bucket/key` URI."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str, *, flag: str = "uri") -> S3Uri:
        """Parse `uri`, naming `flag` in the error when it is not an S3 URI."""
        problem = s3_uri_problem(uri)
        if problem:
            raise S3UriError(f"{flag}: {problem} (got {uri!r})")
        bucket, _, key = uri[len("s3://") :].partition("/")
        return cls(bucket=bucket, key=key)

    def join(self, *parts: str) -> S3Uri:
        """A child URI: `S3Uri('b', 'a').join('c', 'd') == S3Uri('b', 'a/c/d')`."""
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"
