"""`reads.recording`: what a render read, derived by watching it (the watch list of `modelplane diff`)."""

import importlib
import os
import sys
from pathlib import Path

import pytest

from infra.review import reads


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    (root / "rules").mkdir(parents=True)
    (root / "rules" / "a.yaml").write_text("groups: []\n")
    (root / "data.json").write_text("{}\n")
    (root / "recorded_module_x.py").write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.delitem(sys.modules, "recorded_module_x", raising=False)
    return root


def test_files_opened_folders_listed_and_modules_loaded_under_the_root_are_recorded(project: Path) -> None:
    with reads.recording(project) as read:
        (project / "data.json").read_text()
        sorted((project / "rules").glob("*.yaml"))
        importlib.import_module("recorded_module_x")
    assert {project / "data.json", project / "rules", project / "recorded_module_x.py"} <= read
    assert project not in read, "the folder the import system listed to find the module is not an input"


def test_the_interpreters_environment_is_not_recorded(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    venv = project / ".venv"
    venv.mkdir()
    (venv / "site.cfg").write_text("x\n")
    monkeypatch.setattr(sys, "prefix", str(venv))
    with reads.recording(project) as read:
        (venv / "site.cfg").read_text()
    assert not [path for path in read if path.is_relative_to(venv)]


def test_reads_outside_the_root_or_the_block_are_not_recorded(project: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("x\n")
    (project / "data.json").read_text()
    with reads.recording(project) as read:
        outside.read_text()
        os.listdir(tmp_path)
    assert project / "data.json" not in read
    assert not [path for path in read if not path.is_relative_to(project.resolve())]
