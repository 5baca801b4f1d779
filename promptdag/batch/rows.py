"""One row per input in a batch's Parquet output: the input's id and content hash, its status
and error, every declared output, usage, variant, prompt versions and fingerprint.

Columns, in order:

| column | type | what |
|---|---|---|
| input_index | int64 | the input's position in the listing (from 0) |
| input_id | string | its path as listed, or its row's id (`<file>#<row>` without one) |
| content_hash | string | sha256 of the run's inputs (files by their bytes); null if unreadable |
| status | string | `ok` or `error` |
| error_type, error_message | string | the exception's class and message (null when ok) |
| output_<name> | by the node's return type | each declared output: `str`, `int`, `float`, `bool` (or `X \\| None`) as such, anything else as JSON text |
| pipeline, variant, model | string | what ran (model: of the last LLM call) |
| prompt_versions | string | JSON: each prompt node → its selected version |
| fingerprint_id | string | the run's provenance fingerprint id (null when the run failed) |
| build_id | string | the fingerprint of the build (git, config, graph, prompts, libraries): `--resume` matches it |
| llm_calls, cached_calls, input_tokens, output_tokens | int64 | usage (failed runs too: the calls answered before the failure) |
| cost_usd | float64 | estimated, from the variants file's prices (null: no price for the model) |
| notes | string | JSON list of the run's notes |
| llm_seconds, latency_s | float64 | time in LLM calls; the run's wall time |
| worker | string | which worker ran it (host:pid, or Ray node:pid) |
| batch_run | string | which `promptdag batch` invocation wrote the row |
| finished_at | timestamp (UTC) | when the row was made |

The columns from `input_index` to `notes` are the *results*: the same inputs give the same
results on every engine (byte for byte with the offline model). The last six are timing and
placement (`TIMING_COLUMNS`).
"""

from __future__ import annotations

import datetime as dt
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from promptdag.pipeline import Pipeline, RunResult

__all__ = [
    "OUTPUT_PREFIX",
    "TIMING_COLUMNS",
    "OutputColumns",
    "RowContext",
    "arrow_schema",
    "error_row",
    "ok_row",
]

OUTPUT_PREFIX = "output_"
TIMING_COLUMNS = ("llm_seconds", "latency_s", "worker", "batch_run", "finished_at")
_SCALARS: dict[type, str] = {bool: "bool", int: "int64", float: "float64", str: "string"}
_HEAD = [
    ("input_index", "int64"),
    ("input_id", "string"),
    ("content_hash", "string"),
    ("status", "string"),
    ("error_type", "string"),
    ("error_message", "string"),
]
_TAIL = [
    ("pipeline", "string"),
    ("variant", "string"),
    ("model", "string"),
    ("prompt_versions", "string"),
    ("fingerprint_id", "string"),
    ("build_id", "string"),
    ("llm_calls", "int64"),
    ("cached_calls", "int64"),
    ("input_tokens", "int64"),
    ("output_tokens", "int64"),
    ("cost_usd", "float64"),
    ("notes", "string"),
    ("llm_seconds", "float64"),
    ("latency_s", "float64"),
    ("worker", "string"),
    ("batch_run", "string"),
    ("finished_at", "timestamp"),
]


def _scalar(annotation: Any) -> type | None:
    """The scalar type a node returns (`int`, `int | None`, `Optional[str]`), else None."""
    if annotation in _SCALARS:
        return typing.cast(type, annotation)
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in _SCALARS:
            return typing.cast(type, args[0])
    return None


@dataclass(frozen=True)
class OutputColumns:
    """The pipeline's declared outputs (and its answer) and how each is stored: as its scalar
    type, or as JSON text. Read from the node's return annotation, so every part agrees."""

    names: tuple[str, ...]
    answer: str
    scalars: dict[str, type]  # output → its scalar type; the others are JSON

    @classmethod
    def of(cls, pipeline: Pipeline) -> OutputColumns:
        spec = pipeline.spec
        names = tuple(dict.fromkeys([*spec.outputs, spec.answer]))
        graph = pipeline.graph
        scalars = {}
        for name in names:
            kind = _scalar(graph[name].type)
            if kind is not None:
                scalars[name] = kind
        return cls(names, spec.answer, scalars)

    def column(self, name: str) -> str:
        return f"{OUTPUT_PREFIX}{name}"

    def types(self) -> list[tuple[str, str]]:
        return [
            (self.column(n), _SCALARS[self.scalars[n]] if n in self.scalars else "string")
            for n in self.names
        ]

    def encode(self, name: str, value: Any, jsonable: Any) -> Any:
        """The stored value of output `name`: the scalar itself, or `jsonable` as JSON text.
        A value of another type than the node declares raises TypeError."""
        kind = self.scalars.get(name)
        if kind is None:
            return json.dumps(jsonable, ensure_ascii=False, sort_keys=True)
        if value is None:
            return None
        fits = isinstance(value, kind) and not (kind is not bool and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not fits:
            raise TypeError(
                f"output {name!r} is a {type(value).__name__}, but its node is annotated "
                f"{kind.__name__}: fix the node's return annotation or its value."
            )
        return kind(value)  # plain str/int, not a subclass


def arrow_schema(columns: OutputColumns, metadata: Mapping[str, str] | None = None) -> pa.Schema:
    """The Parquet schema of a batch's rows."""
    import pyarrow as pa

    kinds = {
        "int64": pa.int64(),
        "string": pa.string(),
        "float64": pa.float64(),
        "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    fields = [pa.field(n, kinds[t]) for n, t in [*_HEAD, *columns.types(), *_TAIL]]
    meta = {k.encode(): v.encode() for k, v in (metadata or {}).items()}
    return pa.schema(fields, metadata=meta or None)


@dataclass(frozen=True)
class RowContext:
    """What every row of one worker shares: the build, and where it runs."""

    pipeline: str
    variant: str
    prompt_versions: str  # JSON
    build_id: str
    batch_run: str
    worker: str
    columns: OutputColumns


def _base(
    ctx: RowContext, index: int, input_id: str, digest: str | None, latency_s: float
) -> dict[str, Any]:
    return {
        "input_index": index,
        "input_id": input_id,
        "content_hash": digest,
        "pipeline": ctx.pipeline,
        "variant": ctx.variant,
        "prompt_versions": ctx.prompt_versions,
        "build_id": ctx.build_id,
        "latency_s": round(latency_s, 4),
        "worker": ctx.worker,
        "batch_run": ctx.batch_run,
        "finished_at": dt.datetime.now(dt.UTC),
    }


def _usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "llm_calls": usage["calls"],
        "cached_calls": usage["cached_calls"],
        "input_tokens": usage["input_tokens"],
        "output_tokens": usage["output_tokens"],
        "cost_usd": usage["cost_usd"],
        "llm_seconds": usage["llm_seconds"],
    }


def ok_row(
    ctx: RowContext,
    index: int,
    input_id: str,
    digest: str,
    result: RunResult,
    latency_s: float,
) -> dict[str, Any]:
    """The row of a run that produced its outputs. TypeError: an output is not of its node's
    declared type."""
    data = result.as_dict()
    answer = ctx.columns.answer
    values = {**result.outputs, answer: result.answer}
    jsonable = {**data["outputs"], answer: data["answer"]}
    row = _base(ctx, index, input_id, digest, latency_s)
    for name in ctx.columns.names:
        row[ctx.columns.column(name)] = ctx.columns.encode(name, values[name], jsonable[name])
    row.update(
        status="ok",
        error_type=None,
        error_message=None,
        model=result.model,
        fingerprint_id=result.fingerprint["id"],
        notes=json.dumps(result.notes, ensure_ascii=False),
        **_usage(result.usage),
    )
    return row


def error_row(
    ctx: RowContext,
    index: int,
    input_id: str,
    digest: str | None,
    error_type: str,
    message: str,
    usage: Mapping[str, Any],
    model: str | None,
    latency_s: float,
) -> dict[str, Any]:
    """The row of a run that failed: its error, and the usage of the calls it made."""
    row = _base(ctx, index, input_id, digest, latency_s)
    row.update({ctx.columns.column(n): None for n in ctx.columns.names})
    row.update(
        status="error",
        error_type=error_type,
        error_message=message,
        model=model,
        fingerprint_id=None,
        notes="[]",
        **_usage(usage),
    )
    return row
