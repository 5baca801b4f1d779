"""A batch's output: rows written as they arrive, in part files, then one Parquet file.

While a batch runs, its rows go to `OUT.parts/` (beside `OUT`): a writer thread writes every
row that has arrived as soon as it is free (group commit: one row per part when rows are rare,
many when they come fast), each part to a temporary name renamed into place, so a part is whole
or absent; past 64 parts it merges them into one. A crash (even `kill -9`) therefore loses only
the runs in flight and the rows still in the writer's hands (milliseconds). Parts are not
fsynced: a power cut may lose what the OS had not written yet.

At the end, `compact` merges `OUT` (from an earlier run), the parts and the new rows into
`OUT`: each input once (its latest row), in input order; then it deletes the parts. Until then
`read` sees both, so `--resume` after a crash, or after a crash during the merge, reads
everything that was written.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptdag.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

__all__ = ["MERGE_AT", "PartWriter", "Previous", "ResultStore"]

MERGE_AT = 64
_META_KEY = "promptdag.batch"
_MANIFEST = "_batch.json"


@dataclass(frozen=True)
class Previous:
    """What an earlier run of the same output left: rows, and which inputs are done."""

    rows: int = 0
    done: frozenset[tuple[str, str]] = frozenset()  # (input_id, content_hash): ok, this build
    ok_elsewhere: int = 0  # ok rows of other builds
    builds: dict[str, Any] = field(default_factory=dict)  # build id → its build info


class ResultStore:
    """`out` and its parts directory."""

    def __init__(self, out: Path):
        self.out = out
        self.parts = out.with_name(out.name + ".parts")

    def _part_files(self) -> list[Path]:
        if not self.parts.is_dir():
            return []
        return sorted(self.parts.glob("part-*.parquet"))

    def exists(self) -> bool:
        return self.out.exists() or self.parts.exists()

    def remove(self) -> None:
        if self.out.exists():
            self.out.unlink()
        if self.parts.exists():
            shutil.rmtree(self.parts)

    def metadata(self) -> dict[str, Any]:
        """The pipeline and builds recorded in `out` and the parts' manifest."""
        import pyarrow.parquet as pq

        meta: dict[str, Any] = {}
        if self.out.exists():
            raw = (pq.read_schema(self.out).metadata or {}).get(_META_KEY.encode())
            if raw:
                meta = json.loads(raw)
        manifest = self.parts / _MANIFEST
        if manifest.exists():
            extra = json.loads(manifest.read_text(encoding="utf-8"))
            meta.setdefault("pipeline", extra.get("pipeline"))
            meta["builds"] = {**meta.get("builds", {}), **extra.get("builds", {})}
        return meta

    def read(self) -> pa.Table | None:
        """Every row written so far (`out`, then the parts), duplicates included."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = ([self.out] if self.out.exists() else []) + self._part_files()
        if not files:
            return None
        tables = [pq.read_table(f) for f in files]
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ConfigError(
                [f"{self.out}: its files have incompatible columns ({exc}). Write to a new --out."]
            ) from exc

    def previous(self, pipeline: str, build_id: str) -> Previous:
        """What an earlier run left, for `--resume`; a ConfigError if it ran another pipeline."""
        meta = self.metadata()
        if meta.get("pipeline") not in (None, pipeline):
            raise ConfigError(
                [
                    f"{self.out} holds rows of pipeline {meta['pipeline']!r}, not {pipeline!r}: "
                    "write to another --out."
                ]
            )
        table = self.read()
        if table is None:
            return Previous(builds=meta.get("builds", {}))
        rows = table.select(["input_id", "content_hash", "status", "build_id"]).to_pylist()
        done = frozenset(
            (r["input_id"], r["content_hash"])
            for r in rows
            if r["status"] == "ok" and r["build_id"] == build_id
        )
        elsewhere = sum(1 for r in rows if r["status"] == "ok" and r["build_id"] != build_id)
        return Previous(len(rows), done, elsewhere, meta.get("builds", {}))

    def start(self, pipeline: str, build_id: str, build: Mapping[str, Any]) -> None:
        """Create the parts directory and record the pipeline and this build in its manifest."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.parts.mkdir(exist_ok=True)
        meta = self.metadata()
        meta["pipeline"] = pipeline
        meta["builds"] = {**meta.get("builds", {}), build_id: dict(build)}
        _write_text(self.parts / _MANIFEST, json.dumps(meta, sort_keys=True, default=str))

    def compact(self, schema: pa.Schema) -> int:
        """Merge everything into `out`: each input once (its latest row), in input order, in
        the columns of `schema` (plus any older ones). Returns the number of rows; writes no
        `out` when there is no row at all."""
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        meta = self.metadata()
        table = self.read()
        if table is None:  # nothing ran (the batch could not start): no empty OUT to trip on
            if self.parts.exists():
                shutil.rmtree(self.parts)
            return 0
        table = pa.concat_tables([schema.empty_table(), table], promote_options="permissive")
        table = table.append_column("_pos", pa.array(range(len(table)), pa.int64()))
        table = table.sort_by([("finished_at", "ascending"), ("_pos", "ascending")])
        table = table.append_column("_ord", pa.array(range(len(table)), pa.int64()))
        latest = table.group_by("input_id").aggregate([("_ord", "max")])
        table = table.filter(pc.is_in(table["_ord"], value_set=latest["_ord_max"]))
        table = table.sort_by([("input_index", "ascending"), ("input_id", "ascending")])
        table = table.drop_columns(["_pos", "_ord"])
        blob = json.dumps(meta, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata({_META_KEY.encode(): blob})
        tmp = self.out.with_name(f".{self.out.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, self.out)
        if self.parts.exists():
            shutil.rmtree(self.parts)
        return len(table)

    def writer(self, schema: pa.Schema, batch_run: str) -> PartWriter:
        return PartWriter(self.parts, schema, batch_run)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class PartWriter:
    """Writes rows to part files from a thread (group commit); `close` writes the rest."""

    def __init__(self, parts: Path, schema: pa.Schema, batch_run: str):
        self.parts = parts
        self.schema = schema
        self.batch_run = batch_run
        self.error: BaseException | None = None
        self.written = 0
        self._pending: list[dict[str, Any]] = []
        self._seq = 0
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="batch-parts", daemon=True)
        self._thread.start()

    def add(self, row: dict[str, Any]) -> None:
        """Queue a row; raises the writer's error if it could not write (a full disk)."""
        with self._cond:
            if self.error is not None:
                raise self.error
            self._pending.append(row)
            self._cond.notify()

    def close(self) -> None:
        """Write what is queued, stop the thread, raise its error if it had one."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        if self.error is not None:
            raise self.error

    def _take(self) -> Iterator[list[dict[str, Any]]]:
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if not self._pending:
                    return
                rows, self._pending = self._pending, []
            yield rows

    def _loop(self) -> None:
        try:
            for rows in self._take():
                self._write(rows)
                self.written += len(rows)
                if len(list(self.parts.glob("part-*.parquet"))) > MERGE_AT:
                    self._merge()
        except BaseException as exc:  # handed to the batch, which stops and reports it
            with self._cond:
                self.error = exc

    def _name(self) -> Path:
        self._seq += 1
        return self.parts / f"part-{self.batch_run}-{self._seq:06d}.parquet"

    def _put(self, table: pa.Table) -> Path:
        import pyarrow.parquet as pq

        path = self._name()
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(table, tmp)
        os.replace(tmp, path)
        return path

    def _write(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa

        self._put(pa.Table.from_pylist(rows, schema=self.schema))

    def _merge(self) -> None:
        """Many small parts into one (the old ones are deleted once the new one is in place;
        a crash between the two leaves duplicates, which `compact` drops)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        files = sorted(self.parts.glob("part-*.parquet"))
        merged = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
        self._put(merged)
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
