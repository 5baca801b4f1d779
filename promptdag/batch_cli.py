"""`promptdag batch`: run a declared pipeline over many inputs (a glob, a directory, or a
JSONL / CSV / Parquet table), on this machine's cores or on a Ray cluster, one Parquet row per
input. Register on the main app with `register(app)`.

Exit codes: 0 every input ran ok (or already had an ok row), 1 some input failed or was not run
(--fail-fast, --max-cost-usd), 2 the batch could not start (bad options, config or inputs; the
output exists without --resume or --overwrite), 3 an input given to every item is wrong.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

from promptdag.cli_common import (
    ConfigOpt,
    JsonOpt,
    QuietOpt,
    VariantOpt,
    err,
    overrides,
    user_errors,
)

__all__ = ["BATCH_EPILOG", "batch_command", "register"]

BATCH_EPILOG = (
    "Examples:\n\n"
    "  promptdag batch PIPELINE 'papers/*.pdf' --out runs/papers.parquet\n\n"
    "  promptdag batch PIPELINE 'papers/*.pdf' --out runs/papers.parquet --resume\n\n"
    "  promptdag batch PIPELINE tickets.jsonl --out runs/t.parquet --engine ray --ray-address auto\n\n"
    "  promptdag batch PIPELINE papers/ --out runs/p.parquet --variant VARIANT --rpm 500 "
    "--tpm 200000 --max-cost-usd 20\n\n"
    "  promptdag batch PIPELINE rows.csv --out runs/r.parquet --input NAME=VALUE --fail-fast\n\n"
    "Output: one row per input (id, content hash, status, error, every declared output, usage, "
    "variant, prompt versions, fingerprint), written in parts as items finish and merged into "
    "OUT at the end. Exit codes: 0 all ok, 1 some input failed or was not run, 2 cannot start."
)


def batch_command(
    pipeline_name: Annotated[
        str,
        typer.Argument(metavar="PIPELINE", help="A pipeline declared in the project's contract."),
    ],
    source: Annotated[
        str,
        typer.Argument(
            metavar="INPUTS",
            help="A glob in quotes ('papers/*.pdf', '**' recurses), a directory, or a .jsonl, "
            ".csv or .parquet file whose columns are the pipeline's inputs (one run per row).",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="The Parquet file to write (one row per input).")
    ],
    engine: Annotated[
        str, typer.Option(help="local (worker processes on this machine) or ray.")
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option(help="Worker processes (default: this machine's cores; Ray: its CPUs)."),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            help="A Ray cluster to run on: auto, or the head's HOST:PORT (default: start a "
            "local Ray instance)."
        ),
    ] = None,
    input_pairs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="NAME=VALUE",
            help="An input for every item: NAME=VALUE (NAME=@FILE reads a file).",
        ),
    ] = None,
    id_column: Annotated[
        str | None,
        typer.Option(help="A table's column naming each row (default: 'id' when present)."),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Continue OUT: skip the inputs that already have an ok row from this build.",
        ),
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT if it exists.")
    ] = False,
    fail_fast: Annotated[
        bool,
        typer.Option(
            "--fail-fast", help="Stop at the first failed input (cancels the ones in flight)."
        ),
    ] = False,
    rpm: Annotated[
        float | None, typer.Option(help="LLM requests per minute, across all workers.")
    ] = None,
    tpm: Annotated[
        float | None,
        typer.Option(help="LLM tokens per minute (prompt + max output), across all workers."),
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(help="LLM calls in flight at once, across all workers.")
    ] = None,
    max_cost_usd: Annotated[
        float | None,
        typer.Option(
            help="Stop handing out inputs when the estimated spend would pass this (USD)."
        ),
    ] = None,
    in_flight: Annotated[
        int | None,
        typer.Option(
            help="Inputs running at once, in total (default: 2 × --concurrency, else 4 per worker)."
        ),
    ] = None,
    log_every: Annotated[
        float,
        typer.Option(help="Seconds between progress lines when stderr is not a terminal."),
    ] = 10.0,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    require_clean: Annotated[
        bool,
        typer.Option("--require-clean", help="Refuse to run from a tree with uncommitted changes."),
    ] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run a declared pipeline over many inputs: one Parquet row per input, resumable, with
    rate, concurrency and cost limits shared by every worker."""
    from promptdag.batch.limits import Limits
    from promptdag.batch.runner import BatchOptions, run_batch
    from promptdag.batch.sources import read_constants
    from promptdag.project import load_project

    with user_errors():
        project = load_project()
        spec = project.contract.pipeline(pipeline_name)
        options = BatchOptions(
            source=source,
            out=out,
            pipeline=spec.name,
            engine=engine,
            workers=workers,
            variant=variant,
            overrides=overrides(config),
            inputs=read_constants(spec, input_pairs or []),
            id_column=id_column,
            resume=resume,
            overwrite=overwrite,
            fail_fast=fail_fast,
            limits=Limits(rpm=rpm, tpm=tpm, concurrency=concurrency),
            max_cost_usd=max_cost_usd,
            in_flight=in_flight,
            ray_address=ray_address,
            project=project.root,
            require_clean=require_clean,
            progress=not quiet,
            log_every=log_every,
            # the service's variable for the LLM's HTTP stack: auto, aiohttp or httpx
            http_client=os.environ.get("PROMPTDAG_LLM_HTTP_CLIENT", "auto"),
        )
        import asyncio

        summary = asyncio.run(run_batch(options, say=err))
    if json_out:
        typer.echo(json.dumps(summary.as_dict(), indent=2, ensure_ascii=False))
    for input_id, error_type, message in summary.errors:
        err(f"failed: {input_id}: {error_type}: {message}")
    if summary.failed > len(summary.errors):
        err(f"... and {summary.failed - len(summary.errors)} more: the rows with status 'error'.")
    err(summary.line())
    raise typer.Exit(summary.exit_code)


def register(main_app: typer.Typer) -> None:
    """Add `batch` to the main `promptdag` app, with its Examples epilog."""
    main_app.command("batch", epilog=BATCH_EPILOG)(batch_command)
