"""The Kafka connection contract of the Kafka workloads (processor, load generator, topics Job): one settings mixin
and the librdkafka config built from it. It lives here, not in workloads.common, because only the recommend image
carries the Kafka client and the signer (the serve and trainer images copy workloads/common whole).

`KafkaClientSettings` declares the connection fields once (`--bootstrap-servers`, `--kafka-auth`, `--kafka-region`
and their `<env_prefix>*` variables); `client_config` turns them into the confluent-kafka (librdkafka) config
every producer, consumer and admin client starts from.

- `none`: plaintext, no authentication (Tansu in tests and the demo, Strimzi's internal listener on `local`).
- `iam`: Amazon MSK with IAM access control: SASL/OAUTHBEARER over TLS, the token signed by AWS's maintained
  `aws-msk-iam-sasl-signer-python` (github.com/aws/aws-msk-iam-sasl-signer-python, MSKAuthTokenProvider.py:
  `generate_auth_token(region)` returns (base64url presigned `kafka-cluster:Connect` URL, expiry in epoch ms),
  valid 900 s, with credentials from botocore's default chain, which on EKS is Pod Identity's container
  credentials endpoint). confluent-kafka's `oauth_cb` must return (token, expiry in epoch *seconds*): it
  hands `expiry * 1000` to rd_kafka_oauthbearer_set_token (src/confluent_kafka/src/confluent_kafka.c), and
  librdkafka asks for a new one before the token expires. Since confluent-kafka 2.13.0 (#2130) every client
  enables librdkafka's SASL background callbacks (rd_kafka_conf_enable_sasl_queue, then
  rd_kafka_sasl_background_callbacks_enable in src/confluent_kafka/src/{Producer,Consumer,Admin}.c), so the
  callback runs on librdkafka's background thread, not from poll(): a client that polls rarely (the topics
  Job's AdminClient) still refreshes. Creating a client waits up to 10 s for the first token and raises
  KafkaException without one (wait_for_oauth_token_set in confluent_kafka.c).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

KafkaAuth = Literal["none", "iam"]
"""How a client authenticates: `none` (plaintext) or `iam` (MSK IAM over SASL/OAUTHBEARER and TLS)."""

IAM_CLIENT_CONFIG: dict[str, str] = {"security.protocol": "SASL_SSL", "sasl.mechanism": "OAUTHBEARER"}
"""librdkafka settings of the `iam` mode besides the callback: MSK's IAM listener (port 9098) is TLS only
(https://docs.aws.amazon.com/msk/latest/developerguide/iam-access-control.html)."""


class KafkaClientSettings(BaseModel):
    """Mixin of a workload's settings (before WorkloadSettings in the bases): where the brokers are and how to log in."""

    model_config = ConfigDict(frozen=True, extra="forbid", use_attribute_docstrings=True)

    bootstrap_servers: str = Field(min_length=1)
    """Kafka bootstrap servers, HOST:PORT[,HOST:PORT...]. Required."""
    kafka_auth: KafkaAuth = "none"
    """Client authentication. Defaults to none. Valid values: none (plaintext), iam (MSK IAM: SASL_SSL/OAUTHBEARER)."""
    kafka_region: str = Field("", validate_default=True)
    """AWS region of the MSK cluster, signed into the IAM token. Required when kafka_auth is iam; defaults to none."""

    @field_validator("kafka_region")
    @classmethod
    def _region_for_iam(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("kafka_auth") == "iam" and not value:
            raise ValueError("is required when --kafka-auth is iam (set the MSK cluster's region, e.g. us-east-1)")
        return value


def msk_iam_token_callback(region: str) -> Callable[[str | None], tuple[str, float]]:
    """An `oauth_cb` returning a fresh MSK IAM token for `region` and its expiry in epoch seconds."""

    # Imported here: the settings modules import this one, and infra reads their names without boto3 (which the
    # signer imports); only an iam client needs it.
    from aws_msk_iam_sasl_signer import MSKAuthTokenProvider

    def _token(_oauthbearer_config: str | None) -> tuple[str, float]:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
        return token, expiry_ms / 1000

    return _token


def client_config(settings: KafkaClientSettings) -> dict[str, Any]:
    """The librdkafka config of `settings`' brokers and authentication; callers add their own keys."""
    config: dict[str, Any] = {"bootstrap.servers": settings.bootstrap_servers}
    if settings.kafka_auth == "iam":
        config |= {**IAM_CLIENT_CONFIG, "oauth_cb": msk_iam_token_callback(settings.kafka_region)}
    return config
