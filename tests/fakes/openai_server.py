"""A scriptable OpenAI-compatible chat-completions server on 127.0.0.1, stdlib only.

The real SDK talks to it over real HTTP, so retries, timeouts and error mapping run their
production code paths.

    with OpenAIServer() as server:
        server.enqueue(status=429, headers={"retry-after-ms": "10"})
        server.enqueue(text="hello")
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test")
        ...
        assert len(server.history) == 2

Scripted replies are served first in, first out; with the queue empty the server answers 200,
echoing the start of the last user message. `history` records every request (the Authorization
value is never stored), `max_in_flight` the most requests it ever held at once.

Faulty models and servers, as the SDK sees them:

    server.enqueue(text="cut", finish_reason="length")       # a truncated answer
    server.enqueue(finish_reason="content_filter")           # withheld: content null
    server.enqueue(refusal="I can't help with that.")        # a refusal: content null
    server.enqueue(body="{not json")                         # a 200 that is not JSON
    server.enqueue(body=HTML_PAGE, content_type="text/html") # a proxy's error page
    server.enqueue(body={"object": "list", "data": []})      # JSON, but no chat completion
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["HTML_PAGE", "MAX_DELAY_S", "OpenAIServer", "Reply"]

MAX_DELAY_S = 30.0
"""No reply waits longer than this, so a forgotten delay cannot hang a test run."""

HTML_PAGE = (
    "<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream server is unavailable.</p></body></html>"
)
"""What a reverse proxy or a login wall answers instead of the model."""

_ERRORS = {
    400: ("invalid_request_error", "invalid_value", "Invalid value for 'max_tokens'."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_model", "You may not use this model."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist."),
    408: ("timeout", "timeout", "Request timed out."),
    409: ("conflict", "conflict", "Conflict."),
    422: ("invalid_request_error", "unprocessable", "Unprocessable request."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", "internal_error", "The server had an error."),
    503: ("server_error", "overloaded", "The engine is currently overloaded."),
}


@dataclass(frozen=True)
class Reply:
    """One scripted answer: a status, a text (200) or an error body, extra headers, a delay;
    `when` reserves it for a request whose last user message contains that string.
    `finish_reason` and `refusal` shape a 200 completion (a refusal, or a content_filter
    finish without text, has `content: null`); `content_type` replaces application/json."""

    status: int = 200
    text: str | None = None
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | str | None = None
    when: str | None = None
    finish_reason: str = "stop"
    refusal: str | None = None
    content_type: str = "application/json"


class OpenAIServer:
    """`POST /v1/chat/completions` on an OS-assigned port, scripted with `enqueue()`."""

    def __init__(self, *, api_key: str | None = None, default_delay_s: float = 0.0):
        self.api_key = api_key
        """When set, a request without `Authorization: Bearer <api_key>` gets a 401."""
        self.default_delay_s = default_delay_s
        """Latency of every unscripted reply (for benchmarks)."""
        self.history: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.02,), name="fake-openai", daemon=True
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def enqueue(
        self,
        status: int = 200,
        text: str | None = None,
        delay_s: float = 0.0,
        headers: dict[str, str] | None = None,
        body: dict[str, Any] | str | None = None,
        *,
        times: int = 1,
        when: str | None = None,
        finish_reason: str = "stop",
        refusal: str | None = None,
        content_type: str = "application/json",
    ) -> None:
        """Script the next `times` requests (those whose last user message contains `when`,
        if given: the way to aim at one chunk of a concurrent fan-out). `body` replaces the
        generated JSON body: a dict is sent as JSON, a str as it is."""
        reply = Reply(
            status,
            text,
            delay_s,
            dict(headers or {}),
            body,
            when,
            finish_reason,
            refusal,
            content_type,
        )
        with self._lock:
            self._queue.extend([reply] * times)

    def reset(self) -> None:
        """Forget scripted replies, history and the in-flight maximum."""
        with self._lock:
            self._queue.clear()
            self.history.clear()
            self.max_in_flight = self.in_flight

    def stop(self) -> None:
        """Stop serving: delayed requests end at once without a reply, connections close."""
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            for conn in self._connections:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=5)

    def __enter__(self) -> OpenAIServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _next_reply(self, message: str) -> Reply:
        """A reply aimed at this message, else the oldest unaimed one, else the default."""
        aimed = [r for r in self._queue if r.when is not None and r.when in message]
        unaimed = [r for r in self._queue if r.when is None]
        for reply in aimed[:1] or unaimed[:1]:
            self._queue.remove(reply)
            return reply
        return Reply(delay_s=self.default_delay_s)

    def _answer(self, path: str, headers: dict[str, str], payload: Any) -> tuple[Reply, bytes]:
        """Record the request, pick its reply and render the body; runs on a handler thread."""
        auth = headers.pop("authorization", None)
        authorized = self.api_key is None or auth == f"Bearer {self.api_key}"
        with self._lock:
            if not path.endswith("/chat/completions"):
                reply = Reply(status=404, body=_error(404, f"No route for POST {path}."))
            elif not authorized:
                reply = Reply(status=401)
            else:
                reply = self._next_reply(_last_user_message(payload))
            self.history.append(
                {
                    "path": path,
                    "headers": headers,
                    "authorization": auth is not None,
                    "json": payload,
                    "time": time.monotonic(),
                    "status": reply.status,
                }
            )
        if reply.body is not None:
            raw = reply.body if isinstance(reply.body, str) else json.dumps(reply.body)
        elif reply.status == 200:
            raw = json.dumps(_completion(payload, reply))
        else:
            raw = json.dumps(_error(reply.status))
        return reply, raw.encode()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # a load benchmark opens many connections at once

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (timeouts, shutdown) is routine; anything else is printed."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _words(text: str) -> int:
    return len(text.split())


def _messages(payload: Any) -> list[dict[str, Any]]:
    messages = payload.get("messages") if isinstance(payload, dict) else None
    return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []


def _last_user_message(payload: Any) -> str:
    user = [str(m.get("content", "")) for m in _messages(payload) if m.get("role") == "user"]
    return user[-1] if user else ""


def _completion(payload: Any, scripted: Reply) -> dict[str, Any]:
    """A chat.completion object: the scripted text, or an echo of the last user message (40
    chars); no text at all for a refusal or a content_filter finish without a scripted text."""
    messages = _messages(payload)
    text = scripted.text
    withheld = scripted.refusal is not None or (
        scripted.finish_reason == "content_filter" and text is None
    )
    reply = text if text is not None else f"echo: {_last_user_message(payload)[:40]}"
    if withheld and text is None:
        reply = ""
    prompt_tokens = sum(_words(str(m.get("content", ""))) for m in messages)
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": payload.get("model", "fake") if isinstance(payload, dict) else "fake",
        "choices": [
            {
                "index": 0,
                "finish_reason": scripted.finish_reason,
                "message": {
                    "role": "assistant",
                    "content": None if withheld and text is None else reply,
                    "refusal": scripted.refusal,
                },
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": _words(reply),
            "total_tokens": prompt_tokens + _words(reply),
        },
    }


def _error(status: int, message: str | None = None) -> dict[str, Any]:
    kind, code, default = _ERRORS.get(status, ("server_error", str(status), "Error."))
    return {"error": {"message": message or default, "type": kind, "code": code, "param": None}}


def _make_handler(server: OpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        disable_nagle_algorithm = True  # headers and body go out at once, no delayed-ACK stall
        protocol_version = "HTTP/1.1"
        timeout = MAX_DELAY_S

        def setup(self) -> None:
            super().setup()
            with server._lock:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._lock:
                server._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            try:
                payload = json.loads(raw or b"null")
            except ValueError:
                payload = raw.decode(errors="replace")
            headers = {k.lower(): v for k, v in self.headers.items()}
            with server._lock:
                server.in_flight += 1
                server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                reply, body = server._answer(self.path, headers, payload)
                server._stopping.wait(min(max(reply.delay_s, 0.0), MAX_DELAY_S))
            finally:
                with server._lock:  # before replying: the client cannot start another call yet
                    server.in_flight -= 1
            if server._stopping.is_set():  # stopped mid-delay: hang up, like a server going down
                self.close_connection = True
                return
            try:
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type)
                self.send_header("content-length", str(len(body)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client gave up (timeout) or the server is stopping
                self.close_connection = True

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read `history`, not stderr."""

    return Handler
