"""`python -m workloads.gateway`: parse settings, build the app, serve until SIGTERM, drain, exit 0."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from workloads.common.logs import log_event
from workloads.common.settings import HTTP_KEEP_ALIVE_S, SettingsError
from workloads.gateway.app import create_app
from workloads.gateway.settings import GatewaySettings


def _ignore(sig: int, frame: FrameType | None) -> None:
    """A no-op handler (see `main`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the gateway; returns the process exit code (2 for invalid settings)."""
    try:
        settings = GatewaySettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    config = uvicorn.Config(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
        timeout_graceful_shutdown=settings.drain_timeout_s, lifespan="on", timeout_keep_alive=HTTP_KEEP_ALIVE_S,
    )
    # Uvicorn re-raises the signal it caught once it has drained, restoring the handler installed before it started;
    # with the default SIGTERM action that exits 143 after a clean drain. A no-op handler makes it exit 0.
    signal.signal(signal.SIGTERM, _ignore)
    log_event("starting", host=settings.host, port=settings.port, upstream=settings.upstream)
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
