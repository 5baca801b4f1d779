"""`promptdag`: the command line. Thin: every command builds through the driver factory, and
every library error becomes one line on stderr plus the exit code documented in errors.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from drivers.catalog import discover_prompts, load_fixtures
from drivers.config import parse_assignments
from drivers.errors import ConfigError, InputError, PromptdagError
from drivers.eval_cli import register as register_eval
from drivers.factory import build_pipeline
from drivers.pipeline import Pipeline, RunResult, render_prompts
from drivers.project import load_project
from drivers.traces_cli import traces_app
from drivers.variants import load_variants

__all__ = ["app", "main"]

app = typer.Typer(
    name="promptdag",
    help="Prompts as code on a Hamilton DAG: summarize documents, inspect prompt versions, render the DAG.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
prompts_app = typer.Typer(help="Inspect prompt nodes and their versions.", no_args_is_help=True)
variants_app = typer.Typer(
    help="Inspect the named variants in prompts/variants.toml.", no_args_is_help=True
)
app.add_typer(prompts_app, name="prompts")
app.add_typer(variants_app, name="variants")
app.add_typer(traces_app, name="traces")
register_eval(app)

ConfigOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--config", "-c", help="Build-time config KEY=VALUE (repeatable); overrides the variant."
    ),
]
VariantOpt = Annotated[
    str | None, typer.Option("--variant", "-V", help="A named variant from prompts/variants.toml.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
TEXT_SUFFIXES = {".txt", ".md", ".text"}


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextlib.contextmanager
def _user_errors() -> Iterator[None]:
    """Library errors → one line and their exit code; never a traceback."""
    try:
        yield
    except PromptdagError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None
    except ValueError as exc:  # bad --config syntax and the like, raised before any build
        _err(f"error: {exc}")
        raise typer.Exit(2) from None


def _overrides(pairs: list[str] | None) -> dict[str, str]:
    return parse_assignments(pairs or [])


def _build(variant: str | None, config: list[str] | None, **kwargs: Any) -> Pipeline:
    return build_pipeline(variant=variant, overrides=_overrides(config), **kwargs)


def _read_document(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise InputError(f"{path}: no such file. Check the path.")
    if not path.is_file():
        raise InputError(f"{path}: not a file.")
    data = path.read_bytes()
    if path.suffix.lower() in TEXT_SUFFIXES:
        try:
            return {"text": data.decode("utf-8")}
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not UTF-8 text ({exc.reason}).") from exc
    return {"pdf_bytes": data, "source_name": path.name}


def _footer(result: RunResult, pipeline: Pipeline) -> str:
    usage = result.outputs["usage"]
    fp = result.fingerprint
    git = fp["git"]
    where = (
        f"git {git['sha'][:10]}{' (dirty)' if git['dirty'] else ''}"
        if git.get("available")
        else f"git: {git.get('reason')}"
    )
    versions = " ".join(f"{n}@{p['version']}" for n, p in fp["prompts"].items())
    cost = "n/a" if usage["cost_usd"] is None else f"${usage['cost_usd']:.4f}"
    model = result.outputs["llm_calls"][-1]["model"]
    return (
        f"— {model} · variant {pipeline.variant} · {versions} · {usage['calls']} calls "
        f"({usage['cached_calls']} cached) · {usage['input_tokens']}→{usage['output_tokens']} tokens · "
        f"{cost} · {result.latency_s:.2f} s · {where} · fingerprint {fp['id']}"
    )


async def _summarize(pipeline: Pipeline, inputs: dict[str, Any]) -> RunResult:
    try:
        return await pipeline.summarize(**inputs)
    finally:
        await pipeline.aclose()


@app.command(
    epilog="Examples:\n\n"
    "  promptdag summarize examples/the-man-without-a-body.pdf\n\n"
    "  promptdag summarize paper.pdf --json\n\n"
    "  promptdag summarize paper.pdf --config chunk_summary_prompt_version=v1\n\n"
    "  promptdag summarize paper.pdf --variant concise --query 'What is the main result?'\n\n"
    "  OPENAI_API_KEY=... promptdag summarize paper.pdf -c llm_backend=openai -c llm_model=gpt-4o-mini"
)
def summarize(
    path: Annotated[Path, typer.Argument(help="A PDF (or a .txt/.md text file) to summarize.")],
    json_out: JsonOpt = False,
    config: ConfigOpt = None,
    variant: VariantOpt = None,
    query: Annotated[
        str, typer.Option("--query", "-q", help="A question the summary should answer.")
    ] = "",
    content_type: Annotated[
        str | None,
        typer.Option("--content-type", help="What the document is, e.g. 'a news article'."),
    ] = None,
    password: Annotated[str, typer.Option("--password", help="Password of an encrypted PDF.")] = "",
    require_clean: Annotated[
        bool,
        typer.Option("--require-clean", help="Refuse to run from a tree with uncommitted changes."),
    ] = False,
) -> None:
    """Summarize a document; the summary goes to stdout, a provenance line to stderr."""
    with _user_errors():
        inputs = _read_document(path)
        if query:
            inputs["user_query"] = query
        if content_type is not None:
            inputs["content_type"] = content_type
        if password:
            inputs["pdf_password"] = password
        pipeline = _build(variant, config, require_clean_tree=require_clean)
        result = asyncio.run(_summarize(pipeline, inputs))
    if json_out:
        typer.echo(json.dumps(result.as_dict(), indent=2, ensure_ascii=False, default=str))
        return
    typer.echo(result.summary)
    for note in result.notes:
        _err(f"note: {note}")
    if pipeline.llm.settings.backend == "offline":
        _err(
            "note: offline-extractive is an extractive stand-in, not an LLM: it picks sentences from the text."
        )
    _err(_footer(result, pipeline))


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
    from drivers.render import render as render_dag

    suffixes = {
        ".svg": "svg",
        ".png": "png",
        ".dot": "dot",
        ".gv": "dot",
        ".mmd": "mermaid",
        ".md": "mermaid",
    }
    chosen = fmt or (suffixes.get(output.suffix.lower()) if output else None) or "mermaid"
    with _user_errors():
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
    _err(f"wrote {output} ({chosen}, variant {pipeline.variant})")


@app.command(
    epilog="Examples:\n\n"
    "  PROMPTDAG_API_KEYS=secret promptdag serve --host 127.0.0.1 --port 8000\n\n"
    "  promptdag serve --api-key-file keys.txt --variant baseline --variant concise --weight concise=0.2\n\n"
    "  promptdag serve --otlp-endpoint http://127.0.0.1:4318 --redact --retain-days 30"
)
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            "-V",
            help="Serve this variant (repeatable; default: every variant with weight > 0).",
        ),
    ] = None,
    weight: Annotated[
        list[str] | None, typer.Option("--weight", help="Override a weight: NAME=W (repeatable).")
    ] = None,
    config: ConfigOpt = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(help="File with one API key per line (or set PROMPTDAG_API_KEYS)."),
    ] = None,
    allow_variant_header: Annotated[
        bool, typer.Option(help="Let requests force a variant with X-Promptdag-Variant.")
    ] = False,
    protect_ops: Annotated[
        bool, typer.Option(help="Require the API key on /healthz, /readyz, /v1/version, /metrics.")
    ] = False,
    insecure_no_auth: Annotated[
        bool, typer.Option(help="Serve without API keys (local experiments only).")
    ] = False,
    max_in_flight: Annotated[
        int, typer.Option(help="Requests processed at once; more get 503 + Retry-After.")
    ] = 64,
    max_upload_bytes: Annotated[int, typer.Option(help="Largest accepted request body.")] = 20
    * 1024
    * 1024,
    traces: Annotated[
        bool, typer.Option(help="Record every request and LLM call in the trace store.")
    ] = True,
    redact: Annotated[
        bool, typer.Option(help="Store only hashes of prompts and responses in traces.")
    ] = False,
    retain_days: Annotated[
        float | None, typer.Option(help="Delete traces older than this many days.")
    ] = None,
    otlp_endpoint: Annotated[
        str | None, typer.Option(help="Also export spans over OTLP/HTTP to this endpoint.")
    ] = None,
    graceful_timeout: Annotated[
        int, typer.Option(help="Seconds to let in-flight requests finish on shutdown.")
    ] = 30,
) -> None:
    """Serve summaries over HTTP: every variant's Driver built once, A/B assignment, traces."""
    import uvicorn

    from drivers.service.app import create_app, preflight
    from drivers.service.settings import ServiceSettings, load_api_keys

    with _user_errors():
        weights = {k: float(v) for k, v in _overrides(weight).items()}
        settings = ServiceSettings(
            api_keys=load_api_keys(api_key_file),
            variants=tuple(variant) if variant else None,
            weights=weights,
            config=_overrides(config),
            allow_variant_header=allow_variant_header,
            protect_ops=protect_ops,
            insecure_no_auth=insecure_no_auth,
            max_in_flight=max_in_flight,
            max_upload_bytes=max_upload_bytes,
            traces=traces,
            redact=redact,
            retain_days=retain_days,
            otlp_endpoint=otlp_endpoint,
        )
        served = asyncio.run(preflight(settings))
    _err(
        f"serving {', '.join(f'{n} ({w:.0%})' for n, w in served.items())} on http://{host}:{port} (docs: /docs)"
    )
    # uvicorn re-raises SIGTERM after its graceful shutdown; a drained, flushed stop exits 0.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        uvicorn.run(
            create_app(settings),
            host=host,
            port=port,
            log_level="warning",
            timeout_graceful_shutdown=graceful_timeout,
            lifespan="on",
        )
    finally:
        signal.signal(signal.SIGTERM, previous)


@prompts_app.command(
    "list", epilog="Examples:\n\n  promptdag prompts list\n\n  promptdag prompts list --json"
)
def prompts_list(json_out: JsonOpt = False) -> None:
    """Every prompt node of every pack: versions, where each is defined, which variants use it."""
    with _user_errors():
        project = load_project()
        catalog = discover_prompts(project)
        variants = load_variants(project.variants_path)
        if catalog.problems:
            raise ConfigError(list(catalog.problems))
    rows: list[dict[str, Any]] = []
    for pack, nodes in catalog.packs.items():
        for node in sorted(nodes):
            for version in catalog.versions(pack, node):
                pv = nodes[node][version]
                used_by = sorted(
                    v.name
                    for v in variants.variants.values()
                    if v.config.get("prompt_pack", "default") == pack
                    and v.config.get(f"{node}_version") == version
                )
                rows.append(
                    {
                        "pack": pack,
                        "node": node,
                        "version": version,
                        "defined_at": f"{project.relpath(pv.file)}:{pv.line}",
                        "inputs": list(pv.inputs),
                        "description": pv.description,
                        "variants": used_by,
                        "default": variants.default in used_by,
                    }
                )
    if json_out:
        typer.echo(json.dumps({"default_variant": variants.default, "prompts": rows}, indent=2))
        return
    for r in rows:
        star = "*" if r["default"] else " "
        typer.echo(
            f"{star} {r['pack']:<8} {r['node']}@{r['version']:<4} {r['defined_at']:<28} "
            f"variants: {', '.join(r['variants']) or '-'}"
        )
        typer.echo(f"    {r['description']}")
    _err(f"* = used by the default variant ({variants.default})")


@prompts_app.command(
    "show",
    epilog="Examples:\n\n  promptdag prompts show chunk_summary_prompt --version v2\n\n"
    "  promptdag prompts show final_summary_prompt --version v1 --fixture story_with_query\n\n"
    "  promptdag prompts show final_summary_prompt --variant german",
)
def prompts_show(
    node: Annotated[str, typer.Argument(help="A prompt node, e.g. chunk_summary_prompt.")],
    version: Annotated[
        str | None, typer.Option("--version", help="The version, e.g. v2 (default: the variant's).")
    ] = None,
    fixture: Annotated[
        str | None, typer.Option("--fixture", help="A fixture set from prompts/fixtures.toml.")
    ] = None,
    variant: VariantOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print a prompt version rendered on a fixture input, exactly as the model would get it."""
    with _user_errors():
        overrides = _overrides(config)
        if version:
            overrides[f"{node}_version"] = version
        pipeline = build_pipeline(variant=variant, overrides=overrides)
        if node not in pipeline.prompts:
            raise ConfigError(
                [
                    f"{node!r} is not a prompt node of pack {pipeline.config['prompt_pack']!r}. "
                    f"Prompt nodes: {', '.join(sorted(pipeline.prompts))}."
                ]
            )
        fixtures = load_fixtures(pipeline.project)
        name = fixture or next(iter(fixtures), None)
        if name is None or name not in fixtures:
            raise ConfigError(
                [
                    f"fixture {name!r} is not in prompts/fixtures.toml. Defined: {', '.join(fixtures) or 'none'}."
                ]
            )
        rendered = asyncio.run(render_prompts(pipeline, fixtures[name]))
    pv = pipeline.prompts[node]
    _err(
        f"# {node}@{pv.version} (pack {pv.pack}, {pipeline.project.relpath(pv.file)}:{pv.line}) on fixture {name}"
    )
    typer.echo(rendered[node])


@prompts_app.command("snapshot", hidden=True)
def prompts_snapshot() -> None:
    """Print this tree's prompt snapshot as JSON (used by the gate, in a subprocess per git ref)."""
    from ci.snapshot import take_snapshot

    with _user_errors():
        snapshot = take_snapshot()
    typer.echo(json.dumps(snapshot, sort_keys=True))


@prompts_app.command(
    "lock",
    epilog="Examples:\n\n  promptdag prompts lock\n\n  promptdag prompts lock --check\n\n"
    "  promptdag prompts lock --check --base origin/main",
)
def prompts_lock(
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Fail (exit 1) if the lock is stale or a released version was edited."
        ),
    ] = False,
    base: Annotated[
        str, typer.Option(help="The ref whose lock defines the released versions.")
    ] = "HEAD",
) -> None:
    """Write prompts.lock (or check it): the hashes of every prompt version and variant."""
    from ci.lockfile import LOCK_FILE, check_lock, lock_from_snapshot, read_lock, render_lock
    from ci.snapshot import take_snapshot

    with _user_errors():
        project = load_project()
        snapshot = take_snapshot(project.root)
        if snapshot.get("problems"):
            raise ConfigError(snapshot["problems"])
        fresh = lock_from_snapshot(snapshot)
        path = project.root / LOCK_FILE
        if not check:
            path.write_text(render_lock(fresh), encoding="utf-8")
            _err(
                f"wrote {LOCK_FILE}: {len(fresh['prompts'])} prompt versions, {len(fresh['variants'])} variants"
            )
            return
        result = check_lock(read_lock(path), fresh, _base_lock(project.root, base, LOCK_FILE))
    if result.ok:
        _err(f"{LOCK_FILE} is up to date ({len(fresh['prompts'])} prompt versions)")
        return
    for message in result.messages():
        _err(f"error: {message}")
    raise typer.Exit(1)


@prompts_app.command(
    "diff",
    epilog="Examples:\n\n  promptdag prompts diff origin/main\n\n  promptdag prompts diff v1.2 HEAD --html report.html\n\n"
    "  promptdag prompts diff origin/main --json > review.json",
)
def prompts_diff(
    base: Annotated[str, typer.Argument(help="The git ref to compare from, e.g. origin/main.")],
    head: Annotated[
        str | None, typer.Argument(help="The git ref to compare to (default: the working tree).")
    ] = None,
    html_out: Annotated[
        Path | None, typer.Option("--html", help="Also write the HTML report here.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The review report of a prompt change: rendered diffs, tokens and cost, inputs, variants, lineage, DAG."""
    from ci.refs import project_subdir, ref_worktree, repo_root, snapshot_tree
    from ci.report import compare
    from drivers.config import data_dir

    with _user_errors():
        project = load_project()
        repo, sub = repo_root(project.root), project_subdir(project.root)
        cache = data_dir(project.root)
        with ref_worktree(repo, base) as base_tree, contextlib.ExitStack() as stack:
            head_root = (
                stack.enter_context(ref_worktree(repo, head)) / sub if head else project.root
            )
            review = compare(
                snapshot_tree(base_tree / sub, cache),
                snapshot_tree(head_root, cache),
                base_label=base,
                head_label=head or "working tree",
            )
    if html_out is not None:
        html_out.write_text(review.to_html(), encoding="utf-8")
        _err(f"wrote {html_out}")
    if json_out:
        typer.echo(json.dumps(review.to_json(), indent=2, sort_keys=True))
    else:
        typer.echo(review.to_markdown())


def _base_lock(root: Path, ref: str, name: str) -> dict[str, Any] | None:
    """The lock as committed at `ref`, or None outside git / when that ref has none."""
    from ci.refs import git, project_subdir, repo_root
    from drivers.errors import GateError

    try:
        repo = repo_root(root)
    except GateError:
        return None
    path = (project_subdir(root) / name).as_posix()
    try:
        text = git(repo, "show", f"{ref}:{path}")
    except GateError as exc:
        if "does not exist" in str(exc) or "exists on disk, but not in" in str(exc):
            return None
        raise
    data: dict[str, Any] = json.loads(text)
    return data


@app.command(
    epilog="Examples:\n\n  promptdag gate origin/main --report-dir out/\n\n"
    "  promptdag gate HEAD~1 --all --cache replay-only\n\n"
    "  OPENAI_API_KEY=... promptdag gate origin/main --judge-backend openai --judge-model gpt-4o-mini\n\n"
    "Exit codes: 0 pass, 1 gate failed, 2 could not run."
)
def gate(
    base: Annotated[
        str, typer.Argument(help="The git ref the change is judged against, e.g. origin/main.")
    ],
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
) -> None:
    """Gate a prompt change: lock check, review report, selected evals (bar from BASE), regression judge."""
    from ci.gate import GateOptions, run_gate
    from ci.gate_report import write_reports

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
    )
    with _user_errors():
        if cache not in ("off", "use", "replay-only"):
            raise ConfigError([f"--cache {cache!r}: use off, use or replay-only."])
        result = run_gate(options)
        paths = write_reports(result, report_dir)
    for reason in result.reasons():
        _err(f"gate: {reason}")
    _err(
        f"gate {'passed' if result.passed else 'FAILED'} against {base}; reports: {', '.join(str(p) for p in paths)}"
    )
    raise typer.Exit(0 if result.passed else 1)


@variants_app.command("list", epilog="Examples:\n\n  promptdag variants list --json")
def variants_list(json_out: JsonOpt = False) -> None:
    """Every named variant, its weight and its config."""
    with _user_errors():
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
        _err("interrupted")
        sys.exit(130)
    except Exception as exc:  # the last line of defence: say what broke, in one line
        if os.environ.get("PROMPTDAG_DEBUG"):
            traceback.print_exc()
        _err(
            f"internal error: {type(exc).__name__}: {exc}. Re-run with PROMPTDAG_DEBUG=1 and report it."
        )
        sys.exit(70)
