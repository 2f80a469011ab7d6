"""The label names NetworkPolicies select on are declared once (workloads/common/vocab.py, infra/k8s/netpol.py) and
imported by the components that label pods and write the policies, so a selector cannot drift from its pods."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infra.k8s import netpol
from workloads.common import vocab

ROOT = Path(__file__).resolve().parents[3]
DECLARED = {vocab.NAME_LABEL: "workloads/common/vocab.py", next(iter(vocab.MANAGED_BY_LABELS)): "workloads/common/vocab.py",
            netpol.NAMESPACE_NAME_LABEL: "infra/k8s/netpol.py", netpol.DNS_NAMESPACE: "infra/k8s/netpol.py"}
"""Each label (or namespace) name and the one module that spells it."""
USERS = ("infra/k8s/netpol.py", "infra/k8s/inference_netpol.py", "infra/k8s/inference.py", "infra/k8s/training.py",
         "infra/k8s/recommend.py", "infra/k8s/streaming.py", "infra/k8s/namespaces.py", "infra/k8s/local.py",
         "infra/k8s/logging.py")
"""The modules that label pods or select them in NetworkPolicies."""


def _string_constants(path: Path) -> set[str]:
    return {node.value for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)}


@pytest.mark.parametrize("module", USERS)
def test_label_names_are_imported_not_respelled(module: str) -> None:
    spelled = _string_constants(ROOT / module)
    assert sorted(name for name, home in DECLARED.items() if name in spelled and home != module) == []


def test_the_declarations_spell_them() -> None:
    for name, home in DECLARED.items():
        assert name in _string_constants(ROOT / home), (name, home)
