"""What a batch runs on: the items of a glob, a directory or a table file, each item's inputs,
and the hash that identifies those inputs.

- A glob (`'papers/*.pdf'`, `'docs/**/*.md'`) or a directory: one item per file, bound to the
  input the contract names for its suffix, else to the pipeline's `file_input`
  (`PipelineSpec.file_input_for`), with its `filename_input` set to the file's name. A
  directory takes the files (not recursive, no hidden ones) that bind to an input by suffix or
  media type. The item's id is its path as listed.
- A `.jsonl` / `.csv` / `.parquet` file: one item per row, whose columns are the pipeline's
  declared inputs. The item's id is the row's `id` column when the table has one that is not an
  input (`--id-column` names another), else `<file name>#<row number>` (from 1).

Items hold paths and rows, never file contents: a worker reads its item's file itself, under
the input's cap, when it runs it.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import mimetypes
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptdag.config import parse_assignments
from promptdag.contract import PipelineSpec
from promptdag.errors import ConfigError, InputError
from promptdag.inputs import read_input_file

__all__ = [
    "TABLE_SUFFIXES",
    "BatchItem",
    "BatchSource",
    "content_hash",
    "item_inputs",
    "open_source",
    "read_constants",
]

TABLE_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
DEFAULT_ID_COLUMN = "id"


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch: where its inputs come from (a file, or a table row's values)."""

    index: int  # its position in the listing, from 0
    id: str
    path: str | None = None
    values: dict[str, Any] | None = field(default=None, repr=False)
    problem: str | None = None  # a row that cannot be read (bad JSON): recorded as its error


@dataclass(frozen=True)
class BatchSource:
    """The listed items of a batch's input, re-readable (a table is streamed, not held)."""

    kind: str  # "files" or "table"
    where: str
    count: int
    _paths: tuple[str, ...] = ()
    _table: Path | None = None
    _format: str = ""
    _id_column: str | None = None

    def items(self) -> Iterator[BatchItem]:
        if self.kind == "files":
            for i, path in enumerate(self._paths):  # read by absolute path: a worker's cwd differs
                yield BatchItem(index=i, id=path, path=str(Path(path).absolute()))
            return
        assert self._table is not None
        for i, (values, problem) in enumerate(_rows(self._table, self._format)):
            row_id = f"{self._table.name}#{i + 1}"
            if self._id_column is not None and values is not None:
                values = dict(values)
                row_id = str(values.pop(self._id_column, None) or row_id)
            yield BatchItem(index=i, id=row_id, values=values, problem=problem)


def _bindable(path: Path, spec: PipelineSpec) -> bool:
    """Whether a file found in a directory is one the pipeline takes: an input declares its
    suffix, or it is of the file input's media type (any file when it declares none)."""
    suffix = path.suffix.lower()
    if any(suffix and suffix in s.suffixes for s in spec.inputs.values()):
        return True
    if spec.file_input is None:
        return False
    target = spec.inputs[spec.file_input]
    if not target.media_types:
        return True
    return mimetypes.guess_type(path.name)[0] in target.media_types


def _files(spec: PipelineSpec, where: str) -> list[str]:
    path = Path(where)
    if path.is_dir():
        found = sorted(
            str(p)
            for p in path.iterdir()
            if p.is_file() and not p.name.startswith(".") and _bindable(p, spec)
        )
        if not found:
            raise InputError(
                f"{where}: no file here that pipeline {spec.name!r} takes. Give a glob such "
                f"as '{path / '*.pdf'}' to choose the files."
            )
        return found
    found = sorted(p for p in glob.glob(where, recursive=True) if Path(p).is_file())
    if not found:
        raise InputError(
            f"{where}: no file matches. Give a directory, a glob in quotes ('papers/*.pdf'), "
            f"or a table file ({', '.join(TABLE_SUFFIXES)})."
        )
    for p in found:
        spec.file_input_for(Path(p))  # a ConfigError when the pipeline takes no file
    return found


def _jsonl(path: Path) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                yield None, f"{path.name} line {number} is not JSON: {exc}."
                continue
            if not isinstance(value, dict):
                yield None, f"{path.name} line {number} is not a JSON object."
                continue
            yield {k: v for k, v in value.items() if v is not None}, None


def _csv(path: Path) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    with path.open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            yield {k: v for k, v in row.items() if k is not None and v not in (None, "")}, None


def _parquet(path: Path) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
        for row in batch.to_pylist():
            yield {k: v for k, v in row.items() if v is not None}, None


def _rows(path: Path, fmt: str) -> Iterator[tuple[dict[str, Any] | None, str | None]]:
    return {"jsonl": _jsonl, "csv": _csv, "parquet": _parquet}[fmt](path)


def _columns(path: Path, fmt: str) -> list[str] | None:
    """A CSV's or Parquet file's columns (JSONL rows each have their own keys: None)."""
    if fmt == "csv":
        with path.open(encoding="utf-8", newline="") as f:
            return next(csv.reader(f), [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return None


def _table(spec: PipelineSpec, path: Path, fmt: str, id_column: str | None) -> BatchSource:
    columns = _columns(path, fmt)
    if id_column is not None and columns is not None and id_column not in columns:
        raise InputError(
            f"{path}: --id-column {id_column!r} is not a column: {', '.join(columns)}."
        )
    chosen = id_column
    if chosen is None and DEFAULT_ID_COLUMN not in spec.inputs:
        chosen = DEFAULT_ID_COLUMN  # rows without one are named by their number
    if columns is not None:
        unknown = sorted(c for c in columns if c not in spec.inputs and c != chosen)
        if unknown:
            raise InputError(
                f"{path}: column(s) {', '.join(unknown)} are not inputs of pipeline "
                f"{spec.name!r}. Its inputs: {', '.join(sorted(spec.inputs))}; an id column "
                f"({DEFAULT_ID_COLUMN!r}, or --id-column NAME) names the rows."
            )
    seen: dict[str, int] = {}
    count = 0
    for i, (values, _) in enumerate(_rows(path, fmt)):
        count += 1
        if chosen is None or values is None or chosen not in values:
            continue
        key = str(values[chosen])
        if key in seen:
            raise InputError(
                f"{path}: id {key!r} is in rows {seen[key] + 1} and {i + 1}; each row needs "
                f"its own id in column {chosen!r}."
            )
        seen[key] = i
    if count == 0:
        raise InputError(f"{path}: no rows.")
    return BatchSource("table", str(path), count, _table=path, _format=fmt, _id_column=chosen)


def open_source(spec: PipelineSpec, where: str, *, id_column: str | None = None) -> BatchSource:
    """The items of `where`: a table file's rows, else a directory's or a glob's files."""
    path = Path(where)
    fmt = TABLE_SUFFIXES.get(path.suffix.lower())
    if fmt is not None and path.is_file():
        return _table(spec, path, fmt, id_column)
    if id_column is not None:
        raise ConfigError([f"--id-column is for table inputs ({', '.join(TABLE_SUFFIXES)})."])
    files = _files(spec, where)
    return BatchSource("files", where, len(files), _paths=tuple(files))


def read_constants(spec: PipelineSpec, pairs: list[str]) -> dict[str, Any]:
    """`--input NAME=VALUE` pairs given to every item (NAME=@FILE reads a file)."""
    out: dict[str, Any] = {}
    for name, value in parse_assignments(pairs, flag="--input").items():
        declared = spec.inputs.get(name)
        if declared is not None and value.startswith("@") and declared.kind in ("file", "text"):
            out[name] = read_input_file(Path(value[1:]), declared)
        else:
            out[name] = value
    return out


def item_inputs(
    item: BatchItem, spec: PipelineSpec, constants: Mapping[str, Any]
) -> dict[str, Any]:
    """The inputs of one run: the item's file (or row) plus the inputs given to every item.
    Raises InputError for an unreadable file or row, or an input set twice."""
    if item.problem is not None:
        raise InputError(item.problem)
    own: dict[str, Any] = {}
    if item.path is not None:
        path = Path(item.path)
        target = spec.file_input_for(path)
        own[target.name] = read_input_file(path, target)
        if target.filename_input:
            own[target.filename_input] = path.name
    else:
        own = dict(item.values or {})
    twice = sorted(set(own) & set(constants))
    if twice:
        raise InputError(
            f"{item.id} sets {', '.join(twice)}, which --input gives every item: set each "
            "input in one place."
        )
    return {**constants, **own}


def _canonical(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def content_hash(inputs: Mapping[str, Any]) -> str:
    """sha256 of a run's inputs (files by their bytes): equal inputs, equal hashes."""
    canonical = json.dumps(
        _canonical(dict(inputs)), sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
