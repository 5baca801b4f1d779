"""`promptdag ui`: the traces page on this machine (registered by `promptdag.replay_cli`)."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from promptdag.cli_common import err, user_errors

__all__ = ["UI_EPILOG", "ui_command"]

UI_EPILOG = (
    "Examples:\n\n"
    "  promptdag ui\n\n"
    "  promptdag ui --port 8100 --db traces.sqlite\n\n"
    "  PROMPTDAG_API_KEYS=secret promptdag ui --host 0.0.0.0\n\n"
    "The service also mounts the page at /ui, behind its API keys."
)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def ui_command(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    db: Annotated[
        Path | None,
        typer.Option("--db", help="The trace database (default: <data dir>/traces.sqlite)."),
    ] = None,
    replay: Annotated[
        bool, typer.Option(help="Offer the replay button (it runs git worktrees here).")
    ] = True,
) -> None:
    """A web page over the traces: runs, one run's DAG and LLM calls, variants compared, side by
    side answers, cost per day, replay diffs and feedback. Server-rendered, works offline."""
    import uvicorn

    from promptdag.config import data_dir
    from promptdag.project import find_project
    from promptdag.service.keys import KeyRing
    from promptdag.service.settings import env_api_keys
    from promptdag.ui.app import UIConfig, create_ui, project_graphs

    with user_errors():
        root = find_project()
        traces = db if db is not None else data_dir(root) / "traces.sqlite"
        keys = env_api_keys()
        ring = KeyRing(keys, None).load() if keys else None
        if ring is None and not _loopback(host):
            err(
                f"error: --host {host} is not this machine only: set PROMPTDAG_API_KEYS so the "
                "page asks for a key, or listen on 127.0.0.1."
            )
            raise typer.Exit(2)
        config = UIConfig(
            traces_db=traces.resolve(),
            project_root=root,
            graphs=project_graphs(root),
            keys=None if ring is None else (lambda: ring),
            replay=replay,
            hosts=None if ring is not None else (host, "127.0.0.1", "localhost", "[::1]", "::1"),
        )
    err(
        f"traces page on http://{host}:{port}/ over {traces}"
        + (" (API key needed)" if ring else "")
    )
    uvicorn.run(create_ui(config), host=host, port=port, log_level="warning")
