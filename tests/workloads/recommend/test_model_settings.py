"""Settings of the dataset writer, trainer and service: env names, locations, and a light import for infra."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.dockerfile import REPO_ROOT
from workloads.common.settings import SettingsError
from workloads.recommend.model_settings import DatasetSettings, ServiceSettings, TrainSettings


def test_env_names_are_prefixed_per_workload() -> None:
    assert TrainSettings.env_name("data") == "MODELPLANE_RECOMMEND_TRAIN_DATA"
    assert ServiceSettings.env_name("model_uri") == "MODELPLANE_RECOMMEND_SERVICE_MODEL_URI"
    assert DatasetSettings.env_name("out") == "MODELPLANE_RECOMMEND_DATASET_OUT"


@pytest.mark.parametrize("value", ["s3://bucket/prefix", "/local/folder", "relative/folder"])
def test_a_location_is_an_s3_uri_or_a_folder(value: str) -> None:
    assert ServiceSettings.parse(["--model-uri", value], {}).model_uri == value


def test_every_bad_setting_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        ServiceSettings.parse(["--model-uri", "s3://", "--redis-url", "http://r", "--max-k", "0"], {})
    assert info.value.errors == [
        "--model-uri (MODELPLANE_RECOMMEND_SERVICE_MODEL_URI): the S3 URI has no bucket (got 's3://')",
        "--redis-url (MODELPLANE_RECOMMEND_SERVICE_REDIS_URL): use a redis://HOST:PORT/DB or rediss:// URL "
        "(the value is not shown: it may hold a secret)",
        "--max-k (MODELPLANE_RECOMMEND_SERVICE_MAX_K): Input should be greater than or equal to 1 (got '0')",
    ]


def test_the_settings_module_imports_without_torch_or_boto3() -> None:
    blocked = "import sys; sys.modules.update(dict.fromkeys(['torch', 'tensorflow', 'boto3', 'botocore'])); "
    result = subprocess.run([sys.executable, "-c", blocked + "import workloads.recommend.model_settings"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
