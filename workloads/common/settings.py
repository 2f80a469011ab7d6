"""The settings base of every workload: one pydantic model generates its flags and `MODELPLANE_*` env names.

A field `max_batch_size` is the flag `--max-batch-size` and the variable `<env_prefix>MAX_BATCH_SIZE`
(the prefixes live in `workloads.common.vocab`); a flag wins over the environment. Every problem is
collected and raised at once as one `SettingsError`, each naming its flag, its variable, the value and
the rule. Only stdlib, pydantic and workloads.common are imported, so infra can read the names without
torch or TensorFlow.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, PlainSerializer, PlainValidator, ValidationError

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


class WorkloadSettings(BaseModel):
    """Base of a workload's settings model; a subclass sets `env_prefix` and `prog` and declares its fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True, protected_namespaces=())

    env_prefix: ClassVar[str]
    """Prefix of every environment variable of the workload, from workloads.common.vocab."""
    prog: ClassVar[str]
    """How the workload is started, shown in --help."""

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
            raise SettingsError(cls._problems(exc, raw)) from exc

    @classmethod
    def _problems(cls, exc: ValidationError, raw: Mapping[str, Any]) -> list[str]:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            message = error["msg"].removeprefix("Value error, ")
            if field not in cls.model_fields:
                problems.append(message)
                continue
            where = f"{cls.flag_name(field)} ({cls.env_name(field)})"
            if error["type"] == "missing":
                what = (cls.model_fields[field].description or "").split(". ")[0].rstrip(".")
                problems.append(f"{where}: is required ({what})")
            elif field in raw:
                problems.append(f"{where}: {message} (got {raw[field]!r})")
            else:
                problems.append(f"{where}: {message}")
        return problems
