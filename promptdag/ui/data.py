"""What the traces page shows, read from the trace store (read-only, safe while the service
writes), the stored inputs and the feedback: runs with filters, one run with its calls, the
variants compared (with 95% Wilson intervals on the error rates), two variants' answers on the
same inputs side by side, and cost per day."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from promptdag.inputs_store import INPUTS_FILE, InputsStore
from promptdag.tracing.query import parse_since, stats
from promptdag.tracing.store import TraceStore

__all__ = [
    "RunFilters",
    "Traces",
    "wilson",
]

_LIST = (
    "request_id", "started_at", "pipeline", "variant", "prompt_set", "git_sha", "git_dirty",
    "status", "http_status", "latency_s", "calls", "input_tokens", "output_tokens", "cost_usd",
    "error_type", "subject_id",
)  # fmt: skip


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion (sound at 0, 1 and small n)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class RunFilters:
    """The runs list's filters, each optional: equality, a prefix (sha) or a substring (prompt)."""

    pipeline: str = ""
    variant: str = ""
    prompt: str = ""  # a prompt node and version, NODE@vN
    sha: str = ""
    status: str = ""  # ok, error
    since: str = ""  # 30m, 24h, 7d

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (("pipeline", self.pipeline), ("variant", self.variant)):
            if value:
                clauses.append(f"{column} = ?")
                params.append(value)
        if self.status in ("ok", "error"):
            clauses.append("status = ?")
            params.append(self.status)
        if self.prompt:
            clauses.append("instr(prompt_set, ?) > 0")
            params.append(self.prompt)
        if self.sha:
            clauses.append("git_sha LIKE ? ESCAPE '\\'")
            params.append(_escape_like(self.sha.lower()) + "%")
        if self.since:
            clauses.append("started_ts >= ?")
            params.append(time.time() - parse_since(self.since).total_seconds())
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@dataclass
class Traces:
    """The project's trace store, stored inputs and feedback, read for the page."""

    traces_db: Path
    data: Path = field(init=False)

    def __post_init__(self) -> None:
        self.data = self.traces_db.parent

    def _conn(self) -> sqlite3.Connection:
        conn = TraceStore(self.traces_db).connect()
        conn.row_factory = sqlite3.Row
        return conn

    def exists(self) -> bool:
        return self.traces_db.is_file()

    def choices(self) -> dict[str, list[str]]:
        """The values the filters offer: pipelines, variants, prompt versions."""
        with self._conn() as conn:
            out = {
                c: [
                    r[0]
                    for r in conn.execute(
                        f"SELECT DISTINCT {c} FROM requests WHERE {c} IS NOT NULL ORDER BY 1"
                    )
                ]
                for c in ("pipeline", "variant")
            }
            sets = conn.execute("SELECT DISTINCT prompt_set FROM requests WHERE prompt_set != ''")
            out["prompt"] = sorted({p for (s,) in sets for p in s.split()})
        return out

    def runs(self, filters: RunFilters, limit: int = 200) -> list[dict[str, Any]]:
        where, params = filters.where()
        with self._conn() as conn:
            rows = conn.execute(
                f"SELECT {', '.join(_LIST)} FROM requests{where} ORDER BY started_ts DESC LIMIT ?",
                [*params, limit],
            ).fetchall()
        return [dict(r) for r in rows]

    def run(self, request_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        with self._conn() as conn:
            row = conn.execute(
                "SELECT * FROM requests WHERE request_id = ?", (request_id,)
            ).fetchone()
            if row is None:
                return None
            calls = conn.execute(
                "SELECT * FROM llm_calls WHERE request_id = ? ORDER BY call_index", (request_id,)
            ).fetchall()
        request = dict(row)
        if isinstance(request.get("prompt_versions"), str):
            request["prompt_versions"] = json.loads(request["prompt_versions"])
        return request, [dict(c) for c in calls]

    def variants_by_pipeline(
        self, since: str = "", pipeline: str = ""
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """`variants` of `pipeline`, or of each pipeline in turn: a comparison never mixes the
        runs of two pipelines (variants of one are not variants of the other)."""
        pipelines = [pipeline] if pipeline else self.choices()["pipeline"]
        return [(p, self.variants(since, p)) for p in pipelines]

    def variants(self, since: str = "", pipeline: str = "") -> list[dict[str, Any]]:
        """Per variant (of `pipeline`'s runs, when given): runs, error rates with 95%
        intervals, p50/p95 latency, tokens and cost per run."""
        window = parse_since(since) if since else None
        if not self.runs(RunFilters(pipeline=pipeline, since=since), limit=1):
            return []  # (stats cannot take quantiles of no rows)
        df = stats(self.traces_db, "variant", window, pipeline or None)
        out = []
        for row in df.to_dict("records"):
            n = int(row["requests"])
            item: dict[str, Any] = {"variant": row["variant"], "runs": n}
            for rate in ("error_rate", "input_error_rate", "server_error_rate"):
                value = float(row[rate])
                item[rate] = value
                item[f"{rate}_ci"] = wilson(value * n, n)
            item["p50_latency_s"] = row["p50_latency_s"]
            item["p95_latency_s"] = row["p95_latency_s"]
            item["tokens_per_run"] = (row["input_tokens"] + row["output_tokens"]) / n if n else None
            cost = row["cost_usd"]
            item["cost_usd"] = None if cost != cost else cost  # NaN: no known cost
            item["cost_per_run"] = None if item["cost_usd"] is None else item["cost_usd"] / n
            out.append(item)
        return out

    def costs_per_day(self, days: int = 30) -> list[dict[str, Any]]:
        since = time.time() - days * 86_400
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT substr(started_at, 1, 10) AS day, count(*) AS runs, "
                "sum(cost_usd) AS cost_usd, sum(coalesce(input_tokens, 0) + "
                "coalesce(output_tokens, 0)) AS tokens FROM requests WHERE started_ts >= ? "
                "GROUP BY day ORDER BY day",
                (since,),
            ).fetchall()
        return [dict(r) for r in rows]

    def _answers(self, request_ids: list[str]) -> dict[str, tuple[str, str]]:
        """Each request's answer as (text, where from): the stored result, else the last LLM
        call's response."""
        out: dict[str, tuple[str, str]] = {}
        inputs = self.data / INPUTS_FILE
        if inputs.is_file():
            store = InputsStore(inputs)
            try:
                for rid, result in store.results(request_ids).items():
                    out[rid] = (result["answer_text"], "answer")
            finally:
                store.close()
        missing = [r for r in request_ids if r not in out]
        if missing:
            with self._conn() as conn:
                marks = ",".join("?" * len(missing))
                rows = conn.execute(
                    f"SELECT request_id, response_text FROM llm_calls c WHERE request_id IN "
                    f"({marks}) AND call_index = (SELECT max(call_index) FROM llm_calls d "
                    "WHERE d.request_id = c.request_id)",
                    missing,
                ).fetchall()
            for rid, text in rows:
                if text is not None:
                    out[rid] = (text, "last LLM response")
        return out

    def side_by_side(
        self, a: str, b: str, limit: int = 50, pipeline: str = ""
    ) -> list[dict[str, Any]]:
        """The latest answers of variants `a` and `b` on the same inputs (the stored inputs'
        content, else the subject id, within one pipeline: `pipeline`'s when given), newest
        first."""
        only = " AND pipeline = ?" if pipeline else ""
        with self._conn() as conn:
            rows = conn.execute(
                "SELECT request_id, pipeline, variant, subject_id, started_at FROM requests "
                f"WHERE variant IN (?, ?) AND status = 'ok'{only} "
                "ORDER BY started_ts DESC LIMIT 5000",
                (a, b, *([pipeline] if pipeline else [])),
            ).fetchall()
        ids = [r["request_id"] for r in rows]
        digests = self._input_digests(ids)
        latest: dict[tuple[str, str], dict[str, Any]] = {}
        for r in rows:
            key = digests.get(r["request_id"]) or (
                f"{r['pipeline']}: subject {r['subject_id']}" if r["subject_id"] else ""
            )
            if key:
                latest.setdefault((key, r["variant"]), dict(r))
        keys = [k for (k, v) in latest if v == a and (k, b) in latest][:limit]
        answers = self._answers([latest[(k, v)]["request_id"] for k in keys for v in (a, b)])
        return [
            {
                "key": k,
                "a": latest[(k, a)],
                "b": latest[(k, b)],
                "a_answer": answers.get(latest[(k, a)]["request_id"]),
                "b_answer": answers.get(latest[(k, b)]["request_id"]),
            }
            for k in keys
        ]

    def _input_digests(self, request_ids: list[str]) -> dict[str, str]:
        inputs = self.data / INPUTS_FILE
        if not inputs.is_file() or not request_ids:
            return {}
        store = InputsStore(inputs)
        try:
            return store.input_digests(request_ids)
        finally:
            store.close()
