"""`promptdag serve` as a real subprocess on 127.0.0.1, for tests that need a real process:
signals, restarts, a killed server, the real SDK over real sockets.

    with live_server(tmp_path, config={"llm_cache": "off"}) as server:
        r = server.client().post("/v1/pipelines/summarize/runs", json={"text": TEXT})
        server.terminate()  # SIGTERM: drain, flush traces, exit

Each server gets a free port, its own PROMPTDAG_DATA_DIR (so its own trace database) and the
API key KEY. Startup waits for /readyz, bounded in time; a server that dies or never gets
ready fails the test with its stderr. On exit the process is always gone (SIGKILL if needed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

__all__ = ["AUTH", "KEY", "REPO", "LiveServer", "ServerFailed", "live_server", "promptdag_exe"]

REPO = Path(__file__).resolve().parents[3]
KEY = "live-service-key-0123456789"
AUTH = {"Authorization": f"Bearer {KEY}"}
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
_START_ATTEMPTS = 3  # a free port can be taken between probing it and the server binding it
_INHERITED_PREFIXES = ("OPENAI_", "PROMPTDAG_")
_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


class ServerFailed(AssertionError):
    """The server did not start, or did not stop when told to; carries its stderr."""


def promptdag_exe() -> str:
    """The `promptdag` console script of this interpreter's environment."""
    exe = Path(sys.executable).with_name("promptdag")
    if not exe.exists():
        raise ServerFailed(f"{exe} is missing: install the project (make setup).")
    return str(exe)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_env(data_dir: Path, env: Mapping[str, str]) -> dict[str, str]:
    """This environment without OpenAI/promptdag settings or proxies, plus the server's own."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_INHERITED_PREFIXES) and k.lower() not in _PROXY_VARS
    }
    return {
        **base,
        "PROMPTDAG_DATA_DIR": str(data_dir),
        "PROMPTDAG_API_KEYS": KEY,
        "NO_PROXY": "127.0.0.1,localhost",
        **env,
    }


@dataclass
class LiveServer:
    """A running `promptdag serve`; see `live_server`."""

    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log_path: Path
    _clients: list[httpx.Client] = field(default_factory=list, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db_path(self) -> Path:
        """The trace database this server writes."""
        return self.data_dir / "traces.sqlite"

    def log(self) -> str:
        """Everything the server wrote to stdout and stderr so far."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def client(self, *, auth: bool = True, timeout_s: float = 30.0) -> httpx.Client:
        """A client for this server (with the API key unless `auth=False`), closed with it.
        Not shared between threads: make one per thread."""
        client = httpx.Client(
            base_url=self.base_url,
            headers=AUTH if auth else {},
            timeout=timeout_s,
            trust_env=False,
        )
        self._clients.append(client)
        return client

    def alive(self) -> bool:
        return self.process.poll() is None

    def terminate(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (a graceful stop) and wait for the exit; the return code (-15: the signal)."""
        return self._stop(signal.SIGTERM, timeout_s)

    def kill(self, timeout_s: float = 10.0) -> int:
        """SIGKILL: no drain, no flush, no atexit."""
        return self._stop(signal.SIGKILL, timeout_s)

    def _stop(self, sig: signal.Signals, timeout_s: float) -> int:
        if self.alive():
            self.process.send_signal(sig)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
            raise ServerFailed(
                f"the server did not exit within {timeout_s:g} s of {sig.name}; killed it.\n"
                f"--- server log ---\n{self.log()}"
            ) from None

    def close(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        if self.alive():
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def _wait_ready(server: LiveServer, timeout_s: float) -> str | None:
    """None once /readyz answers 200; else why not (the process died, or the time ran out)."""
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=server.base_url, timeout=1.0, trust_env=False) as probe:
        for _ in range(int(timeout_s / 0.05) + 1):
            if not server.alive():
                return (
                    f"the server exited with status {server.process.returncode} before it was ready"
                )
            with contextlib.suppress(httpx.TransportError):
                if probe.get("/readyz").status_code == 200:
                    return None
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    return f"/readyz did not answer 200 within {timeout_s:g} s"


def _spawn(args: list[str], env: dict[str, str], log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
    )


@contextlib.contextmanager
def live_server(
    workdir: Path,
    *,
    config: Mapping[str, Any] | None = None,
    flags: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    data_dir: Path | None = None,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> Iterator[LiveServer]:
    """Run `promptdag serve --config K=V... FLAGS` until the block ends.

    `workdir` holds the log (and the data dir unless `data_dir` is given: pass the same one to
    two servers to restart over one trace database). `env` is added to the server's
    environment (OPENAI_API_KEY, OPENAI_BASE_URL). The process is killed on exit if the block
    left it running; stop it yourself with `terminate()` or `kill()` to test those."""
    data = data_dir or workdir / "data"
    pairs = [a for k, v in (config or {}).items() for a in ("--config", f"{k}={v}")]
    failures: list[str] = []
    for attempt in range(_START_ATTEMPTS):
        port = _free_port()
        log_path = workdir / f"serve-{port}-{attempt}.log"
        args = [promptdag_exe(), "serve", "--port", str(port), *pairs, *flags]
        with log_path.open("wb") as log:
            process = _spawn(args, _child_env(data, env or {}), log)
        server = LiveServer(process, port, data, log_path)
        try:
            problem = _wait_ready(server, ready_timeout_s)
            if problem is None:
                yield server
                return
            failures.append(f"{problem}: {' '.join(args[1:])}\n--- server log ---\n{server.log()}")
            if "address already in use" not in server.log().lower():
                break
        finally:
            server.close()
    raise ServerFailed("\n\n".join(failures))
