"""Which project files a render reads, found by watching it rather than listing them by hand.

`modelplane diff` may reuse the working tree's render as the base's only when nothing the render
read has changed since the base. What it read is derived, so a new module or data file can never
be forgotten:
- the source of every module loaded from the project (whatever imported it, before or during the render);
- every file opened and every folder listed while the render runs (rule files, dashboards, stack files),
  seen through a `sys.addaudithook` hook that records only while a `recording()` block is open.
Left out: the interpreter and its environment (the base renders with the same ones), and the folders the
import system lists to find modules and distributions (the modules it finds are recorded instead).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

_OPEN: Final = "open"
_LISTINGS: Final = frozenset({"os.listdir", "os.scandir"})
_IMPORT_SYSTEM: Final = ("importlib", "_frozen_importlib")
_recorders: list[list[Any]] = []
_hooked = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # Runs on every audited event of the process: stay cheap (sys._getframe is audited too, but not recorded).
    if not _recorders or not (event == _OPEN or event in _LISTINGS):
        return
    if not args or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    caller = sys._getframe().f_back
    if event in _LISTINGS and caller is not None and str(caller.f_globals.get("__name__", "")).startswith(_IMPORT_SYSTEM):
        return
    for recorder in _recorders:
        recorder.append(args[0])


def _install() -> None:
    # An audit hook cannot be removed, so it is added once per process and is idle outside `recording()`.
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True


def module_files() -> Iterator[Path]:
    """The source file of every loaded module that has one."""
    for module in list(sys.modules.values()):
        found = getattr(module, "__file__", None)
        if isinstance(found, str) and os.path.isfile(found):
            yield Path(found)


@contextmanager
def recording(root: Path) -> Iterator[set[Path]]:
    """Within the block, collect what is read under `root`; the set is filled when the block ends."""
    _install()
    raw: list[Any] = []
    _recorders.append(raw)
    found: set[Path] = set()
    try:
        yield found
    finally:
        _recorders.remove(raw)
        top = root.resolve()
        shared = {Path(prefix).resolve() for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        for entry in [*raw, *module_files()]:
            path = Path(os.fsdecode(entry)).resolve()
            if (path.is_relative_to(top) and "__pycache__" not in path.parts and ".git" not in path.parts
                    and not any(path.is_relative_to(prefix) for prefix in shared)):
                found.add(path)
