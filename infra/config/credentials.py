"""Plaintext credentials in stack config: an error that shows the `pulumi config set --secret` command to fix it.

Pulumi writes a secret config value as `{secure: <ciphertext>}` in the stack file (nested under a structured key
too, with `--path`), and hands a running program the names of its secret keys. A credential anywhere else sits in
plain text in git. The secret-bearing keys:
- `aws:`: the provider's static credentials, `accessKey`, `secretKey` and `token`, the three the pulumi-aws
  provider marks secret (sdk/python/pulumi_aws/provider.py, 7.51: `pulumi.Output.secret(...)` and
  `additional_secret_outputs=["accessKey", "secretKey", "token"]`);
- `modelplane:`: the fields the section models mark `json_schema_extra={"secret": True}` (`SECRET_FIELD`; none
  today: no section takes a credential, Secrets are referenced by name), and any key the schema does not have that is
  named like a credential (`SECRET_KEY_NAME`): such a key is also an unknown-key error, but its value already sits in
  git. A key the schema knows and does not mark is never a credential, whatever its name (`apiKey` is a switch, and
  `apiKey: "false"` parses as one).
"""

from __future__ import annotations

import re
import types
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Final, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonDict

from infra.config.errors import ConfigIssue
from infra.config.issues import NAMESPACE

AWS_SECRET_KEYS: Final = ("aws:accessKey", "aws:secretKey", "aws:token")
"""The `aws:` provider config keys pulumi-aws treats as secrets."""
SECRET_FIELD: Final[JsonDict] = {"secret": True}
"""`json_schema_extra` of a section field that holds a credential (it must then be a `secure:` value)."""
SECRET_KEY_NAME: Final = re.compile(r"(password|passphrase|token|secretkey|secretaccesskey|privatekey|apikey|"
                                    r"credentials?)$", re.IGNORECASE)
"""A key the schema does not have (last part of its path) that holds a credential: `authToken`, `adminPassword`."""
Schema = Mapping[str, type[BaseModel] | None]
"""Each known `modelplane:` key -> the model of its value (of each item, for a list), or None for a scalar or a
free-form map (`tags`)."""


def is_secure(value: Any) -> bool:
    """True for a value as Pulumi writes a secret into a stack file: `{secure: <ciphertext>}`."""
    return isinstance(value, dict) and set(value) == {"secure"} and isinstance(value["secure"], str)


def _plain(value: Any) -> bool:
    return isinstance(value, str) and bool(value)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The model a field's type holds (`X`, `X | None`, `list[X]`), or None."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (list, tuple, Union, types.UnionType):
        return next((m for arg in get_args(annotation) if (m := _model_in(arg)) is not None), None)
    return None


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    return next((f for name, f in model.model_fields.items() if key in (name, f.alias)), None)


def _unknown_leaves(value: Any, path: str) -> Iterator[tuple[str, str, Any]]:
    """(key path, last key name, value) of every entry under `value`, lists by index."""
    if isinstance(value, dict) and not is_secure(value):
        for key, item in value.items():
            yield f"{path}.{key}", str(key), item
            yield from _unknown_leaves(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unknown_leaves(item, f"{path}[{i}]")


def _unknown_credentials(name: str, value: Any, path: str) -> Iterator[str]:
    for at, key, item in [(path, name, value), *_unknown_leaves(value, path)]:
        if SECRET_KEY_NAME.search(key) and _plain(item):
            yield at


def _schema_credentials(value: Any, model: type[BaseModel], path: str) -> Iterator[str]:
    """Paths under `value` (parsed by `model`) of plain-text secret fields and of credential-named unknown keys."""
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _schema_credentials(item, model, f"{path}[{i}]")
    elif isinstance(value, dict) and not is_secure(value):
        for key, item in value.items():
            field = _field(model, str(key))
            if field is None:
                yield from _unknown_credentials(str(key), item, f"{path}.{key}")
            elif field.json_schema_extra == SECRET_FIELD:
                if _plain(item):
                    yield f"{path}.{key}"
            elif (sub := _model_in(field.annotation)) is not None:
                yield from _schema_credentials(item, sub, f"{path}.{key}")


def plaintext_secret_issues(stack: str, raw: Mapping[str, Any], secret_keys: Collection[str] = (),
                            schema: Schema | None = None) -> list[ConfigIssue]:
    """Every secret-bearing key of `raw` (a stack's config map) whose value is plain text. `secret_keys` are the
    top-level keys Pulumi already holds as secrets (a running program gets them decrypted); `schema` says which
    `modelplane:` keys exist and what they hold (without it every `modelplane:` key is unknown)."""
    issues = []
    for key, value in raw.items():
        if key in secret_keys:
            continue
        if key in AWS_SECRET_KEYS and not is_secure(value):
            issues.append(ConfigIssue(key, _message(stack, key, nested=False)))
        elif key.startswith(f"{NAMESPACE}:"):
            name = key.partition(":")[2]
            if schema is not None and name in schema:
                model = schema[name]
                paths = list(_schema_credentials(value, model, key)) if model is not None else []
            else:
                paths = list(_unknown_credentials(name, value, key))
            issues += [ConfigIssue(path, _message(stack, path, nested=path != key)) for path in paths]
    return issues


def _message(stack: str, path: str, *, nested: bool) -> str:
    flags = "--secret --path" if nested else "--secret"
    return (f"is a credential in plain text in the stack file; remove it and set it as a secret with `pulumi config "
            f"set {flags} --stack {stack} '{path}' <value>` (the file then holds only its `secure:` ciphertext)")
