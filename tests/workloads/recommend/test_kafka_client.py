"""The shared Kafka connection contract: settings mixin, plaintext config, and the MSK IAM token librdkafka uses.

The IAM path runs AWS's real signer offline: it presigns a `kafka-cluster:Connect` URL from env credentials
(no network). A real librdkafka client is then built from the config and asked for its token.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from confluent_kafka import Producer

from workloads.common.settings import SettingsError
from workloads.recommend.kafka import client_config
from workloads.recommend.settings import LoadgenSettings, ProcessorSettings

ACCESS_KEY = "AKIAEXAMPLEEXAMPLE01"


@pytest.fixture()
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Static credentials in the environment, and nothing else botocore's default chain could find."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-example-key")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def _loadgen(**env: str) -> LoadgenSettings:
    return LoadgenSettings.parse([], {f"MODELPLANE_RECOMMEND_LOADGEN_{k.upper()}": v for k, v in env.items()})


def test_plaintext_config_is_only_the_bootstrap_servers() -> None:
    assert client_config(_loadgen(bootstrap_servers="k:9092")) == {"bootstrap.servers": "k:9092"}


def test_iam_requires_a_region_naming_the_flag_and_variable() -> None:
    with pytest.raises(SettingsError) as info:
        ProcessorSettings.parse(["--bootstrap-servers", "b:9098", "--redis-url", "redis://r:6379/0",
                                 "--kafka-auth", "iam"], {})
    assert info.value.errors == ["--kafka-region (MODELPLANE_RECOMMEND_KAFKA_REGION): is required when --kafka-auth "
                                 "is iam (set the MSK cluster's region, e.g. us-east-1)"]


def test_unknown_auth_mode_is_refused_with_the_valid_values() -> None:
    with pytest.raises(SettingsError) as info:
        _loadgen(bootstrap_servers="k:9092", kafka_auth="scram")
    assert info.value.errors == ["--kafka-auth (MODELPLANE_RECOMMEND_LOADGEN_KAFKA_AUTH): Input should be 'none' or "
                                 "'iam' (got 'scram')"]


def test_iam_config_uses_sasl_ssl_oauthbearer() -> None:
    config = client_config(_loadgen(bootstrap_servers="b-1:9098", kafka_auth="iam", kafka_region="eu-west-1"))
    assert {k: v for k, v in config.items() if k != "oauth_cb"} == {
        "bootstrap.servers": "b-1:9098", "security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}
    assert callable(config["oauth_cb"])


@pytest.mark.usefixtures("aws_env")
def test_iam_token_is_a_presigned_kafka_connect_url_with_its_expiry_in_seconds() -> None:
    config = client_config(_loadgen(bootstrap_servers="b-1:9098", kafka_auth="iam", kafka_region="eu-west-1"))
    before = time.time()
    token, expiry = config["oauth_cb"](None)
    url = urlparse(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode())
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc) == ("https", "kafka.eu-west-1.amazonaws.com")
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith(f"{ACCESS_KEY}/")
    assert "/eu-west-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"][0]
    assert query["X-Amz-Expires"] == ["900"]
    # Seconds since the epoch (confluent-kafka multiplies by 1000), about 15 minutes ahead.
    assert before + 800 < expiry < before + 1000


@pytest.mark.usefixtures("aws_env")
def test_librdkafka_accepts_the_iam_config_and_fetches_its_token_through_the_callback() -> None:
    config = client_config(_loadgen(bootstrap_servers="127.0.0.1:1", kafka_auth="iam", kafka_region="us-east-1"))
    sign = config["oauth_cb"]
    calls: list[tuple[str, float]] = []

    def recording(oauth_config: str | None) -> tuple[str, float]:
        calls.append(sign(oauth_config))
        return calls[-1]

    # An unknown or misspelt property would raise here; nothing listens on port 1 (loopback only).
    producer = Producer({**config, "oauth_cb": recording})
    deadline = time.monotonic() + 10
    while not calls and time.monotonic() < deadline:
        producer.poll(0.2)
    assert len(calls) >= 1 and calls[0][0]
    producer.flush(0)
