"""`promptdag traces`: the request and LLM-call traces that `promptdag serve` records, read
from the trace store (`<data dir>/traces.sqlite`, or `--db`) without disturbing a running service.
Thin: the queries live in promptdag.tracing.query; errors are one line and an exit code."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptdag.cli_common import user_errors
from promptdag.llm.cache import CACHE_FILE

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["traces_app"]

traces_app = typer.Typer(
    help="Read the traces of served requests: list, show, stats, export, prune, erase.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
DbOpt = Annotated[
    Path | None,
    typer.Option("--db", help="The trace database (default: <data dir>/traces.sqlite)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
SinceOpt = Annotated[
    str | None, typer.Option("--since", help="Only requests this recent: 30m, 1h, 2d, 1w.")
]
_SHOW_CALL_COLUMNS = [
    *("call_index", "step", "chunk_index", "prompt_version", "model", "input_tokens"),
    *("output_tokens", "cost_usd", "latency_s", "retries", "cached", "finish_reason"),
    *("incomplete", "error_type"),  # absent from databases before schema v4
]


def _db(db: Path | None) -> Path:
    """--db, else traces.sqlite in PROMPTDAG_DATA_DIR, else in the project's .promptdag/."""
    if db is not None:
        return db
    from promptdag.config import data_dir
    from promptdag.project import find_project

    root = Path.cwd() if os.environ.get("PROMPTDAG_DATA_DIR") else find_project()
    return data_dir(root) / "traces.sqlite"


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = json.loads(df.to_json(orient="records"))
    return records


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _table(df: pd.DataFrame) -> str:
    shown = df.astype(object).where(df.notna(), "-")
    return shown.to_string(index=False, float_format=lambda x: f"{x:.4g}")


@traces_app.command(
    "list",
    epilog="Examples:\n\n  promptdag traces list\n\n  promptdag traces list --since 1h --limit 100\n\n"
    "  promptdag traces list --since 2d --json",
)
def list_(
    since: SinceOpt = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many.")] = 20,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """The most recent requests: time, variant, status, latency, calls, tokens, cost."""
    from promptdag.tracing.query import list_requests, parse_since

    with user_errors():
        df = list_requests(_db(db), parse_since(since) if since else None, limit)
    if json_out:
        _echo_json(_records(df))
    elif df.empty:
        typer.echo(f"no requests{f' in the last {since}' if since else ''}.", err=True)
    else:
        df["request_id"] = df["request_id"].str[:12]
        typer.echo(_table(df))


@traces_app.command(
    epilog="Examples:\n\n  promptdag traces show 3f2a9c1e7b40\n\n"
    "  promptdag traces show 3f2a9c1e7b40 --text\n\n  promptdag traces show 3f2a9c1e7b40 --json"
)
def show(
    request_id: Annotated[str, typer.Argument(help="A request id, or a unique prefix (6+).")],
    text: Annotated[bool, typer.Option("--text", help="Print each prompt and response.")] = False,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """One request: who, which variant and build, status, totals, and each LLM call."""
    import pandas as pd

    from promptdag.tracing.query import show_request

    with user_errors():
        request, calls = show_request(_db(db), request_id)
    if json_out:
        _echo_json({"request": _records(pd.DataFrame([request]))[0], "calls": _records(calls)})
        return
    for key, value in request.items():
        if key != "prompt_versions" and value is not None and not pd.isna(value):
            typer.echo(f"{key:>16}: {value}")
    for node, meta in (request.get("prompt_versions") or {}).items():
        typer.echo(f"{'prompt':>16}: {node}@{meta.get('version')} {meta.get('source_sha256')}")
    if not calls.empty:
        typer.echo("\n" + _table(calls[[c for c in _SHOW_CALL_COLUMNS if c in calls.columns]]))
    for call in calls.to_dict("records") if text else ():
        chunk = call["chunk_index"]
        where = call["step"] + ("" if pd.isna(chunk) else f"[{int(chunk)}]")
        for kind in ("prompt", "response"):
            body = call[f"{kind}_text"]
            shown = f"<redacted: sha256 {call[f'{kind}_sha256']}>" if body is None else body
            typer.echo(f"\n--- {kind} {call['call_index']} ({where}) ---\n{shown}")


@traces_app.command(
    epilog="Examples:\n\n  promptdag traces stats\n\n  promptdag traces stats --by prompt_version\n\n"
    "  promptdag traces stats --by model --since 1d --json"
)
def stats(
    by: Annotated[
        str, typer.Option("--by", help="Group by variant, prompt_version or model.")
    ] = "variant",
    since: SinceOpt = None,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Per group: requests, p50/p95 latency (s), tokens (sum, mean), cost and error rate."""
    from promptdag.tracing.query import parse_since
    from promptdag.tracing.query import stats as trace_stats

    with user_errors():
        df = trace_stats(_db(db), by, parse_since(since) if since else None)
    if json_out:
        _echo_json(_records(df))
    elif df.empty:
        typer.echo(f"no requests{f' in the last {since}' if since else ''}.", err=True)
    else:
        typer.echo(_table(df))


@traces_app.command(
    epilog="Examples:\n\n  promptdag traces export -o traces.csv\n\n"
    "  promptdag traces export --format parquet -o calls.parquet --table llm_calls\n\n"
    "  promptdag traces export -o last-week.csv --since 7d"
)
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="The file to write.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", "-f", help="csv or parquet (default: from -o, else csv)."),
    ] = None,
    table: Annotated[str, typer.Option("--table", help="requests or llm_calls.")] = "requests",
    since: SinceOpt = None,
    db: DbOpt = None,
) -> None:
    """Write the requests or the LLM calls to CSV or parquet, for pandas, DuckDB or a notebook."""
    from promptdag.tracing.query import export as trace_export
    from promptdag.tracing.query import parse_since

    chosen = fmt or ("parquet" if output.suffix.lower() in (".parquet", ".pq") else "csv")
    with user_errors():
        rows = trace_export(_db(db), output, chosen, table, parse_since(since) if since else None)
    typer.echo(f"wrote {rows} {table} rows to {output} ({chosen})", err=True)


@traces_app.command(
    epilog="Examples:\n\n  promptdag traces prune --retain-days 30\n\n"
    "  promptdag traces prune --retain-days 0.5 --db traces.sqlite"
)
def prune(
    retain_days: Annotated[
        float, typer.Option("--retain-days", help="Delete traces older than this many days.")
    ],
    db: DbOpt = None,
) -> None:
    """Delete old traces now (the service also prunes with `serve --retain-days`)."""
    from promptdag.tracing.store import prune as prune_store

    with user_errors():
        path = _db(db)
        requests, calls = prune_store(path, retain_days)
    typer.echo(
        f"deleted {requests} requests and {calls} LLM calls older than {retain_days:g} days "
        f"from {path}",
        err=True,
    )


@traces_app.command(
    epilog="Examples:\n\n  promptdag traces erase --subject user-7\n\n"
    "  promptdag traces erase --subject user-7 --json\n\n"
    "  promptdag traces erase --subject user-7 --db traces.sqlite --cache llm-cache.sqlite"
)
def erase(
    subject: Annotated[
        str, typer.Option("--subject", help="The subject id whose data is deleted.")
    ],
    cache: Annotated[
        Path | None,
        typer.Option("--cache", help="The response cache (default: <data dir>/llm-cache.sqlite)."),
    ] = None,
    json_out: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Delete one subject's requests and LLM calls from the traces, its stored inputs
    (`serve --store-inputs`) and the feedback on them, and the response-cache entries recorded for it; safe while the
    service runs. OTLP copies are not reached."""
    from promptdag.inputs_store import INPUTS_FILE, erase_stored_inputs
    from promptdag.llm.cache import erase_subject as erase_cache
    from promptdag.tracing.store import erase_subject as erase_traces
    from promptdag.ui.feedback import FEEDBACK_FILE, erase_feedback

    if not subject.strip():
        typer.echo("error: --subject is empty: give the subject id to erase.", err=True)
        raise typer.Exit(2)
    with user_errors():
        traces_path = _db(db)
        cache_path = cache if cache is not None else traces_path.with_name(CACHE_FILE)
        requests = calls = 0
        if traces_path.is_file():
            requests, calls = erase_traces(traces_path, subject)
        entries = erase_cache(cache_path, subject)
        inputs_path = traces_path.with_name(INPUTS_FILE)
        found_inputs = inputs_path.is_file()
        stored, values = erase_stored_inputs(inputs_path, subject)
        notes = erase_feedback(traces_path.with_name(FEEDBACK_FILE), subject)
    found_traces, found_cache = traces_path.is_file(), cache_path.is_file()
    if json_out:
        _echo_json(
            {
                "subject": subject,
                "traces": {
                    "path": str(traces_path),
                    "found": found_traces,
                    "requests": requests,
                    "llm_calls": calls,
                },
                "cache": {"path": str(cache_path), "found": found_cache, "entries": entries},
                "inputs": {
                    "path": str(inputs_path),
                    "found": found_inputs,
                    "requests": stored,
                    "values": values,
                },
                "feedback": notes,
            }
        )
        return
    typer.echo(
        f"erased {requests} requests and {calls} LLM calls of subject {subject!r} from {traces_path}"
        if found_traces
        else f"no trace database at {traces_path}"
    )
    typer.echo(
        f"erased {entries} cache entries of subject {subject!r} from {cache_path}"
        if found_cache
        else f"no response cache at {cache_path}"
    )
    if found_inputs:
        typer.echo(
            f"erased the stored inputs of {stored} requests ({values} values) of subject "
            f"{subject!r} from {inputs_path}"
        )
    if notes:
        typer.echo(f"erased the feedback on {notes} requests of subject {subject!r}")
