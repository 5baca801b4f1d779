"""`promptdag traces` as a user runs it: list, show, stats, export, prune and erase on a
temporary store found through PROMPTDAG_DATA_DIR (or --db), one-line errors and exit codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from promptdag.llm.cache import ResponseCache
from promptdag.traces_cli import traces_app
from promptdag.tracing.store import TraceWriter
from tests.promptdag.tracing.rows import KNOWN, call_row, request_row

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(autouse=True)
def _data_dir(known_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(known_db.parent))
    monkeypatch.chdir(REPO)


def traces(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(traces_app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize("command", ["list", "show", "stats", "export", "prune", "erase"])
def test_every_command_has_an_examples_block(command: str) -> None:
    code, out, _ = traces(command, "--help")
    assert code == 0 and "Examples:" in out and "promptdag traces " in out


def test_list_prints_a_table_and_json() -> None:
    code, out, _ = traces("list", "--limit", "2")
    assert code == 0
    assert "request_id" in out.splitlines()[0] and len(out.splitlines()) == 3
    code, out, _ = traces("list", "--since", "1d", "--json")
    assert code == 0 and len(json.loads(out)) == len(KNOWN) - 1


def test_show_prints_the_request_its_calls_and_texts() -> None:
    code, out, _ = traces("list", "--json", "--limit", "1")
    request_id = json.loads(out)[0]["request_id"]
    code, out, _ = traces("show", request_id[:8], "--text")
    assert code == 0
    assert f"request_id: {request_id}" in out and "chunk_summary_prompt@v2" in out
    assert "--- prompt 0 (chunk_summary[0]) ---" in out and "the professor sent a cat" in out
    code, out, _ = traces("show", request_id, "--json")
    data = json.loads(out)
    assert data["request"]["request_id"] == request_id and len(data["calls"]) == 2
    assert data["request"]["prompt_versions"]["chunk_summary_prompt"]["version"] == "v2"


def test_show_of_an_unknown_request_is_one_line_and_exit_3() -> None:
    code, out, err = traces("show", "feedfacecafe")
    assert code == 3 and out == ""
    assert err.startswith("error: no request 'feedfacecafe'") and len(err.splitlines()) == 1


def test_stats_by_variant_and_json() -> None:
    code, out, _ = traces("stats")
    assert code == 0 and "p95_latency_s" in out and "error_rate" in out
    code, out, _ = traces("stats", "--by", "model", "--json")
    by_model = {r["model"]: r for r in json.loads(out)}
    assert by_model["gpt-4o-mini"]["requests"] == 2
    assert by_model["gpt-4o-mini"]["p50_latency_s"] == pytest.approx(15.0)


def test_export_picks_the_format_from_the_file_name(tmp_path: Path) -> None:
    target = tmp_path / "calls.parquet"
    code, _, err = traces("export", "-o", str(target), "--table", "llm_calls")
    assert code == 0 and f"wrote {2 * len(KNOWN)} llm_calls rows to {target} (parquet)" in err
    assert len(pd.read_parquet(target)) == 2 * len(KNOWN)
    code, _, _ = traces("export", "--format", "csv", "-o", str(tmp_path / "r.txt"))
    assert code == 0 and len(pd.read_csv(tmp_path / "r.txt")) == len(KNOWN)


def test_prune_deletes_old_traces(known_db: Path) -> None:
    code, _, err = traces("prune", "--retain-days", "1", "--db", str(known_db))
    assert code == 0 and "deleted 1 requests and 2 LLM calls older than 1 days" in err
    code, out, _ = traces("list", "--json")
    assert len(json.loads(out)) == len(KNOWN) - 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["list", "--since", "yesterday"], 2, "error: --since 'yesterday' is not a duration"),
        (["stats", "--by", "colour"], 2, "error: --by 'colour' is not a grouping"),
        (["export", "-o", "x.xlsx", "--format", "xlsx"], 2, "error: --format 'xlsx'"),
        (
            ["prune", "--retain-days", "0"],
            2,
            "error: retain_days=0: use a number of days above 0",
        ),
    ],
)
def test_bad_options_are_one_line(args: list[str], code: int, message: str) -> None:
    exit_code, _, err = traces(*args)
    assert exit_code == code and err.startswith(message) and len(err.splitlines()) == 1


def test_a_missing_database_says_how_to_get_traces(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "traces.sqlite"
    for command in (["list"], ["stats"], ["show", "abcdef"], ["prune", "--retain-days", "1"]):
        code, _, err = traces(*command, "--db", str(missing))
        assert code == 3, command
        assert err.startswith(f"error: no traces yet at {missing}: run `promptdag serve`")


def test_the_default_store_is_in_the_data_dir_else_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTDAG_DATA_DIR", str(tmp_path / "empty"))
    code, _, err = traces("list")
    assert code == 3 and str(tmp_path / "empty" / "traces.sqlite") in err
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.promptdag]\n", encoding="utf-8")
    monkeypatch.delenv("PROMPTDAG_DATA_DIR")
    monkeypatch.delenv("PROMPTDAG_PROJECT", raising=False)
    monkeypatch.chdir(project)
    code, _, err = traces("stats")
    assert code == 3 and str(project / ".promptdag" / "traces.sqlite") in err


def _subjects(data: Path) -> None:
    """Two requests (and cache entries) of user-7 and one of user-8 next to the known rows."""
    writer = TraceWriter(data / "traces.sqlite").start()

    async def main() -> None:
        for i, subject in enumerate(["user-7", "user-8", "user-7"]):
            await writer.submit(request_row(f"s{i}", subject_id=subject), [call_row()])

    asyncio.run(main())
    writer.close()
    cache = ResponseCache(data / "llm-cache.sqlite", "use")
    for i, subject in enumerate(["user-7", "user-8", "user-7", None]):
        cache.put(f"k{i}", {}, {"text": "t", "finish_reason": "stop"}, subject=subject)
    cache.close()


def test_erase_removes_one_subjects_traces_and_cache_entries(known_db: Path) -> None:
    _subjects(known_db.parent)
    code, out, _ = traces("erase", "--subject", "user-7")
    assert code == 0
    assert out.splitlines() == [
        f"erased 2 requests and 2 LLM calls of subject 'user-7' from {known_db}",
        f"erased 2 cache entries of subject 'user-7' from {known_db.parent / 'llm-cache.sqlite'}",
    ]
    code, out, _ = traces("list", "--json", "--limit", "100")
    assert sorted(r["request_id"] for r in json.loads(out) if r["request_id"].startswith("s")) == [
        "s1"
    ]
    code, out, _ = traces("erase", "--subject", "user-8", "--json")
    report = json.loads(out)
    assert code == 0 and report["subject"] == "user-8"
    assert report["traces"] == {
        "path": str(known_db),
        "found": True,
        "requests": 1,
        "llm_calls": 1,
    }
    assert (report["cache"]["found"], report["cache"]["entries"]) == (True, 1)
    cache = ResponseCache(known_db.parent / "llm-cache.sqlite", "use")
    assert len(cache) == 1
    cache.close()


def test_erase_without_a_database_or_cache_says_so(tmp_path: Path) -> None:
    missing = tmp_path / "none" / "traces.sqlite"
    code, out, _ = traces("erase", "--subject", "user-7", "--db", str(missing))
    assert code == 0
    assert out.splitlines() == [
        f"no trace database at {missing}",
        f"no response cache at {missing.with_name('llm-cache.sqlite')}",
    ]
    assert not missing.parent.exists()
    code, _, err = traces("erase", "--subject", " ")
    assert code == 2 and err.startswith("error: --subject is empty")
