"""`promptdag replay`: re-run a recorded request (kept with `promptdag serve --store-inputs`)
at its recorded git SHA, variant and config, or at another ref, and compare the rendered prompts
and the answer with the recorded ones; many requests at once into Parquet; or turn one into an
eval case. Register on the main app with `register(app)`.

Exit codes: 0 replayed (at the recorded SHA: the prompts and the answer are the same), 1 at the
recorded SHA the rendered prompts or the answer differ, 2 bad options, 3 the request cannot be
replayed (no stored inputs, no recorded SHA, the tree at the ref does not run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from promptdag.cli_common import ConfigOpt, JsonOpt, err, overrides, user_errors

if TYPE_CHECKING:
    from promptdag.replay.core import ReplayResult

__all__ = ["REPLAY_EPILOG", "register", "replay_command"]

REPLAY_EPILOG = (
    "Examples:\n\n"
    "  promptdag replay 3f2a9c\n\n"
    "  promptdag replay 3f2a9c --at HEAD\n\n"
    "  promptdag replay 3f2a9c --at HEAD -c llm_model=gpt-4o-mini --json\n\n"
    "  promptdag replay 3f2a9c --cache off\n\n"
    "  promptdag replay --since 24h --variant baseline --at HEAD --out replay.parquet\n\n"
    "  promptdag replay 3f2a9c --to-case ci/evals/suites/SUITE.toml\n\n"
    "Needs the request's inputs, which `promptdag serve --store-inputs` keeps."
)


_LOCK = {
    None: "not recorded with the run (stored before lock hashes were)",
    False: "the same as recorded",
    True: "changed since the recorded run",
}


def _show(result: ReplayResult) -> None:
    at = "its recorded SHA" if result.at == "recorded" else result.at
    typer.echo(
        f"request {result.request_id[:12]} ({result.pipeline}, variant {result.variant}) "
        f"replayed at {at} ({result.at_sha[:12]}; recorded at "
        f"{(result.recorded_sha or 'no SHA')[:12]})"
    )
    if result.error:
        typer.echo(f"the replay failed: {result.error}")
        return
    if result.same_prompts is None:
        typer.echo("rendered prompts: nothing recorded to compare with")
    elif result.same_prompts:
        typer.echo("rendered prompts: same hashes as recorded")
    else:
        typer.echo("rendered prompts: differ from the recorded ones")
        for line in result.prompt_changes:
            typer.echo(f"  {line}")
        if result.prompt_diff is not None:
            from promptdag.gate.worddiff import word_diff_plain

            where, pieces = result.prompt_diff
            typer.echo(f"\nprompt of call {where} ([-recorded-]{{+replayed+}}):\n")
            typer.echo(word_diff_plain(pieces) + "\n")
    typer.echo(f"dependency lock: {_LOCK[result.dependency_lock_changed]}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    cost = "-" if result.cost_usd is None else f"${result.cost_usd:.6f}"
    typer.echo(
        f"calls: {result.calls} ({result.cached_calls} from the response cache), cost {cost}"
    )
    if result.same_output is None:
        typer.echo(f"\n--- replayed answer ---\n{result.replayed_answer}")
    elif result.same_output:
        typer.echo("answer: byte for byte the same as recorded")
    else:
        from promptdag.gate.worddiff import word_diff_plain

        changed = (
            f"{result.words_changed} words changed"
            if result.words_changed
            else "punctuation or spacing"
        )
        typer.echo(f"answer: differs ({changed}; [-recorded-]{{+replayed+}})\n")
        typer.echo(word_diff_plain(result.diff))


def _failed(result: ReplayResult) -> bool:
    """At the recorded SHA, a replay that does not reproduce the recording."""
    return result.at == "recorded" and (
        result.error is not None or result.same_prompts is False or result.same_output is False
    )


def replay_command(
    request_id: Annotated[
        str | None,
        typer.Argument(help="A recorded request id, or a unique prefix (6+ characters)."),
    ] = None,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Replay at this git ref (default: the request's recorded SHA)."),
    ] = None,
    config: ConfigOpt = None,
    cache: Annotated[
        str | None,
        typer.Option(
            "--cache", help="llm_cache for the replay: use, off (ask the model again), replay-only."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", help="Replay every stored request this recent: 30m, 24h, 7d."),
    ] = None,
    variant: Annotated[
        str | None, typer.Option("--variant", "-V", help="With --since: only this variant.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="With --since: write one row per request.")
    ] = None,
    to_case: Annotated[
        Path | None,
        typer.Option("--to-case", help="Append the request as an eval case to this suite file."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-run a recorded request at its recorded SHA (or --at REF) and diff the answers."""
    from promptdag.tracing.query import parse_since

    if (request_id is None) == (since is None):
        err("error: give a REQUEST_ID, or --since DURATION to replay many.")
        raise typer.Exit(2)
    if cache is not None and cache not in ("use", "off", "replay-only"):
        err(f"error: --cache {cache!r}: use one of use, off, replay-only.")
        raise typer.Exit(2)
    if to_case is not None:
        if request_id is None:
            err("error: --to-case takes one REQUEST_ID.")
            raise typer.Exit(2)
        from promptdag.replay.cases import append_case

        with user_errors():
            case_id = append_case(request_id, to_case)
        err(f"appended case {case_id!r} to {to_case}")
        return
    with user_errors():
        if since is not None:
            _many(parse_since(since), variant, at, overrides(config), cache, out, json_out)
            return
        from promptdag.replay.core import replay_request

        assert request_id is not None
        result = replay_request(request_id, at=at, overrides=overrides(config), cache=cache)
    if json_out:
        typer.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        _show(result)
    if _failed(result):
        raise typer.Exit(1)


def _many(
    since: object,
    variant: str | None,
    at: str | None,
    config: dict[str, str],
    cache: str | None,
    out: Path | None,
    json_out: bool,
) -> None:
    import pandas as pd

    from promptdag.replay.core import replay_many

    results, skipped = replay_many(
        since=since,  # type: ignore[arg-type]
        variant=variant,
        at=at,
        overrides=config,
        cache=cache,
    )
    rows = [
        {k: v for k, v in r.as_dict().items() if k not in ("diff", "prompt_changes", "notes")}
        | {"prompt_changes": "\n".join(r.prompt_changes), "notes": "\n".join(r.notes)}
        for r in results
    ]
    if out is not None:
        pd.DataFrame(rows).to_parquet(out, index=False)
        err(f"wrote {len(rows)} replayed requests to {out}")
    if skipped:
        err(
            f"skipped {len(skipped)} requests without stored inputs or a recorded SHA "
            "(`promptdag serve --store-inputs` keeps inputs)"
        )
    if json_out:
        typer.echo(json.dumps({"replayed": rows, "skipped": skipped}, indent=2, ensure_ascii=False))
    elif out is None:
        for r in results:
            _show(r)
            typer.echo("")
    same = sum(1 for r in results if r.same_output)
    err(f"{len(results)} replayed: {same} same answer, {len(results) - same} different or failed")


def register(app: typer.Typer) -> None:
    """Add `replay` and `ui` (the traces page) to the main CLI."""
    from promptdag.ui.cli import UI_EPILOG, ui_command

    app.command("replay", epilog=REPLAY_EPILOG)(replay_command)
    app.command("ui", epilog=UI_EPILOG)(ui_command)
