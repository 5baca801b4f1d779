"""Running the service on uvicorn, as `promptdag serve` does.

What the app cannot do for itself happens here, at the connection level: a request line and
headers must arrive within `header_timeout_s` of the connection opening (or of its first byte,
on a kept-alive connection), else the connection gets a problem+json 408 and is closed, so a
client trickling headers cannot hold a connection for ever (uvicorn has a keep-alive timeout,
none for headers; the body deadline is the app's, `promptdag.service.body`). SIGHUP re-reads the
API key file. The access log (`promptdag.access`, one JSON line per request) goes to stderr."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from typing import IO, Any

import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.auto import AutoHTTPProtocol

from promptdag.service.app import ServiceState, create_app
from promptdag.service.audit import ACCESS_LOGGER, header_timeout_response
from promptdag.service.settings import ServiceSettings

__all__ = ["header_timeout_protocol", "install_sighup", "log_access_to", "run", "server_config"]


def header_timeout_protocol(
    timeout_s: float, on_timeout: Callable[[str | None], bytes]
) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol with a header deadline: `on_timeout(client)` gives the bytes to
    send before closing a connection whose request line and headers are late."""
    base: Any = AutoHTTPProtocol

    class HeaderDeadlineProtocol(base):  # type: ignore[misc]
        _header_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            cycle = self.cycle
            idle = cycle is None or cycle.response_complete
            if idle and self._header_timer is None:
                self._arm()  # the first byte of the next request on a kept-alive connection
            super().data_received(data)
            if self._header_timer is not None and self.cycle is not cycle:
                self._disarm()  # a new request's headers are complete: the app has it

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._header_timer = self.loop.call_later(timeout_s, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            if self.transport.is_closing():
                return
            if self.cycle is not None and not self.cycle.response_complete:
                return  # a request is being answered: the app's own deadlines apply
            self.transport.write(on_timeout(self.client[0] if self.client else None))
            self.transport.close()

    return HeaderDeadlineProtocol


def server_config(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 8000,
    graceful_timeout_s: int = 30,
    **uvicorn_options: Any,
) -> uvicorn.Config:
    """The uvicorn config of `app` (made by `create_app`), with the header deadline."""
    state: ServiceState = app.state.promptdag
    settings = state.settings

    def late(client: str | None) -> bytes:
        return header_timeout_response(state, client, settings.header_timeout_s)

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=header_timeout_protocol(settings.header_timeout_s, late),
        timeout_graceful_shutdown=graceful_timeout_s,
        lifespan="on",
        **{"log_level": "warning", **uvicorn_options},
    )


def install_sighup(state: ServiceState) -> Callable[[], None]:
    """SIGHUP re-reads the API key file (before the next request is checked); returns the
    function that puts the previous handler back."""

    def reload(signum: int, frame: object) -> None:
        if state.keys is not None:
            state.keys.request_reload()

    previous = signal.signal(signal.SIGHUP, reload)

    def restore() -> None:
        signal.signal(signal.SIGHUP, previous)

    return restore


def log_access_to(stream: IO[str] | None) -> None:
    """Send the access log (one JSON line per request) to `stream`; None turns it off."""
    logger = logging.getLogger(ACCESS_LOGGER)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    if stream is None:
        logger.setLevel(logging.CRITICAL + 1)
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def run(
    settings: ServiceSettings,
    host: str,
    port: int,
    graceful_timeout_s: int,
    access_log: bool = True,
) -> None:
    """Serve until SIGTERM or Ctrl-C: drain in-flight requests for up to `graceful_timeout_s`,
    answer the rest 503, flush the traces, exit 0."""
    app = create_app(settings)
    config = server_config(app, host, port, graceful_timeout_s)
    log_access_to(sys.stderr if access_log else None)
    restore_sighup = install_sighup(app.state.promptdag)
    # uvicorn re-raises SIGTERM after its graceful shutdown; a drained, flushed stop exits 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        restore_sighup()
