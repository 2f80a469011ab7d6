"""Create the declared Kafka topics idempotently: `python -m workloads.recommend.topics` (the topics Job).

The topics come as JSON (`--topics` / MODELPLANE_KAFKA_TOPICS_TOPICS): a list of `TopicSpec` objects (see
workloads.recommend.topic_settings). With confluent-kafka's AdminClient, the Job:

1. waits for the brokers (retried with backoff up to `--connect-timeout-s`: the Job may start before them);
2. creates missing topics with their partitions, replication factor, `retention.ms` and `min.insync.replicas`
   (with an `operation_timeout`, so the broker answers once the topic has propagated; a concurrent run's
   TOPIC_ALREADY_EXISTS counts as created);
3. leaves existing topics alone, except: fewer partitions than declared → `create_partitions`; more → an error
   (Kafka cannot remove partitions); `retention.ms` / `min.insync.replicas` drift → `incremental_alter_configs`
   (KIP-339: only the two keys are SET, any other topic config is kept);
4. reads everything back, and exits 0 when every topic matches, 1 with one line per topic and field that does
   not (a replication-factor change needs a partition reassignment, which it does not do), 2 on bad settings.

With `--kafka-auth iam` the client signs its MSK token when it starts (confluent-kafka calls `oauth_cb` on
instantiation and fails after 10 s without a token: exit 1, the Job's next pod retries); the Job ends well
within the token's 15 minutes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from workloads.common.logs import log_event
from workloads.common.settings import SettingsError
from workloads.recommend.kafka import client_config
from workloads.recommend.topic_settings import MIN_ISR, RETENTION_MS, TopicSpec, TopicsSettings

CHANGE_WAIT = 3
"""A create's future waits this many --request-timeout-s: librdkafka resolves it by its request_timeout (twice the
setting, see `_timeouts`), so the wait is only a backstop against a client that never answers."""


@dataclass(frozen=True)
class TopicState:
    """What the broker has for one topic."""

    partitions: int
    """Partition count."""
    replication_factor: int
    """Most replicas of any partition."""
    configs: dict[str, str]
    """The topic's retention.ms and min.insync.replicas, where the broker reports them."""


def wait_for_brokers(admin: AdminClient, settings: TopicsSettings) -> None:
    """Return once the cluster answers a metadata request; raises the last KafkaException after the deadline."""
    attempt = retry(retry=retry_if_exception_type(KafkaException), stop=stop_after_delay(settings.connect_timeout_s),
                    wait=wait_exponential(multiplier=0.5, max=10), reraise=True)
    attempt(lambda: admin.list_topics(timeout=settings.request_timeout_s))()


def describe(admin: AdminClient, names: Sequence[str], timeout_s: float) -> dict[str, TopicState]:
    """The broker's state of each of `names` that exists."""
    metadata = admin.list_topics(timeout=timeout_s).topics
    found = [name for name in names if name in metadata and metadata[name].error is None]
    resources = [ConfigResource(ResourceType.TOPIC, name) for name in found]
    configs = admin.describe_configs(resources, request_timeout=timeout_s) if resources else {}
    states = {}
    for resource, name in zip(resources, found, strict=True):
        entries = configs[resource].result(timeout_s)
        partitions = metadata[name].partitions.values()
        states[name] = TopicState(
            partitions=len(partitions), replication_factor=max((len(p.replicas) for p in partitions), default=0),
            configs={key: entries[key].value for key in (RETENTION_MS, MIN_ISR) if key in entries})
    return states


@dataclass(frozen=True)
class Outcome:
    """How one admin request of a topic ended: `error` is None on success."""

    error: str | None
    """The broker's (or the client's) error text; None when the request succeeded."""
    code: int | None = None
    """The KafkaError code of the error, when there is one (`KafkaError.TOPIC_ALREADY_EXISTS`, ...)."""


def _outcome(future: Any, timeout_s: float) -> Outcome:
    """How an admin future ended; waits at most `timeout_s` (a future still pending then is an error, not a raise)."""
    try:
        future.result(timeout_s)
    except KafkaException as exc:
        error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        return Outcome(error.str() if error else str(exc), error.code() if error else None)
    except FutureTimeoutError:
        return Outcome(f"no answer within {timeout_s:g}s; rerun the Job, or raise --request-timeout-s")
    return Outcome(None)


def _timeouts(timeout_s: float) -> dict[str, float]:
    """Admin options of a change: the broker waits up to `timeout_s` for it to propagate before answering
    (`operation_timeout`; 0 answers at once, so the read-back could miss it), and the request gets that long again
    on top for the lookup, transmission and answer (`request_timeout`)."""
    return {"operation_timeout": timeout_s, "request_timeout": 2 * timeout_s}


def reconcile(admin: AdminClient, specs: Sequence[TopicSpec], timeout_s: float) -> list[str]:
    """Create missing topics, add partitions, align drifted configs; returns the requests the broker refused."""
    states = describe(admin, [spec.name for spec in specs], timeout_s)
    existing = [spec for spec in specs if spec.name in states]
    return (_create(admin, [spec for spec in specs if spec.name not in states], timeout_s)
            + _grow(admin, existing, states, timeout_s) + _align(admin, existing, states, timeout_s))


def _create(admin: AdminClient, missing: Sequence[TopicSpec], timeout_s: float) -> list[str]:
    if not missing:
        return []
    errors = []
    futures = admin.create_topics([NewTopic(s.name, s.partitions, s.replication_factor, config=s.configs())
                                   for s in missing], **_timeouts(timeout_s))
    for spec in missing:
        outcome = _outcome(futures[spec.name], CHANGE_WAIT * timeout_s)
        # Another run may have created it since: the read-back compares it like any existing topic.
        already = outcome.code == KafkaError.TOPIC_ALREADY_EXISTS
        if outcome.error is None or already:
            log_event("topic_created", topic=spec.name, partitions=spec.partitions,
                      replication_factor=spec.replication_factor, already=already)
        else:
            errors.append(f"topic {spec.name!r}: could not be created: {outcome.error}")
    return errors


def _grow(admin: AdminClient, existing: Sequence[TopicSpec], states: Mapping[str, TopicState],
          timeout_s: float) -> list[str]:
    grow = [spec for spec in existing if states[spec.name].partitions < spec.partitions]
    if not grow:
        return []
    errors = []
    futures = admin.create_partitions([NewPartitions(s.name, s.partitions) for s in grow], **_timeouts(timeout_s))
    for spec in grow:
        outcome = _outcome(futures[spec.name], CHANGE_WAIT * timeout_s)
        if outcome.error is None:
            log_event("partitions_added", topic=spec.name, before=states[spec.name].partitions, after=spec.partitions)
        else:
            errors.append(f"topic {spec.name!r}: partitions: could not add partitions: {outcome.error}")
    return errors


def _align(admin: AdminClient, existing: Sequence[TopicSpec], states: Mapping[str, TopicState],
           timeout_s: float) -> list[str]:
    drifted = {spec.name: {k: v for k, v in spec.configs().items() if states[spec.name].configs.get(k) != v}
               for spec in existing}
    resources = {name: ConfigResource(ResourceType.TOPIC, name, incremental_configs=[
        ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in sorted(changes.items())])
        for name, changes in drifted.items() if changes}
    if not resources:
        return []
    errors = []
    futures = admin.incremental_alter_configs(list(resources.values()), request_timeout=timeout_s)
    for name, resource in resources.items():
        outcome = _outcome(futures[resource], timeout_s)
        if outcome.error is None:
            log_event("configs_altered", topic=name, configs=drifted[name])
        else:
            errors.append(f"topic {name!r}: configs {sorted(drifted[name])}: could not be altered: {outcome.error}")
    return errors


def mismatches(specs: Sequence[TopicSpec], states: Mapping[str, TopicState]) -> list[str]:
    """One line per topic and field where the broker differs from the spec, with what to do about it."""
    out = []
    for spec in specs:
        state = states.get(spec.name)
        where = f"topic {spec.name!r}"
        if state is None:
            out.append(f"{where}: does not exist on the broker")
            continue
        if state.partitions > spec.partitions:
            out.append(f"{where}: partitions: the broker has {state.partitions}, the spec asks for {spec.partitions}; "
                       f"Kafka cannot remove partitions: declare partitions >= {state.partitions}, or delete and "
                       "recreate the topic")
        elif state.partitions < spec.partitions:
            out.append(f"{where}: partitions: the broker has {state.partitions}, the spec asks for {spec.partitions}")
        if state.replication_factor != spec.replication_factor:
            out.append(f"{where}: replicationFactor: the broker has {state.replication_factor}, the spec asks for "
                       f"{spec.replication_factor}; changing it needs a partition reassignment "
                       "(kafka-reassign-partitions), which this Job does not do")
        wanted = spec.configs()
        for key, field in ((RETENTION_MS, "retentionHours"), (MIN_ISR, "minInsyncReplicas")):
            if state.configs.get(key) != wanted[key]:
                out.append(f"{where}: {field}: the broker has {key}={state.configs.get(key)}, the spec asks for "
                           f"{key}={wanted[key]}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Reconcile the declared topics; exit 0 when all match, 1 naming each mismatch, 2 on bad settings."""
    try:
        settings = TopicsSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    timeout = settings.request_timeout_s
    try:
        # With iam the client signs its token here and raises when it cannot (no AWS credentials yet, e.g. a pod
        # started before its Pod Identity association): the Job's next pod retries.
        admin = AdminClient(client_config(settings))
    except KafkaException as exc:
        print(f"could not start the Kafka admin client (--kafka-auth {settings.kafka_auth}): {exc}", file=sys.stderr)
        return 1
    try:
        wait_for_brokers(admin, settings)
    except KafkaException as exc:
        problems = [f"the brokers at {settings.bootstrap_servers} did not answer within {settings.connect_timeout_s}s "
                    f"(--connect-timeout-s): {exc}"]
    else:
        try:
            problems = reconcile(admin, settings.topics, timeout)
            problems += mismatches(settings.topics, describe(admin, [spec.name for spec in settings.topics], timeout))
        except KafkaException as exc:
            problems = [f"an admin request failed: {exc}"]
        except FutureTimeoutError:
            problems = [f"the brokers did not answer a describe request within {timeout}s (--request-timeout-s); "
                        "rerun the Job, or raise the timeout"]
    for problem in problems:
        log_event("topic_problem", problem=problem)
    if problems:
        print("topics do not match their spec:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    log_event("topics_ready", topics=[spec.name for spec in settings.topics])
    return 0


if __name__ == "__main__":
    sys.exit(main())
