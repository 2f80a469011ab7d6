"""The settings base every workload shares: flags and env names from one model, flag over env, all problems at once."""

from __future__ import annotations

import subprocess
import sys
from typing import ClassVar

import pytest
from pydantic import Field

from tests.support.dockerfile import REPO_ROOT
from workloads.common.settings import S3UriSetting, SettingsError, WorkloadSettings
from workloads.common.uri import S3Uri


class Example(WorkloadSettings):
    """An example workload."""

    env_prefix: ClassVar[str] = "MODELPLANE_EXAMPLE_"
    prog: ClassVar[str] = "example"

    source: S3UriSetting
    """Where the input is. Required."""
    max_batch_size: int = Field(4, ge=1)
    """Largest batch. Defaults to 4."""
    verbose: bool = False
    """Log more. Defaults to off."""


def test_names_come_from_the_field() -> None:
    assert Example.flag_name("max_batch_size") == "--max-batch-size"
    assert Example.env_name("max_batch_size") == "MODELPLANE_EXAMPLE_MAX_BATCH_SIZE"


def test_a_flag_wins_over_the_environment_and_booleans_are_switches() -> None:
    environ = {"MODELPLANE_EXAMPLE_SOURCE": "s3://b/in", "MODELPLANE_EXAMPLE_MAX_BATCH_SIZE": "2"}
    settings = Example.parse(["--max-batch-size", "8", "--verbose"], environ)
    assert (settings.source, settings.max_batch_size, settings.verbose) == (S3Uri("b", "in"), 8, True)
    assert Example.parse([], {**environ, "MODELPLANE_EXAMPLE_VERBOSE": "true"}).verbose is True


def test_every_problem_is_reported_at_once_with_flag_variable_value_and_rule() -> None:
    with pytest.raises(SettingsError) as info:
        Example.parse(["--max-batch-size", "0"], {})
    assert info.value.errors == [
        "--source (MODELPLANE_EXAMPLE_SOURCE): is required (Where the input is)",
        "--max-batch-size (MODELPLANE_EXAMPLE_MAX_BATCH_SIZE): Input should be greater than or equal to 1 (got '0')",
    ]
    assert str(info.value).startswith("invalid settings:\n  --source")


def test_s3_settings_name_the_rule_and_the_value() -> None:
    with pytest.raises(SettingsError) as info:
        Example.parse(["--source", "/local/path"], {})
    assert info.value.errors == [
        "--source (MODELPLANE_EXAMPLE_SOURCE): expected an s3://BUCKET/PREFIX URI (got '/local/path')"]


def test_help_lists_every_flag_with_its_variable() -> None:
    text = " ".join(Example.build_parser().format_help().split())
    for field in Example.model_fields:
        assert f"{Example.flag_name(field)}" in text and f"[env {Example.env_name(field)}]" in text


@pytest.mark.parametrize("module", ["workloads.serve.settings", "workloads.trainer_torch.config",
                                    "workloads.trainer_tf.config", "workloads.gateway.settings",
                                    "workloads.recommend.settings"])
def test_settings_modules_import_without_torch_tensorflow_or_boto3(module: str) -> None:
    blocked = "import sys; sys.modules.update(dict.fromkeys(['torch', 'tensorflow', 'boto3', 'botocore'])); "
    result = subprocess.run([sys.executable, "-c", blocked + f"import {module}"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
