"""The Pulumi project the tools work on, found like `pulumi` finds it: walking up from a folder to `Pulumi.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

PROJECT_FILE: Final = "Pulumi.yaml"
"""The project file that marks a project's root."""


class ProjectNotFoundError(RuntimeError):
    """No project file in the start folder or any parent, or one that cannot be read."""


@dataclass(frozen=True)
class Project:
    """A project's root and where its stack files live."""

    root: Path
    """The folder holding Pulumi.yaml."""
    name: str
    """The project's `name` from Pulumi.yaml."""
    stacks_dir: Path
    """The folder of `Pulumi.<stack>.yaml` files: `stackConfigDir` from Pulumi.yaml, defaulting to the root."""


def find_project(start: Path | None = None) -> Project:
    """The project holding `start` (the current directory by default); `ProjectNotFoundError` when there is none."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_FILE).is_file():
            return _read(folder)
    raise ProjectNotFoundError(
        f"no {PROJECT_FILE} found in {here} or any parent directory. Fix: run modelplane inside the project "
        f"(the folder holding {PROJECT_FILE}, or any folder below it), e.g. `cd path/to/modelplane`.")


def _read(root: Path) -> Project:
    path = root / PROJECT_FILE
    try:
        doc: Any = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ProjectNotFoundError(f"{path} cannot be read: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("name"), str):
        raise ProjectNotFoundError(f"{path}: must be a map with a string 'name' (got {doc!r})")
    stack_dir = doc.get("stackConfigDir") or "."
    if not isinstance(stack_dir, str):
        raise ProjectNotFoundError(f"{path}: 'stackConfigDir' must be a folder path (got {stack_dir!r})")
    return Project(root=root, name=doc["name"], stacks_dir=(root / stack_dir).resolve())
