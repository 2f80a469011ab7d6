"""The settings base of every workload: one pydantic model generates its flags and `MODELPLANE_*` env names.

A field `max_batch_size` is the flag `--max-batch-size` and the variable `<env_prefix>MAX_BATCH_SIZE`
(the prefixes live in `workloads.common.vocab`); a flag wins over the environment. Every problem is
collected and raised at once as one `SettingsError`, each naming its flag, its variable, the value and
the rule. Only stdlib, pydantic and workloads.common are imported, so infra can read the names without
torch or TensorFlow.

A secret (a Redis URL with its password, an API key) comes from a file: a field `<name>_file` typed
`SecretFileSetting` names the file, and its text fills the field `<name>` when that is not given itself. In a pod
the file is a key of a Kubernetes Secret mounted read-only under `SECRETS_DIR` (infra mounts it there and sets the
`*_FILE` variable), so no secret value is ever an environment variable; local runs may still pass the value itself,
and then the file setting is ignored (not read, not checked), so a stale `*_FILE` variable cannot break such a run.

Rotation: every secret file is read once, when the workload starts (the settings, and the API keys the server and the
gateway check); a rotated Secret takes effect on the pods' next start (`kubectl rollout restart deployment/NAME`), so
no request ever waits on, or fails over, a file read. A secret's value is never shown: not in a `SettingsError`
(a problem in it names the file flag and path, not the text), not in its pydantic cause, not in the settings' repr.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    model_validator,
)

from workloads.common.uri import S3Uri, s3_uri_problem


class SettingsError(ValueError):
    """One or more settings are invalid; `errors` holds one message per problem and the message lists them all."""

    def __init__(self, errors: str | Sequence[str]) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        """One message per problem, each naming its flag (and variable) and the value."""
        super().__init__("invalid settings:\n  " + "\n  ".join(self.errors))


def _to_s3_uri(value: Any) -> S3Uri:
    if isinstance(value, S3Uri):
        return value
    problem = s3_uri_problem(str(value))
    if problem:
        raise ValueError(problem)
    return S3Uri.parse(str(value))


S3UriSetting = Annotated[S3Uri, PlainValidator(_to_s3_uri), PlainSerializer(str)]
"""A setting holding an `s3://BUCKET/PREFIX` URI, parsed into an `S3Uri`."""


def _check_redis_url(value: str) -> str:
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError("use a redis://HOST:PORT/DB or rediss:// URL")
    return value


RedisUrlSetting = Annotated[str, AfterValidator(_check_redis_url)]
"""A setting holding the URL redis-py's `from_url` takes (redis://, rediss:// or unix://)."""

HTTP_KEEP_ALIVE_S: Final = 75
"""Seconds our HTTP servers (serve, gateway, recommend) keep an idle client connection. Uvicorn's 5 s default equals
httpx's idle expiry, so a client could send on a connection the server was closing (a reset, seen by the soak); 75 s
outlasts the idle time of the clients and load balancers in front (ALB 60 s); the mesh retries reset-before-request."""
SECRETS_DIR: Final = "/etc/modelplane/secrets"
"""Folder where a pod mounts its Secrets as read-only files (one projected volume; see infra/k8s/podspec.py)."""
REDIS_URL_FILE: Final = "redis-url"
"""File name, under SECRETS_DIR, of the Redis URL with its password (settings field `redis_url_file`)."""
API_KEY_FILE: Final = "api-key"
"""File name, under SECRETS_DIR, of the API key(s) clients send (the server's `api_key_file`, the gateway's
`api_keys_file`)."""
SECRET_MASK: Final = "<hidden>"
"""What repr shows instead of a secret setting's value."""
FILE_SUFFIX: Final = "_file"
"""A field `<name>_file` holds the path of the file whose text is the value of the field `<name>`."""


def read_secret(path: Path) -> str:
    """The text of a secret file, stripped; a ValueError (naming the problem and the fix, never the text) when the
    file cannot be read or is empty."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the file ({exc.__class__.__name__}: {exc}); mount the Secret that holds it") from exc
    if not text:
        raise ValueError("the file is empty; write the value into it (a Secret key with the value)")
    return text


def _check_secret_file(value: Path) -> Path:
    read_secret(value)
    return value


SecretFileSetting = Annotated[Path, AfterValidator(_check_secret_file)]
"""A setting naming a readable, non-empty file that holds a secret (a mounted Kubernetes Secret's key)."""


class WorkloadSettings(BaseModel):
    """Base of a workload's settings model; a subclass sets `env_prefix` and `prog` and declares its fields."""

    # hide_input_in_errors: a ValidationError (kept as a SettingsError's cause) must not carry a secret's value.
    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, protected_namespaces=(),
                              hide_input_in_errors=True)

    env_prefix: ClassVar[str]
    """Prefix of every environment variable of the workload, from workloads.common.vocab."""
    prog: ClassVar[str]
    """How the workload is started, shown in --help."""

    @model_validator(mode="before")
    @classmethod
    def _read_secret_files(cls, data: Any) -> Any:
        """Fill each field `<name>` that has a `<name>_file` sibling from that file. When `<name>` is given itself the
        value wins and the file setting is dropped unread; an unreadable or empty file is left to the file field's
        own check, which reports it."""
        if not isinstance(data, dict):
            return data
        filled = dict(data)
        for target, name in cls.secret_files().items():
            if filled.get(target) is not None:
                filled.pop(name, None)
                continue
            if not filled.get(name):
                continue
            try:
                filled[target] = read_secret(Path(filled[name]))
            except ValueError:
                continue
        return filled

    def __repr_args__(self) -> Any:
        # A field that may come from a secret file holds a secret (a URL with its password): repr shows it masked.
        secret = self.secret_files()
        for name, value in super().__repr_args__():
            yield name, (SECRET_MASK if name in secret and value is not None else value)

    @classmethod
    def secret_files(cls) -> dict[str, str]:
        """{field: its `<field>_file` sibling} of every field that may be read from a file."""
        return {name.removesuffix(FILE_SUFFIX): name for name in cls.model_fields
                if name.endswith(FILE_SUFFIX) and name.removesuffix(FILE_SUFFIX) in cls.model_fields}

    @classmethod
    def flag_name(cls, field: str) -> str:
        """The command-line flag of a field: `max_batch_size` -> `--max-batch-size`."""
        return "--" + field.replace("_", "-")

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable of a field: `max_batch_size` -> `<env_prefix>MAX_BATCH_SIZE`."""
        return cls.env_prefix + field.upper()

    @classmethod
    def build_parser(cls) -> argparse.ArgumentParser:
        """One string-valued flag per field (a bare switch for booleans), so pydantic does every type check."""
        parser = argparse.ArgumentParser(prog=cls.prog, description=(cls.__doc__ or "").splitlines()[0])
        for name, field in cls.model_fields.items():
            help_text = " ".join((field.description or "").split()) + f" [env {cls.env_name(name)}]"
            if field.annotation is bool:
                parser.add_argument(cls.flag_name(name), dest=name, action="store_const", const="true",
                                    default=None, help=help_text)
            else:
                parser.add_argument(cls.flag_name(name), dest=name, default=None, help=help_text, metavar="VALUE")
        return parser

    @classmethod
    def parse(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None, *,
              context: Mapping[str, Any] | None = None) -> Self:
        """Settings from `argv` over `environ` (default: os.environ); raises `SettingsError` listing every problem.

        `context` carries facts that are not settings (torchrun's world size) to the cross-field rules.
        """
        environ = os.environ if environ is None else environ
        flags = vars(cls.build_parser().parse_args(argv))
        raw: dict[str, Any] = {}
        for name in cls.model_fields:
            value = flags.get(name)
            if value is None:
                value = environ.get(cls.env_name(name))
            if value is not None and value != "":
                raw[name] = value
        try:
            return cls.model_validate(raw, context=dict(context or {}))
        except ValidationError as exc:
            # The cause is kept for debugging; hide_input_in_errors keeps every input value out of it.
            raise SettingsError(cls._problems(exc, raw)) from exc

    @classmethod
    def _where(cls, field: str) -> str:
        return f"{cls.flag_name(field)} ({cls.env_name(field)})"

    @classmethod
    def _problems(cls, exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
        problems = []
        files = cls.secret_files()
        for error in exc.errors(include_input=False):
            field = str(error["loc"][0]) if error["loc"] else ""
            message = error["msg"].removeprefix("Value error, ")
            if field not in cls.model_fields:
                problems.append(message)
                continue
            where = cls._where(field)
            from_file = field in files and field not in raw and files[field] in raw
            if error["type"] == "missing":
                if from_file:
                    continue  # the file field's own check says why its file gave no value
                what = (cls.model_fields[field].description or "").split(". ")[0].rstrip(".")
                alternative = f"; or set {cls._where(files[field])} to a file holding it" if field in files else ""
                problems.append(f"{where}: is required ({what}){alternative}")
            elif from_file:
                # Name the file, never its text: the value is a secret.
                problems.append(f"{cls._where(files[field])}: the file's value: {message} (file {raw[files[field]]})")
            elif field in files:
                problems.append(f"{where}: {message} (the value is not shown: it may hold a secret)")
            elif field in raw:
                problems.append(f"{where}: {message} (got {raw[field]!r})")
            else:
                problems.append(f"{where}: {message}")
        return problems
