"""The base side of `modelplane diff`: a stack rendered by the code of a git ref.

The ref is checked out in a temporary `git worktree` and rendered there by a subprocess (the same
interpreter and venv) that imports that tree's `infra` package, while this process renders the
working tree. Renders are deterministic, so when nothing the working render read changed since the
ref, the working graphs are the base's too and the subprocess is stopped (or never started).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from infra.review.graph import Graph

# Runs inside the base worktree with that tree's code; it uses only the render API every commit has had
# (in infra.review.engine since the layered layout, in infra.render before it).
_BASE_SCRIPT: Final = """
import json, sys
from pathlib import Path
try:
    from infra.review.engine import render, stack_file
except ModuleNotFoundError:
    from infra.render import render, stack_file
out, stacks_dir, stacks = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
result = {}
for stack in stacks:
    if not stack_file(stack, stacks_dir).is_file():
        result[stack] = None
        continue
    try:
        result[stack] = json.loads(render(stack, stacks_dir).to_json())
    except Exception as exc:
        result[stack] = {"error": f"{type(exc).__name__}: {exc}"}
out.write_text(json.dumps(result))
"""


class DiffError(RuntimeError):
    """The base side could not be rendered (unknown ref, git failure, broken base tree)."""


@dataclass(frozen=True)
class BaseRender:
    """A stack rendered at the base ref."""

    graph: Graph | None
    """The graph; None when the stack has no config file at the base (or rendering failed)."""
    error: str | None = None
    """Why the base render failed, if it did."""


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def _git_out(repo: Path, *args: str) -> str:
    result = _git(repo, *args)
    if result.returncode != 0:
        raise DiffError(f"git {' '.join(args)} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout.strip()


def resolve_ref(ref: str, repo: Path) -> str:
    """The commit SHA of a git ref; a DiffError naming the ref when it does not exist."""
    result = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if result.returncode != 0:
        raise DiffError(f"unknown git ref {ref!r} in {repo} (for a PR base, fetch it first: git fetch origin main)")
    return result.stdout.strip()


def unchanged_since(sha: str, repo: Path, paths: Collection[Path]) -> bool:
    """True when `paths` (files or folders; those outside `repo` are shared by both sides) equal the commit's.

    Untracked files under them count as changes; ignored ones (caches) do not.
    """
    top = repo.resolve()
    inside = sorted({str(p.resolve().relative_to(top)) for p in paths if p.resolve().is_relative_to(top)})
    if not inside:
        return True
    diffed = _git(repo, "diff", "--quiet", sha, "--", *inside)
    if diffed.returncode not in (0, 1):
        raise DiffError(f"git diff failed: {diffed.stderr.strip()}")
    untracked = _git_out(repo, "ls-files", "--others", "--exclude-standard", "--", *inside)
    return diffed.returncode == 0 and not untracked


class BaseRenderJob:
    """The base side of a diff, started before the working tree renders so both run at once.

    Renders are deterministic, so when nothing the working render read (`reads.recording`) differs
    from the ref, its graphs are the base's too. When nothing in the project differs at all, that is
    known up front and nothing starts; otherwise the ref is checked out in a temporary git worktree
    and rendered there by a subprocess using that tree's code, and `collect` stops it if the
    working render turns out to have read only unchanged files.
    """

    def __init__(self, ref: str, stacks: Sequence[str], *, repo: Path, stacks_dir: Path) -> None:
        self.ref = ref
        self.stacks = list(stacks)
        self._repo = repo
        self._stacks_dir = stacks_dir
        self._sha = resolve_ref(ref, repo)
        self.reuse = unchanged_since(self._sha, repo, [repo, stacks_dir])
        self._process: subprocess.Popen[str] | None = None
        self._scratch: Path | None = None
        if self.reuse:
            return
        self._toplevel = Path(_git_out(repo, "rev-parse", "--show-toplevel"))
        self._scratch = Path(tempfile.mkdtemp(prefix="modelplane-base-"))
        self._tree = self._scratch / "tree"
        self._out = self._scratch / "out.json"
        _git(self._toplevel, "worktree", "prune")
        try:
            _git_out(self._toplevel, "worktree", "add", "--detach", "--quiet", str(self._tree), self._sha)
            base_repo = self._tree / repo.resolve().relative_to(self._toplevel.resolve())
            self._process = _start_render(base_repo, self.stacks, _base_stacks_dir(stacks_dir, repo, base_repo),
                                          self._out)
        except BaseException:
            self.close()
            raise

    def collect(self, current: Mapping[str, Graph], read: Collection[Path]) -> dict[str, BaseRender]:
        """Each stack's base render, given the working renders and what they `read`; then the worktree is removed."""
        if not self.reuse and unchanged_since(self._sha, self._repo, [*read, self._stacks_dir]):
            self.close()
            self.reuse = True
        if self.reuse:
            return {stack: BaseRender(current.get(stack)) for stack in self.stacks}
        try:
            assert self._process is not None
            stdout, stderr = self._process.communicate()
            if self._process.returncode != 0 or not self._out.is_file():
                tail = "\n".join((stderr or stdout).strip().splitlines()[-5:])
                raise DiffError(f"rendering {self.ref} failed (exit {self._process.returncode}): {tail}")
            return _parse_renders(self._out.read_text())
        finally:
            self.close()

    def close(self) -> None:
        """Stop the subprocess if it still runs and remove the worktree (idempotent)."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.communicate()
        if self._scratch is not None and self._scratch.exists():
            _git(self._toplevel, "worktree", "remove", "--force", str(self._tree))
            shutil.rmtree(self._scratch, ignore_errors=True)


def _base_stacks_dir(stacks_dir: Path, repo: Path, base_repo: Path) -> Path:
    # Stack files inside the repository are read as they are at the ref; others are shared by both sides.
    resolved = stacks_dir.resolve()
    return base_repo / resolved.relative_to(repo.resolve()) if resolved.is_relative_to(repo.resolve()) else resolved


def _start_render(base_repo: Path, stacks: Sequence[str], stacks_dir: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(base_repo), os.environ.get("PYTHONPATH")])),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen([sys.executable, "-c", _BASE_SCRIPT, str(out), str(stacks_dir), *stacks],
                            cwd=base_repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _parse_renders(text: str) -> dict[str, BaseRender]:
    rendered: dict[str, BaseRender] = {}
    for stack, doc in json.loads(text).items():
        if doc is None:
            rendered[stack] = BaseRender(None)
        elif "error" in doc:
            rendered[stack] = BaseRender(None, error=doc["error"])
        else:
            rendered[stack] = BaseRender(Graph.from_json(json.dumps(doc)))
    return rendered


def start(ref: str, stacks: Sequence[str], *, repo: Path, stacks_dir: Path) -> BaseRenderJob | DiffError:
    """Start rendering `stacks` at `ref`; the error instead when that cannot start (unknown ref, no git)."""
    try:
        return BaseRenderJob(ref, stacks, repo=repo, stacks_dir=stacks_dir)
    except (DiffError, OSError) as exc:
        return exc if isinstance(exc, DiffError) else DiffError(f"git is unavailable: {exc}")
