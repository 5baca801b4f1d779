"""`promptdag`: the command line. Thin: every command builds through the driver factory, and
every library error becomes one line on stderr plus the exit code documented in errors.py."""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from promptdag.batch_cli import register as register_batch
from promptdag.cli_common import (
    ConfigOpt,
    JsonOpt,
    QuietOpt,
    VariantOpt,
    err,
    hide_flag_types,
    overrides,
    user_errors,
)
from promptdag.config import parse_assignments
from promptdag.contract import PipelineSpec
from promptdag.errors import ConfigError, InputError, PromptdagError
from promptdag.eval_cli import register as register_eval
from promptdag.init_cli import register as register_init
from promptdag.prompts_cli import prompts_app
from promptdag.replay_cli import register as register_replay
from promptdag.traces_cli import traces_app

if TYPE_CHECKING:
    from promptdag.pipeline import Pipeline, RunResult

__all__ = ["app", "main"]

hide_flag_types()
app = typer.Typer(
    name="promptdag",
    help="Prompts as code on a Hamilton DAG: run your pipelines, inspect and gate prompt versions, serve them, render the DAG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # click's plain help: rich's renderer alone costs ~0.2 s of --help
)
variants_app = typer.Typer(
    help="Inspect the named variants in the project's variants file.",
    no_args_is_help=True,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        from promptdag import __version__

        typer.echo(f"promptdag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Prompts as code on a Hamilton DAG: run your pipelines, inspect and gate prompt versions,
    serve them, render the DAG."""


app.add_typer(prompts_app, name="prompts")
app.add_typer(variants_app, name="variants")
app.add_typer(traces_app, name="traces")
register_eval(app)
register_batch(app)
register_init(app)
register_replay(app)


def _build(variant: str | None, config: list[str] | None, **kwargs: Any) -> Pipeline:
    from promptdag.factory import build_pipeline

    return build_pipeline(variant=variant, overrides=overrides(config), **kwargs)


def _weights(pairs: list[str] | None) -> dict[str, float]:
    """`--weight NAME=W` pairs as numbers; anything else is a ConfigError naming the pair."""
    out: dict[str, float] = {}
    problems = []
    for name, value in overrides(pairs).items():
        try:
            out[name] = float(value)
        except ValueError:
            problems.append(
                f"--weight {name}={value}: the weight must be a number >= 0, e.g. {name}=0.2."
            )
    if problems:
        raise ConfigError(problems)
    return out


def _run_inputs(spec: PipelineSpec, path: Path | None, pairs: list[str] | None) -> dict[str, Any]:
    """The run's inputs: the positional file bound by the contract, then --input NAME=VALUE
    (NAME=@FILE reads a file)."""
    from promptdag.inputs import read_input_file

    inputs: dict[str, Any] = {}
    if path is not None:
        target = spec.file_input_for(path)
        inputs[target.name] = read_input_file(path, target)
        if target.filename_input:
            inputs[target.filename_input] = path.name
    for name, value in parse_assignments(pairs or [], flag="--input").items():
        declared = spec.inputs.get(name)
        if declared is not None and value.startswith("@") and declared.kind in ("file", "text"):
            inputs[name] = read_input_file(Path(value[1:]), declared)
        else:
            inputs[name] = value
    return inputs


def _footer(result: RunResult) -> str:
    usage = result.usage
    fp = result.fingerprint
    git = fp["git"]
    where = (
        f"{git.get('source', 'git')} {git['sha'][:10]}{' (dirty)' if git['dirty'] else ''}"
        if git.get("available")
        else f"git: {git.get('reason')}"
    )
    versions = " ".join(f"{n}@{p['version']}" for n, p in fp["prompts"].items())
    cost = "n/a" if usage["cost_usd"] is None else f"${usage['cost_usd']:.4f}"
    return (
        f"— {result.model or 'no model call'} · {result.pipeline} · variant {result.variant} · "
        f"{versions} · {usage['calls']} calls ({usage['cached_calls']} cached) · "
        f"{usage['input_tokens']}→{usage['output_tokens']} tokens · {cost} · "
        f"{result.latency_s:.2f} s · {where} · fingerprint {fp['id']}"
    )


async def _run_once(pipeline: Pipeline, inputs: dict[str, Any], quiet: bool) -> RunResult:
    from promptdag.progress import RunProgress

    try:
        with RunProgress(enabled=not quiet):
            return await pipeline.run(inputs)
    finally:
        await pipeline.aclose()


@app.command(
    "run",
    epilog="Examples:\n\n"
    "  promptdag run PIPELINE FILE\n\n"
    "  promptdag run PIPELINE FILE --input NAME='a value' --variant NAME --json\n\n"
    "  promptdag run triage --input ticket=@ticket.txt -c NODE_version=v2\n\n"
    "  promptdag run triage --input ticket='The app crashes on login' --json\n\n"
    "  OPENAI_API_KEY=... promptdag run PIPELINE FILE -c llm_backend=openai -c llm_model=gpt-4o-mini",
)
def run_command(
    pipeline_name: Annotated[
        str,
        typer.Argument(
            metavar="PIPELINE",
            help="A pipeline declared in the project's contract (pyproject.toml).",
        ),
    ],
    path: Annotated[
        Path | None,
        typer.Argument(help="A file for the pipeline's file input (bound by the contract)."),
    ] = None,
    input_pairs: Annotated[
        list[str] | None,
        typer.Option(
            "--input",
            "-i",
            metavar="NAME=VALUE",
            help="A request input NAME=VALUE (NAME=@FILE reads a file).",
        ),
    ] = None,
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    require_clean: Annotated[
        bool,
        typer.Option("--require-clean", help="Refuse to run from a tree with uncommitted changes."),
    ] = False,
    quiet: QuietOpt = False,
    allow_incomplete: Annotated[
        bool,
        typer.Option(
            "--allow-incomplete",
            help="Exit 0 even when an answer is flagged incomplete (with llm_allow_incomplete=true).",
        ),
    ] = False,
) -> None:
    """Run a declared pipeline once: the answer goes to stdout, a provenance line to stderr."""
    from promptdag.factory import build_pipeline
    from promptdag.project import load_project

    with user_errors():
        project = load_project()
        spec = project.contract.pipeline(pipeline_name)
        inputs = _run_inputs(spec, path, input_pairs)
        pipeline = build_pipeline(
            pipeline=spec.name,
            variant=variant,
            overrides=overrides(config),
            project=project,
            require_clean_tree=require_clean,
        )
        import asyncio

        result = asyncio.run(_run_once(pipeline, inputs, quiet))
    if json_out:
        typer.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        typer.echo(result.answer_text())
        for note in result.notes:
            err(f"note: {note}")
        if pipeline.llm.settings.backend == "offline" and not quiet:
            err(
                "note: offline-extractive is an extractive stand-in, not an LLM: it picks sentences from the text."
            )
        err(_footer(result))
    if result.incomplete and not allow_incomplete:
        err(
            "error: the answer is incomplete (the model stopped early, filtered or refused a "
            "call; see llm_calls). Pass --allow-incomplete to accept it."
        )
        raise typer.Exit(4)


@app.command(epilog="Examples:\n\n  promptdag stamp\n\n  promptdag stamp --json")
def stamp(json_out: JsonOpt = False) -> None:
    """Write the checkout's git SHA, dirty flag and diff hash to .promptdag-stamp.json (run it
    at image build: later runs without .git read their provenance from it)."""
    from promptdag.project import find_project
    from promptdag.provenance import STAMP_FILE, write_stamp

    with user_errors():
        root = find_project()
        data = write_stamp(root)
    if json_out:
        typer.echo(json.dumps(data, indent=2))
        return
    err(f"wrote {root / STAMP_FILE}: {data['sha'][:12]}{' (dirty)' if data['dirty'] else ''}")


@app.command(
    epilog="Examples:\n\n"
    "  promptdag render -o dag.svg\n\n"
    "  promptdag render --format mermaid --variant concise\n\n"
    "  promptdag render -o dag.png -c chunk_summary_prompt_version=v1"
)
def render(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here (default: stdout).")
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", "-f", help="svg, png, dot or mermaid (default: from -o, else mermaid)."
        ),
    ] = None,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
) -> None:
    """Render the DAG of a variant: prompt nodes highlighted with their versions."""
    from promptdag.render import render as render_dag

    suffixes = {
        ".svg": "svg",
        ".png": "png",
        ".dot": "dot",
        ".gv": "dot",
        ".mmd": "mermaid",
        ".md": "mermaid",
    }
    chosen = fmt or (suffixes.get(output.suffix.lower()) if output else None) or "mermaid"
    with user_errors():
        pipeline = _build(variant, config)
        data = render_dag(pipeline, chosen)
        if output is None and chosen in ("svg", "png"):
            raise InputError(
                f"--format {chosen} is binary: write it to a file with -o dag.{chosen}."
            )
    if output is None:
        sys.stdout.write(data.decode("utf-8"))
        return
    output.write_bytes(data)
    err(f"wrote {output} ({chosen}, variant {pipeline.variant})")


@app.command(
    epilog="Examples:\n\n"
    "  PROMPTDAG_API_KEYS=secret promptdag serve --host 127.0.0.1 --port 8000\n\n"
    "  promptdag serve --api-key-file keys.txt --variant baseline --variant concise --weight concise=0.2\n\n"
    "  promptdag serve --otlp-endpoint http://127.0.0.1:4318 --redact --retain-days 30\n\n"
    "  promptdag serve --workers 4 --graceful-timeout 60"
)
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            "-V",
            metavar="NAME",
            help="Serve this variant (repeatable; default: every variant with weight > 0).",
        ),
    ] = None,
    weight: Annotated[
        list[str] | None,
        typer.Option("--weight", metavar="NAME=W", help="Override a weight: NAME=W (repeatable)."),
    ] = None,
    config: ConfigOpt = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            help="File with one API key per line, KEY or ID:KEY (or set PROMPTDAG_API_KEYS); "
            "re-read when it changes or on SIGHUP."
        ),
    ] = None,
    allow_variant_header: Annotated[
        bool, typer.Option(help="Let requests force a variant with X-Promptdag-Variant.")
    ] = False,
    protect_ops: Annotated[
        bool,
        typer.Option(
            help="Require the API key on /healthz, /readyz, /v1/version, /metrics and the docs "
            "(/docs, /redoc, /openapi.json)."
        ),
    ] = False,
    insecure_no_auth: Annotated[
        bool, typer.Option(help="Serve without API keys (local experiments only).")
    ] = False,
    max_in_flight: Annotated[
        int,
        typer.Option(
            help="Runs processed at once (a run takes a slot once its body is read); more get "
            "503 + Retry-After."
        ),
    ] = 64,
    key_max_in_flight: Annotated[
        int | None,
        typer.Option(
            help="Requests one API key may have open at once, uploads included (default: "
            "--max-in-flight); more get 429 + Retry-After."
        ),
    ] = None,
    key_rate: Annotated[
        float | None,
        typer.Option(
            help="Requests per second one API key may send on average (a token bucket; "
            "default: no limit); more get 429 + Retry-After."
        ),
    ] = None,
    key_burst: Annotated[
        int | None,
        typer.Option(
            help="Requests one API key may send at once within --key-rate (default: the rate)."
        ),
    ] = None,
    header_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send the request line and headers (408).")
    ] = 10.0,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a client has to send the whole request body (408).")
    ] = 60.0,
    max_upload_bytes: Annotated[
        int | None,
        typer.Option(
            help="Largest accepted request body, for every pipeline (default: each pipeline's "
            "largest file input max_bytes + 64 KiB, from the contract)."
        ),
    ] = None,
    traces: Annotated[
        bool, typer.Option(help="Record every request and LLM call in the trace store.")
    ] = True,
    redact: Annotated[
        bool, typer.Option(help="Store only hashes of prompts and responses in traces.")
    ] = False,
    retain_days: Annotated[
        float | None, typer.Option(help="Delete traces older than this many days.")
    ] = None,
    store_inputs: Annotated[
        bool,
        typer.Option(
            help="Keep each request's inputs (content-addressed, 0600, same retention) so "
            "`promptdag replay` can re-run it; not with --redact unless --store-inputs-when-redacted."
        ),
    ] = False,
    store_inputs_when_redacted: Annotated[
        bool, typer.Option(help="Store inputs even with --redact (implies --store-inputs).")
    ] = False,
    otlp_endpoint: Annotated[
        str | None, typer.Option(help="Also export spans over OTLP/HTTP to this endpoint.")
    ] = None,
    access_log: Annotated[
        bool, typer.Option(help="One JSON line per request on stderr (logger promptdag.access).")
    ] = True,
    graceful_timeout: Annotated[
        int,
        typer.Option(
            help="Seconds to let in-flight requests finish on shutdown; the rest get a 503."
        ),
    ] = 30,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Worker processes sharing the port, each with its own Drivers; /metrics adds "
            "them up. --max-in-flight and the per-key limits apply in each worker.",
        ),
    ] = 1,
) -> None:
    """Serve every declared pipeline over HTTP (POST /v1/pipelines/NAME/runs): each variant's
    Driver built once, A/B assignment, per-key limits, traces and an access log."""
    try:
        from promptdag.service import server
        from promptdag.service.app import preflight
        from promptdag.service.settings import ServiceSettings, env_api_keys
    except ModuleNotFoundError as exc:
        serve_extra = {"fastapi", "starlette", "uvicorn", "prometheus_client", "multipart"}
        if (exc.name or "").split(".")[0] not in serve_extra:
            raise
        err(
            f"error: promptdag serve needs the serve extra ({exc.name} is not installed): "
            "pip install 'promptdag[serve]'"
        )
        raise typer.Exit(2) from None

    with user_errors():
        weights = _weights(weight)
        settings = ServiceSettings(
            api_keys=env_api_keys(),
            api_key_file=api_key_file,
            variants=tuple(variant) if variant else None,
            weights=weights,
            config=overrides(config),
            allow_variant_header=allow_variant_header,
            protect_ops=protect_ops,
            insecure_no_auth=insecure_no_auth,
            max_in_flight=max_in_flight,
            key_max_in_flight=key_max_in_flight,
            key_rate=key_rate,
            key_burst=key_burst,
            header_timeout_s=header_timeout,
            body_timeout_s=body_timeout,
            max_upload_bytes=max_upload_bytes,
            traces=traces,
            redact=redact,
            retain_days=retain_days,
            store_inputs="even-redacted"
            if store_inputs_when_redacted
            else ("on" if store_inputs else "off"),
            otlp_endpoint=otlp_endpoint,
            settle_gc=True,  # this process serves and nothing else
        )
        import asyncio

        served = asyncio.run(preflight(settings))
    err(
        f"serving {', '.join(served.pipelines)} with variants "
        f"{', '.join(f'{n} ({w:.0%})' for n, w in served.weights.items())} "
        f"on http://{host}:{port} (docs: /docs)"
        + (f" with {workers} worker processes" if workers > 1 else "")
    )
    server.run(settings, host, port, graceful_timeout, access_log=access_log, workers=workers)


@app.command(
    epilog="Examples:\n\n  promptdag gate --report-dir out/\n\n"
    "  promptdag gate --base origin/main\n\n"
    "  promptdag gate HEAD~1 --all --cache replay-only\n\n"
    "  OPENAI_API_KEY=... promptdag gate --judge-backend openai --judge-model gpt-4o-mini\n\n"
    "Base: BASE or --base, else the merge base of HEAD with origin/main (else main); on that "
    "branch itself, HEAD~1.\n\n"
    "Exit codes: 0 pass, 1 gate failed, 2 could not run (a report is still written), "
    "3 needs a judge or a reviewer's approval (--require-judge makes it 1)."
)
def gate(
    base_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="[BASE]", help="The git ref the change is judged against (same as --base)."
        ),
    ] = None,
    base_opt: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="The git ref the change is judged against (default: the merge base with "
            "origin/main or main).",
        ),
    ] = None,
    report_dir: Annotated[
        Path, typer.Option(help="Where report.md, report.html and report.json go.")
    ] = Path("out/gate"),
    run_all: Annotated[
        bool,
        typer.Option("--all", help="Run every eval case, not only those downstream of a change."),
    ] = False,
    cache: Annotated[
        str,
        typer.Option(help="Response cache for the evals: use, replay-only (deterministic) or off."),
    ] = "use",
    judge_backend: Annotated[str, typer.Option(help="Backend of the judge model.")] = "openai",
    judge_model: Annotated[
        str | None,
        typer.Option(
            envvar="PROMPTDAG_JUDGE_MODEL",
            help="Judge model (none: judge steps are skipped, visibly).",
        ),
    ] = None,
    max_loss_share: Annotated[
        float, typer.Option(help="Fail when the regression judge's losses exceed this share.")
    ] = 0.2,
    require_judge: Annotated[
        bool,
        typer.Option(
            "--require-judge",
            help="Fail (not exit 3) when a live variant's prompts or model settings changed and "
            "no judge model ran.",
        ),
    ] = False,
) -> None:
    """Gate a prompt change: lock check, review report, selected evals (bar from BASE), regression judge."""
    from promptdag.gate.gate import GateOptions, run_gate
    from promptdag.gate.gate_report import write_error_reports, write_reports

    if base_arg is not None and base_opt is not None and base_arg != base_opt:
        err(f"gate: BASE {base_arg!r} and --base {base_opt!r} disagree: give one.")
        raise typer.Exit(2)
    base = base_opt or base_arg
    judge = (
        {"judge_backend": judge_backend, "judge_model": judge_model, "judge_cache": cache}
        if judge_model
        else {}
    )
    options = GateOptions(
        base=base,
        report_dir=report_dir,
        run_all=run_all,
        cache=cache,
        judge_config=judge,
        max_loss_share=max_loss_share,
        require_judge=require_judge,
    )
    with user_errors():  # a bad option is a usage error: no report
        if cache not in ("off", "use", "replay-only"):
            raise ConfigError([f"--cache {cache!r}: use off, use or replay-only."])
    try:
        with user_errors():
            try:
                result = run_gate(options)
            except PromptdagError as exc:
                write_error_reports(base or "the merge base", str(exc), report_dir)
                raise
            paths = write_reports(result, report_dir)
    except typer.Exit:
        err(f"gate: could not run; reports: {report_dir}/report.md, .html, .json")
        raise
    for reason in [*result.reasons(), *result.approvals]:
        err(f"gate: {reason}")
    verdict = {"passed": "passed", "failed": "FAILED"}.get(
        result.verdict, "needs a judge or a reviewer's approval"
    )
    err(f"gate {verdict} against {result.base}; reports: {', '.join(str(p) for p in paths)}")
    raise typer.Exit(result.exit_code)


@variants_app.command("list", epilog="Examples:\n\n  promptdag variants list --json")
def variants_list(json_out: JsonOpt = False) -> None:
    """Every named variant, its weight and its config."""
    from promptdag.project import load_project
    from promptdag.variants import load_variants

    with user_errors():
        variants = load_variants(load_project().variants_path)
    rows = [
        {
            "name": v.name,
            "weight": v.weight,
            "default": v.name == variants.default,
            "description": v.description,
            "config": v.config,
        }
        for v in variants.variants.values()
    ]
    if json_out:
        typer.echo(json.dumps(rows, indent=2))
        return
    for r in rows:
        typer.echo(
            f"{'*' if r['default'] else ' '} {r['name']:<12} weight {r['weight']:<5g} {r['description']}"
        )


def main() -> None:
    """Console entry point: unexpected errors are one line too (PROMPTDAG_DEBUG=1 shows the traceback)."""
    try:
        app()
    except KeyboardInterrupt:
        err("interrupted")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: say what broke, in one line
        if os.environ.get("PROMPTDAG_DEBUG"):
            traceback.print_exc()
        err(
            f"internal error: {type(exc).__name__}: {exc}. Re-run with PROMPTDAG_DEBUG=1 and report it."
        )
        sys.exit(70)
