"""The base of every stack-config model, and the wording its messages share."""

import difflib

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class Section(BaseModel):
    """Base of every config model: frozen, camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_attribute_docstrings=True,
    )


def snake(camel: str) -> str:
    """A camelCase config key as the model's snake_case field name."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in camel)


def not_one_of(value: object, allowed: tuple[str, ...] | list[str]) -> str:
    """The message for a value outside a fixed set, with the closest match when there is one."""
    hint = difflib.get_close_matches(str(value), list(allowed), n=1)
    suggestion = f"; did you mean {hint[0]!r}?" if hint else ""
    return f"must be one of {', '.join(allowed)} (got {value!r}){suggestion}"
