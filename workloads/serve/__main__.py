"""`python -m workloads.serve`: parse settings, build the app, serve until SIGTERM, drain, exit 0."""

from __future__ import annotations

import signal
import sys
from collections.abc import Sequence
from types import FrameType

import uvicorn

from workloads.common.logs import log_event
from workloads.common.settings import HTTP_KEEP_ALIVE_S, SettingsError
from workloads.serve.app import begin_drain, create_app
from workloads.serve.settings import ServeSettings
from workloads.serve.state import ServeState


class DrainingServer(uvicorn.Server):
    """Uvicorn that fails readiness the moment a shutdown signal arrives, before it stops accepting."""

    def __init__(self, config: uvicorn.Config, state: ServeState) -> None:
        super().__init__(config)
        self.serve_state = state

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Mark the server draining, then let uvicorn close listeners and wait for in-flight requests."""
        begin_drain(self.serve_state)
        super().handle_exit(sig, frame)


def _ignore(sig: int, frame: FrameType | None) -> None:
    """A no-op handler (see `main`)."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the server; returns the process exit code (2 for invalid settings)."""
    try:
        settings = ServeSettings.parse(argv)
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    if settings.torch_threads:
        import torch  # only here: the TF-enabled image has no torch and never sets this

        torch.set_num_threads(settings.torch_threads)
    app = create_app(settings)
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level=settings.log_level, access_log=False,
        timeout_graceful_shutdown=settings.drain_timeout_s, lifespan="on", timeout_keep_alive=HTTP_KEEP_ALIVE_S,
    )
    server = DrainingServer(config, app.state.serve)
    # Uvicorn re-raises the signal it caught once it has shut down, restoring the handler that was
    # installed before it started; with the default SIGTERM action that kills the process (exit 143)
    # after a clean drain. A no-op handler makes a drained SIGTERM exit 0, as Kubernetes expects.
    signal.signal(signal.SIGTERM, _ignore)
    log_event("starting", host=settings.host, port=settings.port, model_uri=settings.model_uri,
              model_name=settings.served_name)
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
