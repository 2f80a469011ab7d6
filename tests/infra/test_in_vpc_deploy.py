"""The deploy workflow's in-VPC step (.github/scripts/in-vpc-deploy.sh), run against a stand-in `aws` CLI."""

import json
import os
import subprocess
import zipfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / ".github" / "scripts" / "in-vpc-deploy.sh"

# A stand-in for the AWS CLI: records each call, copies uploads, and answers batch-get-builds from a list of statuses.
FAKE_AWS = """#!/usr/bin/env bash
set -euo pipefail
printf '%s\\n' "$*" >> "$FAKE_DIR/calls"
case "$1 $2" in
  "s3 cp") cp "$4" "$FAKE_DIR/uploaded.zip" ;;
  "codebuild start-build") echo "modelplane-dev-deployer:build-1" ;;
  "codebuild batch-get-builds")
    status="$(head -n 1 "$FAKE_DIR/statuses")"; sed -i 1d "$FAKE_DIR/statuses"; echo "$status" ;;
  *) echo "unexpected aws call: $*" >&2; exit 9 ;;
esac
"""


@pytest.fixture()
def checkout(tmp_path: Path) -> Path:
    """A one-commit repository standing in for the workflow's checkout."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "Pulumi.yaml").write_text("name: modelplane\n")
    (repo / "untracked.txt").write_text("not committed\n")
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    for args in (["init", "-q"], ["add", "Pulumi.yaml"], ["commit", "-qm", "one"]):
        subprocess.run(["git", *args], cwd=repo, check=True, env=env)
    return repo


def _run(checkout: Path, tmp_path: Path, statuses: list[str],
         **overrides: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    fake = tmp_path / "fake"
    (fake / "bin").mkdir(parents=True)
    (fake / "bin" / "aws").write_text(FAKE_AWS)
    (fake / "bin" / "aws").chmod(0o755)
    (fake / "statuses").write_text("\n".join(statuses) + "\n")
    env = {**os.environ, "PATH": f"{fake / 'bin'}:{os.environ['PATH']}", "FAKE_DIR": str(fake),
           "PROJECT": "modelplane-dev-deployer", "BUCKET": "deployer-source-1234", "GITHUB_SHA": "abc123",
           "PULUMI_BACKEND_URL": "s3://acme-pulumi-state?region=us-east-1", "POLL_SECONDS": "0", **overrides}
    result = subprocess.run(["bash", str(SCRIPT)], cwd=checkout, env=env, capture_output=True, text=True, check=False,
                            timeout=60)
    calls = (fake / "calls").read_text().splitlines() if (fake / "calls").exists() else []
    return result, calls


def test_uploads_the_commit_starts_the_project_on_it_and_follows_the_build(checkout: Path, tmp_path: Path) -> None:
    result, calls = _run(checkout, tmp_path, ["IN_PROGRESS", "IN_PROGRESS", "SUCCEEDED"])
    assert result.returncode == 0, result.stderr
    assert calls[0].startswith("s3 cp") and calls[0].endswith("s3://deployer-source-1234/abc123.zip")
    start = calls[1]
    assert "codebuild start-build --project-name modelplane-dev-deployer" in start
    assert "--source-location-override deployer-source-1234/abc123.zip" in start
    overrides = json.loads(start.split("--environment-variables-override ", 1)[1].split(" --query")[0])
    assert overrides == [{"name": "PULUMI_BACKEND_URL", "value": "s3://acme-pulumi-state?region=us-east-1",
                          "type": "PLAINTEXT"}]
    assert calls[2:] == ["codebuild batch-get-builds --ids modelplane-dev-deployer:build-1 --query "
                         "builds[0].buildStatus --output text"] * 3
    with zipfile.ZipFile(tmp_path / "fake" / "uploaded.zip") as archive:
        assert archive.namelist() == ["Pulumi.yaml"]  # the commit only: nothing untracked


@pytest.mark.parametrize("status", ["FAILED", "FAULT", "TIMED_OUT", "STOPPED"])
def test_a_failed_build_fails_the_job_and_says_where_the_logs_are(checkout: Path, tmp_path: Path, status: str) -> None:
    result, _ = _run(checkout, tmp_path, ["IN_PROGRESS", status])
    assert result.returncode == 1
    assert f"::error::CodeBuild build modelplane-dev-deployer:build-1 ended {status}" in result.stdout
    assert "/aws/codebuild/modelplane-dev-deployer" in result.stdout


def test_missing_outputs_stop_before_any_call(checkout: Path, tmp_path: Path) -> None:
    result, calls = _run(checkout, tmp_path, ["SUCCEEDED"], BUCKET="")
    assert result.returncode != 0 and calls == []
    assert "deployer_source_bucket output missing: did the AWS half run?" in result.stderr
