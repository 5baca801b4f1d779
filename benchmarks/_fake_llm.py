"""A fast OpenAI-compatible fake LLM for the service benchmark, in its own process on 127.0.0.1:
every `POST /v1/chat/completions` is answered after a fixed latency (`await asyncio.sleep`) with
a small, valid `chat.completion` (a fixed reply ending with a checksum of the prompt) whose usage
counts are honest estimates (4 characters a token).

    python -m benchmarks._fake_llm --port 0 --latency 0.2   # prints `listening on 127.0.0.1:PORT`

The stdlib server in tests/fakes spends a thread per request and tops out near 400 requests/s;
this one is one asyncio loop (Starlette on uvicorn), so a sleeping call costs no thread and the
fake takes as little as possible of the CPU it shares with the service it feeds. With `--lean`
(`fake_llm(..., lean=True)`) it is a bare ASGI function on uvloop instead (no routing, no
request objects): the same answers for about a third of the CPU, for benchmarks whose bound is
the CPU that the fake shares with what it feeds. `fake_llm()` starts it as a subprocess, waits until it answers, and kills it on exit; with `--parent PID` it
also exits by itself once that process is gone, so a benchmark killed outright leaves no fake.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FakeLLM", "fake_llm"]

START_TIMEOUT_S = 20.0
_REPLY = (
    "The document describes a fleet of delivery vans, the routes they drive and what each route "
    "costs; it argues that consolidating the two depots would cut mileage by about a fifth."
)


@dataclass
class FakeLLM:
    """A running fake: its process (for /proc readings) and its OpenAI base URL."""

    process: subprocess.Popen[str]
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def cpu_seconds(self) -> float:
        """User + system CPU seconds the fake has used so far (Linux /proc)."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def fake_llm(latency_s: float, log_path: Path, *, lean: bool = False) -> Iterator[FakeLLM]:
    """Run the fake in a subprocess until the block ends; it binds a free port and prints it."""
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "benchmarks._fake_llm", "--port", "0"]
    argv += ["--latency", str(latency_s), "--parent", str(os.getpid())]
    argv += ["--lean"] if lean else []
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            argv, cwd=root, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True
        )
    try:
        port = _read_port(proc, log_path)
        yield FakeLLM(proc, port)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def _read_port(proc: subprocess.Popen[str], log_path: Path) -> int:
    """The port from the child's first line, then a bounded wait until it accepts a connection."""
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the child prints it before serving, or exits
    if not line.startswith("listening on 127.0.0.1:"):
        proc.wait(timeout=10)
        raise RuntimeError(
            f"the fake LLM did not start (status {proc.returncode}):\n{log_path.read_text()[-2000:]}"
        )
    port = int(line.rsplit(":", 1)[1])
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return port
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(f"the fake LLM on port {port} did not accept connections in time")


def _completion(payload: dict[str, Any]) -> dict[str, Any]:
    contents = [str(m.get("content", "")) for m in payload.get("messages") or ()]
    chars = sum(len(c) for c in contents)
    # The reply ends with a checksum of the prompt: a different document gets different chunk
    # answers, so its final prompt differs too (a response cache misses it, as it would).
    reply = f"{_REPLY} [{zlib.crc32(''.join(contents).encode()):08x}]"
    prompt_tokens, completion_tokens = max(1, chars // 4), len(reply) // 4
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": str(payload.get("model") or "fake"),
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": reply},
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _app(latency_s: float) -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    async def completions(request: Request) -> Response:
        try:
            payload = json.loads(await request.body())
        except ValueError:
            return JSONResponse({"error": {"message": "body is not JSON"}}, status_code=400)
        await asyncio.sleep(latency_s)
        return JSONResponse(_completion(payload if isinstance(payload, dict) else {}))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/v1/chat/completions", completions, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def _lean_app(latency_s: float) -> Any:
    """The same endpoints as `_app`, as one bare ASGI function."""
    ok_headers = [(b"content-type", b"application/json")]

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status, answer = 404, {"error": {"message": "not found"}}
        if scope["method"] == "POST" and scope["path"] == "/v1/chat/completions":
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if payload is None:
                status, answer = 400, {"error": {"message": "body is not JSON"}}
            else:
                await asyncio.sleep(latency_s)
                status = 200
                answer = _completion(payload if isinstance(payload, dict) else {})
        elif scope["method"] == "GET" and scope["path"] == "/health":
            status, answer = 200, {"status": "ok"}
        data = json.dumps(answer).encode()
        headers = [*ok_headers, (b"content-length", str(len(data)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    return app


async def _until_orphaned(server: Any, parent: int) -> None:
    """Stop the server once the process that started it is gone (killed without cleaning up)."""
    while os.getppid() == parent and not server.should_exit:
        await asyncio.sleep(0.5)
    server.should_exit = True


async def _run(server: Any, sock: socket.socket, parent: int | None) -> None:
    watchdog = None if parent is None else asyncio.create_task(_until_orphaned(server, parent))
    await server.serve(sockets=[sock])
    if watchdog is not None:
        watchdog.cancel()


def _serve(port: int, latency_s: float, parent: int | None, lean: bool = False) -> None:
    import uvicorn

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
    # without it every response waits ~40 ms for a delayed ACK (headers and body are two writes).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    app = _lean_app(latency_s) if lean else _app(latency_s)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", backlog=4096
    )
    if lean:
        import uvloop

        uvloop.run(_run(uvicorn.Server(config), sock, parent))
    else:
        asyncio.run(_run(uvicorn.Server(config), sock, parent))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m benchmarks._fake_llm", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per call")
    parser.add_argument("--parent", type=int, default=None, help="exit when this PID is gone")
    parser.add_argument("--lean", action="store_true", help="a bare ASGI function on uvloop")
    args = parser.parse_args()
    _serve(args.port, args.latency, args.parent, args.lean)
