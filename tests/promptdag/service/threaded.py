"""The service on real sockets, in a thread of the test process: uvicorn with the same protocol
and config `promptdag serve` uses (`promptdag.service.server.server_config`), for tests that
need real connections (slow clients, header and body timeouts, a shutdown cutting requests)
without the cost of a subprocess.

    with threaded_server(settings) as server:
        raw = server.connect()                      # a socket, for slow or broken clients
        r = server.client(KEY).post(path, json=...)  # httpx
        server.stop()                               # the graceful shutdown, as on SIGTERM

Startup and shutdown are bounded in time; the thread is always joined."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import uvicorn

from promptdag.service.app import ServiceState, create_app
from promptdag.service.server import server_config
from promptdag.service.settings import ServiceSettings

__all__ = ["ThreadedServer", "read_response", "threaded_server"]

START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


@dataclass
class ThreadedServer:
    server: uvicorn.Server
    thread: threading.Thread
    port: int
    state: ServiceState
    _closers: list[object] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None, timeout_s: float = 30.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        client = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout_s, trust_env=False
        )
        self._closers.append(client)
        return client

    def connect(self, timeout_s: float = 30.0) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s)
        self._closers.append(sock)
        return sock

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """A graceful shutdown (what SIGTERM starts); waits for the server thread to end."""
        self.server.should_exit = True
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the server thread did not stop"

    def close(self) -> None:
        for item in self._closers:
            with contextlib.suppress(OSError):
                item.close()  # type: ignore[attr-defined]
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(STOP_TIMEOUT_S)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one HTTP/1.1 response with a
    Content-Length, read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"the connection closed after {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body


@contextlib.contextmanager
def threaded_server(
    settings: ServiceSettings, graceful_timeout_s: int = 5
) -> Iterator[ThreadedServer]:
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = server_config(app, "127.0.0.1", port, graceful_timeout_s)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="test-service", daemon=True
    )
    thread.start()
    running = ThreadedServer(server, thread, port, app.state.promptdag)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started:
            assert thread.is_alive(), "the server thread died during startup"
            assert time.monotonic() < deadline, f"not started within {START_TIMEOUT_S:g} s"
            time.sleep(0.02)
        yield running
    finally:
        running.close()
        sock.close()
