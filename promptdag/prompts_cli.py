"""`promptdag prompts …`: list, show, lock (and --check), diff, and the hidden snapshot command
the gate runs inside each git ref's worktree."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from promptdag.cli_common import ConfigOpt, JsonOpt, VariantOpt, err, overrides, user_errors
from promptdag.errors import ConfigError

__all__ = ["prompts_app"]

prompts_app = typer.Typer(
    help="Inspect prompt nodes and their versions.", no_args_is_help=True, rich_markup_mode=None
)


@prompts_app.command(
    "list", epilog="Examples:\n\n  promptdag prompts list\n\n  promptdag prompts list --json"
)
def prompts_list(json_out: JsonOpt = False) -> None:
    """Every prompt node of every pack: versions, where each is defined, which variants use it."""
    from promptdag.catalog import discover_prompts, version_key
    from promptdag.project import load_project
    from promptdag.variants import load_variants

    with user_errors():
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
                    and v.config.get(version_key(node)) == version
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
    err(f"* = used by the default variant ({variants.default})")


@prompts_app.command(
    "show",
    epilog="Examples (`promptdag prompts list` names the prompt nodes):\n\n"
    "  promptdag prompts show NODE\n\n"
    "  promptdag prompts show NODE --version v2\n\n"
    "  promptdag prompts show NODE --version v1 --fixture FIXTURE\n\n"
    "  promptdag prompts show NODE --variant VARIANT",
)
def prompts_show(
    node: Annotated[str, typer.Argument(help="A prompt node (see `promptdag prompts list`).")],
    version: Annotated[
        str | None, typer.Option("--version", help="The version, e.g. v2 (default: the variant's).")
    ] = None,
    fixture: Annotated[
        str | None,
        typer.Option("--fixture", help="A fixture set of the contract's fixtures file."),
    ] = None,
    variant: VariantOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Print a prompt version rendered on a fixture input, exactly as the model would get it."""
    from promptdag.catalog import load_fixtures, version_key
    from promptdag.factory import build_pipeline
    from promptdag.pipeline import render_prompts

    with user_errors():
        chosen = overrides(config)
        if version:
            chosen[version_key(node)] = version
        pipeline = build_pipeline(variant=variant, overrides=chosen)
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
            contract = pipeline.project.contract
            raise ConfigError(
                [
                    f"fixture {name!r} is not in {contract.relpath(contract.fixtures)}. "
                    f"Defined: {', '.join(fixtures) or 'none'}."
                ]
            )
        import asyncio

        rendered = asyncio.run(render_prompts(pipeline, fixtures[name], name))
    pv = pipeline.prompts[node]
    err(
        f"# {node}@{pv.version} (pack {pv.pack}, {pipeline.project.relpath(pv.file)}:{pv.line}) on fixture {name}"
    )
    typer.echo(rendered[node])


@prompts_app.command("snapshot", hidden=True)
def prompts_snapshot() -> None:
    """Print this tree's prompt snapshot as JSON (used by the gate, in a subprocess per git ref)."""
    from promptdag.gate.snapshot import take_snapshot

    with user_errors():
        snapshot = take_snapshot()
    typer.echo(json.dumps(snapshot, sort_keys=True))


@prompts_app.command(
    "lock",
    epilog="Examples:\n\n  promptdag prompts lock\n\n  promptdag prompts lock --check\n\n"
    "  promptdag prompts lock --check --base origin/main\n\n"
    "  promptdag prompts lock --accept-refactor PACK/NODE@VERSION --reason 'a helper "
    "extracted; the same text'",
)
def prompts_lock(
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Fail (exit 1) if the lock is stale, a released version was edited or removed "
            "while a variant selects it, or a variant does not build.",
        ),
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(
            help="The ref whose lock defines the released versions (default: HEAD, in git)."
        ),
    ] = None,
    accept_refactor: Annotated[
        list[str] | None,
        typer.Option(
            "--accept-refactor",
            metavar="PACK/NODE@VERSION",
            help="Record that this released version's source change is a pure refactor (every "
            "fixture renders identically); needs --reason. Repeatable.",
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(
            metavar="WHY", help="Why the refactor is safe: shown by `--check` and the gate."
        ),
    ] = None,
) -> None:
    """Write prompts.lock (or check it): the hashes of every prompt version and variant."""
    from promptdag.gate.lockfile import (
        LOCK_FILE,
        broken_variants,
        check_lock,
        lock_from_snapshot,
        read_lock,
        render_lock,
    )
    from promptdag.gate.snapshot import take_snapshot
    from promptdag.project import load_project

    with user_errors():
        project = load_project()
        snapshot = take_snapshot(project.root)
        if snapshot.get("problems"):
            raise ConfigError(snapshot["problems"])
        fresh = lock_from_snapshot(snapshot)
        path = project.root / LOCK_FILE
        broken = broken_variants(fresh)
        if broken and not check:
            for message in broken:
                err(f"error: {message}")
            err(
                f"error: {LOCK_FILE} not written: a lock cannot record a variant that does not build."
            )
            raise typer.Exit(1)
        if check and accept_refactor:
            raise ValueError("--accept-refactor writes the lock: run it without --check.")
        if not check:
            fresh = _with_refactors(
                fresh, read_lock(path), accept_refactor or [], reason, project.root, base
            )
            path.write_text(render_lock(fresh), encoding="utf-8")
            err(
                f"wrote {LOCK_FILE}: {len(fresh['prompts'])} prompt versions, {len(fresh['variants'])} variants"
            )
            return
        result = check_lock(read_lock(path), fresh, _base_lock(project.root, base, LOCK_FILE))
    for accepted in result.acknowledged:
        err(f"note: {accepted}")
    if result.ok:
        err(f"{LOCK_FILE} is up to date ({len(fresh['prompts'])} prompt versions)")
        return
    for message in result.messages():
        err(f"error: {message}")
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
    from promptdag.config import data_dir
    from promptdag.gate.refs import project_subdir, ref_worktree, repo_root, snapshot_tree
    from promptdag.gate.report import compare
    from promptdag.project import load_project

    with user_errors():
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
        err(f"wrote {html_out}")
    if json_out:
        typer.echo(json.dumps(review.to_json(), indent=2, sort_keys=True))
    else:
        typer.echo(review.to_markdown())


def _with_refactors(
    fresh: dict[str, Any],
    committed: dict[str, Any] | None,
    keys: list[str],
    reason: str | None,
    root: Path,
    base: str | None,
) -> dict[str, Any]:
    """`fresh` with the refactors recorded in the committed lock, plus one accepted for each of
    `keys` (checked against the base's lock: the source changed, the text did not)."""
    from promptdag.gate.lockfile import LOCK_FILE, refactor_entry

    refactors = dict((committed or {}).get("refactors", {}))
    if keys:
        if reason is None:
            raise ValueError("--accept-refactor needs --reason: say why the refactor is safe.")
        released = (_base_lock(root, base, LOCK_FILE) or {}).get("prompts", {})
        problems = []
        for key in keys:
            try:
                refactors[key] = refactor_entry(
                    key, released.get(key), fresh["prompts"].get(key), reason
                )
            except ValueError as exc:
                problems.append(str(exc))
        if problems:
            for problem in problems:
                err(f"error: {problem}")
            err(f"error: {LOCK_FILE} not written.")
            raise typer.Exit(1)
    return {**fresh, "refactors": dict(sorted(refactors.items()))} if refactors else fresh


def _base_lock(root: Path, ref: str | None, name: str) -> dict[str, Any] | None:
    """The lock as committed at `ref` (default HEAD), or None when that ref has none, or when
    there is no git repository and no ref was asked for."""
    from promptdag.errors import GateError
    from promptdag.gate.refs import git, project_subdir, repo_root

    try:
        repo = repo_root(root)
    except GateError as exc:
        if ref is None:
            return None
        raise GateError(f"--base {ref} needs a git repository: {exc}") from exc
    ref = ref or "HEAD"
    path = (project_subdir(root) / name).as_posix()
    try:
        text = git(repo, "show", f"{ref}:{path}")
    except GateError as exc:
        if "does not exist" in str(exc) or "exists on disk, but not in" in str(exc):
            return None
        raise
    data: dict[str, Any] = json.loads(text)
    return data
