"""`modelplane render` rejects invalid instance types, pool bounds, plaintext secrets and overlapping routes with exit
2, the key path named, and nothing written (issue 17, acceptance)."""

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from infra.review.cli import app
from tests.support.graph import stack_config_with

runner = CliRunner()
LM = {"name": "lm", "model": "lm-small", "minReplicas": 1, "maxReplicas": 2, "ingress": {"pathPrefix": ""}}
DIGITS = {"name": "digits", "runtime": "tf-serving", "model": "digits-cnn", "minReplicas": 1, "maxReplicas": 2,
          "ingress": {"pathPrefix": ""}}

CASES: list[tuple[str, dict[str, Any], str, str]] = [
    ("instance type", {"modelplane:nodePools": [{"name": "system", "instanceTypes": ["t3.lareg"], "minSize": 1,
                                                 "desiredSize": 2, "maxSize": 3}]},
     "modelplane:nodePools[0].instanceTypes[0]", "did you mean 't3.large'?"),
    ("instance family", {"modelplane:gpuPools": [{"name": "gpu-train", "instanceFamilies": ["g7x"], "gpuLimit": 4},
                                                 {"name": "gpu-infer", "instanceFamilies": ["g6"], "gpuLimit": 2}]},
     "modelplane:gpuPools[0].instanceFamilies[0]", "did you mean 'g7'?"),
    ("pool bound", {"modelplane:gpuPools": [{"name": "gpu-train", "instanceFamilies": ["g5"], "gpuLimit": 4000},
                                            {"name": "gpu-infer", "instanceFamilies": ["g6"], "gpuLimit": 2}]},
     "modelplane:gpuPools[0].gpuLimit", "must be at most 64 (got 4000)"),
    ("plaintext secret", {"aws:secretKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
     "aws:secretKey", "`pulumi config set --secret --stack bad 'aws:secretKey' <value>`"),
    ("overlapping routes", {"modelplane:inference": {"services": [LM, DIGITS]}},
     "modelplane:inference.services[1].ingress", "overlaps route /v1/ of 'lm' (services[0])"),
]


@pytest.mark.parametrize(("changes", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_render_exits_2_naming_the_key_and_writes_nothing(
    tmp_path: Path, changes: dict[str, Any], path: str, fragment: str
) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    (stacks / "Pulumi.bad.yaml").write_text(yaml.safe_dump({"config": stack_config_with("dev", changes)}))
    out = tmp_path / "out"
    result = runner.invoke(app, ["render", "--stack", "bad", "--out", str(out), "--stacks-dir", str(stacks)])
    assert result.exit_code == 2, result.output
    line = next((ln for ln in result.stderr.splitlines() if f"{path}:" in ln), None)
    assert line is not None, f"{path} not named in:\n{result.stderr}"
    assert fragment in line, line
    assert not out.exists()


def test_a_secure_credential_renders(tmp_path: Path) -> None:
    stacks = tmp_path / "stacks"
    stacks.mkdir()
    raw = stack_config_with("dev", {"aws:secretKey": {"secure": "v1:AAABAKz9fWqu1eGmMR3b2A==:7k5Y"}})
    (stacks / "Pulumi.ok.yaml").write_text(yaml.safe_dump({"config": raw}))
    result = runner.invoke(app, ["render", "--stack", "ok", "--out", str(tmp_path / "out"), "--stacks-dir", str(stacks)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "out" / "graph.json").is_file()
