"""Running the service on uvicorn, as `promptdag serve` does.

What the app cannot do for itself happens here, at the connection level: a request line and
headers must arrive within `header_timeout_s` of the connection opening (or of its first byte,
on a kept-alive connection), else the connection gets a problem+json 408 and is closed, so a
client trickling headers cannot hold a connection for ever (uvicorn has a keep-alive timeout,
none for headers; the body deadline is the app's, `promptdag.service.body`). SIGHUP re-reads the
API key file. The access log (`promptdag.access`, one JSON line per request) goes to stderr.

`workers > 1` runs uvicorn's own supervisor: the master binds the port once and spawns N worker
processes that share it, replaces a worker that dies, and on SIGTERM (or Ctrl-C) tells every
worker to drain (each finishes its in-flight requests within the graceful timeout, flushes its
traces and exits). The settings reach each worker inside its pickled config, over the pipe
`multiprocessing` spawns it with (never in argv or the environment); each worker builds its
app, and so its Drivers, once at startup. Metrics are shared through a private directory (see
`promptdag.service.metrics`); each worker writes the one trace database through its own writer
(see `promptdag.tracing.store`); every response names its worker in `X-Promptdag-Worker`. A
worker whose master is killed outright drains and exits by itself."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import uvicorn
from fastapi import FastAPI
from uvicorn.config import STARTUP_FAILURE
from uvicorn.protocols.http.auto import AutoHTTPProtocol
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from promptdag.errors import PromptdagError
from promptdag.service.app import ServiceState, create_app
from promptdag.service.audit import ACCESS_LOGGER, header_timeout_response
from promptdag.service.metrics import MULTIPROC_ENV
from promptdag.service.settings import ServiceSettings

__all__ = [
    "WORKER_HEADER",
    "WorkerConfig",
    "header_timeout_protocol",
    "install_sighup",
    "log_access_to",
    "run",
    "run_workers",
    "server_config",
]

log = logging.getLogger("uvicorn.error")  # uvicorn configures it in the master and each worker
WORKER_HEADER = "X-Promptdag-Worker"
# The master pings each worker every half second and replaces one that does not answer within
# this long. uvicorn's 5 s default kills workers still importing and building on a busy machine.
WORKER_HEALTHCHECK_S = 60


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
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_app_protocol(app.state.promptdag),
        timeout_graceful_shutdown=graceful_timeout_s,
        lifespan="on",
        **{"log_level": "warning", **uvicorn_options},
    )


def _app_protocol(state: ServiceState) -> type[asyncio.Protocol]:
    timeout_s = state.settings.header_timeout_s

    def late(client: str | None) -> bytes:
        return header_timeout_response(state, client, timeout_s)

    return header_timeout_protocol(timeout_s, late)


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
    workers: int = 1,
) -> None:
    """Serve until SIGTERM or Ctrl-C: drain in-flight requests for up to `graceful_timeout_s`,
    answer the rest 503, flush the traces, exit 0. `workers > 1`: see `run_workers`."""
    if workers > 1:
        run_workers(settings, host, port, graceful_timeout_s, access_log, workers)
        return
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


class _WorkerHeader:
    """The app, with `X-Promptdag-Worker: <pid>` on every response (which worker answered)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.header = (WORKER_HEADER.lower().encode(), str(os.getpid()).encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_worker(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self.header]
            await send(message)

        await self.app(scope, receive, send_with_worker)


class WorkerConfig(uvicorn.Config):
    """The uvicorn config every worker of `serve --workers N` gets (pickled, with the settings,
    over the pipe its process is spawned with). In the worker, `load` builds the app (and so
    its Drivers, once), its header deadline, the access log and SIGHUP."""

    def __init__(self, settings: ServiceSettings, access_log: bool, **options: Any) -> None:
        super().__init__("promptdag.service.app:create_app", **options)
        self.settings, self.promptdag_access_log = settings, access_log

    def load(self) -> None:
        try:
            app = create_app(self.settings)
        except PromptdagError as exc:  # the master's preflight passed: the project changed
            log.error("worker %d cannot start: %s", os.getpid(), exc)
            sys.exit(STARTUP_FAILURE)
        state: ServiceState = app.state.promptdag
        self.app, self.http = _WorkerHeader(app), _app_protocol(state)
        log_access_to(sys.stderr if self.promptdag_access_log else None)
        install_sighup(state)
        _drain_when_orphaned(os.getppid())
        super().load()


def _drain_when_orphaned(master: int, every_s: float = 1.0) -> None:
    """In a worker: once its master is gone (killed outright, so it could not stop its workers),
    SIGTERM itself, which drains it like a stop, so no worker goes on serving alone."""

    def watch() -> None:
        while os.getppid() == master:
            time.sleep(every_s)
        log.warning("worker %d: the master (%d) is gone; draining and exiting", os.getpid(), master)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="promptdag-master-watch", daemon=True).start()


class _Supervisor(Multiprocess):
    """uvicorn's supervisor, which also marks each gone worker dead for the shared metrics
    (its live gauges drop out of /metrics; its counters stay) and says so when one died."""

    def keep_subprocess_alive(self) -> None:
        before = list(self.processes)
        super().keep_subprocess_alive()
        self._retire([p for p in before if p not in self.processes], died=True)

    def handle_signals(self) -> None:  # SIGHUP replaces every worker, SIGTTOU removes one
        before = list(self.processes)
        super().handle_signals()
        self._retire([p for p in before if p not in self.processes], died=False)

    def join_all(self) -> None:
        super().join_all()
        self._retire(self.processes, died=False)

    def _retire(self, gone: list[Process], died: bool) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        for process in gone:
            if process.pid is None:
                continue
            mark_process_dead(process.pid, os.environ[MULTIPROC_ENV])
            if died:
                log.warning(
                    "worker %d died (exit code %s); a new worker replaces it",
                    process.pid,
                    process.exitcode,
                )


def run_workers(
    settings: ServiceSettings,
    host: str,
    port: int,
    graceful_timeout_s: int,
    access_log: bool,
    workers: int,
) -> None:
    """Serve with `workers` processes on one port until SIGTERM or Ctrl-C, then drain every
    worker (each within `graceful_timeout_s`) and exit 0; exit 3 if a worker cannot start."""
    metrics_dir = tempfile.mkdtemp(prefix="promptdag-metrics-")  # 0700, fresh, empty
    previous = os.environ.get(MULTIPROC_ENV)
    os.environ[MULTIPROC_ENV] = metrics_dir  # before any worker imports prometheus_client
    try:
        config = WorkerConfig(
            settings,
            access_log,
            host=host,
            port=port,
            workers=workers,
            timeout_graceful_shutdown=graceful_timeout_s,
            lifespan="on",
            log_level="warning",
            timeout_worker_healthcheck=WORKER_HEALTHCHECK_S,
        )
        supervisor = _Supervisor(config, sockets=[config.bind_socket()])
        supervisor.run()
    finally:
        if previous is None:
            os.environ.pop(MULTIPROC_ENV, None)
        else:
            os.environ[MULTIPROC_ENV] = previous
        shutil.rmtree(metrics_dir, ignore_errors=True)
    if any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes):
        raise SystemExit(STARTUP_FAILURE)
