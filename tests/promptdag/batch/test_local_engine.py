"""The local engine: worker processes that build the pipeline once, per-item failures as rows,
limits shared by every worker, and the cost budget."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptdag.errors import ConfigError
from tests.fakes.openai_server import OpenAIServer
from tests.promptdag.batch.conftest import RunBatch
from tests.promptdag.batch.projects import GREET_MODEL, write_jsonl

pytestmark = pytest.mark.timeout(600)


def _names(path: Path, names: list[str]) -> Path:
    return write_jsonl(path, [{"id": n, "name": n} for n in names])


def _fake_model(server: OpenAIServer, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    return {"llm_backend": "openai", "llm_model": GREET_MODEL, "llm_base_url": server.base_url}


def test_failed_inputs_are_rows_with_their_error_and_the_batch_goes_on(
    greet_project: Path, tmp_path: Path, batch: RunBatch
) -> None:
    source = _names(tmp_path / "names.jsonl", ["ada", "bob", "boom", "cy", "die", "eve", "fay"])
    with source.open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    summary, rows = batch(greet_project, source, workers=2, in_flight=2)
    by_id = {r["input_id"]: r for r in rows}
    assert len(rows) == len(by_id) == summary.total == 8
    assert summary.ok == 5 and summary.failed == 3 and summary.exit_code == 1
    assert by_id["boom"]["error_type"] == "ValueError"
    assert by_id["boom"]["error_message"] == "the name boom breaks this node"
    # a worker that dies fails the item it was running, and is replaced
    assert by_id["die"]["error_type"] == "WorkerLost"
    assert "exited (code 3) while running this item" in by_id["die"]["error_message"]
    assert by_id["names.jsonl#8"]["error_type"] == "InputError"
    assert "line 8 is not JSON" in by_id["names.jsonl#8"]["error_message"]
    ok = [r for r in rows if r["status"] == "ok"]
    assert {r["input_id"] for r in ok} == {"ada", "bob", "cy", "eve", "fay"}
    for row in ok:
        assert row["output_shout"] == row["output_greeting"].upper()
        assert row["output_letters"] == len(row["input_id"])
        assert row["llm_calls"] == 1 and row["fingerprint_id"] and row["error_type"] is None
        assert json.loads(row["prompt_versions"]) == {"greeting_prompt": "v1"}
    assert len({r["worker"] for r in ok}) >= 2  # both first workers, maybe the replacement
    assert {r["build_id"] for r in rows} == {summary.build_id}


def test_the_concurrency_limit_holds_across_local_workers(
    greet_project: Path,
    tmp_path: Path,
    batch: RunBatch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OpenAIServer(default_delay_s=0.3) as server:
        config = _fake_model(server, monkeypatch)
        source = _names(tmp_path / "names.jsonl", [f"n{i:02d}" for i in range(12)])
        summary, rows = batch(
            greet_project, source, workers=2, overrides=config, limits=_limits(concurrency=2)
        )
    assert summary.ok == 12 and summary.exit_code == 0
    assert len(server.history) == 12
    assert server.max_in_flight == 2  # 8 items in flight wanted more; the limit held them
    assert (
        summary.cost_usd == pytest.approx(sum(r["cost_usd"] for r in rows))
        and rows[0]["cost_usd"] > 0
    )


def test_the_cost_budget_stops_handing_out_inputs_and_says_so(
    greet_project: Path,
    tmp_path: Path,
    batch: RunBatch,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with OpenAIServer(default_delay_s=0.05) as server:
        config = _fake_model(server, monkeypatch)
        source = _names(tmp_path / "names.jsonl", [f"n{i:02d}" for i in range(20)])
        summary, rows = batch(
            greet_project, source, workers=1, in_flight=2, overrides=config, max_cost_usd=0.16
        )
    per_item = rows[0]["cost_usd"]
    assert per_item > 0.01 and {r["cost_usd"] for r in rows} == {per_item}  # equal prompts
    assert summary.stopped is not None and "--max-cost-usd 0.16" in summary.stopped
    assert summary.ok == len(rows) == int(0.16 // per_item) and summary.ok >= 3
    assert summary.not_run == 20 - summary.ok
    assert summary.cost_usd is not None and summary.cost_usd <= 0.16 + 1e-9
    assert summary.exit_code == 1


def _limits(**kwargs: object):
    from promptdag.batch import Limits

    return Limits(**kwargs)  # type: ignore[arg-type]


def test_a_batch_that_cannot_start_leaves_no_output(
    greet_project: Path, tmp_path: Path, batch: RunBatch
) -> None:
    source = _names(tmp_path / "names.jsonl", ["ada"])
    with pytest.raises(ConfigError, match="needs a price for model 'no-such-model'"):
        batch(
            greet_project,
            source,
            workers=1,
            out=tmp_path / "out.parquet",
            overrides={"llm_model": "no-such-model"},
            max_cost_usd=1.0,
        )
    assert not (tmp_path / "out.parquet").exists()
    assert not (tmp_path / "out.parquet.parts").exists()


def test_fail_fast_stops_at_the_first_failure(
    greet_project: Path, tmp_path: Path, batch: RunBatch
) -> None:
    source = _names(tmp_path / "names.jsonl", ["boom", *(f"n{i}" for i in range(9))])
    summary, rows = batch(greet_project, source, workers=1, in_flight=1, fail_fast=True)
    assert [r["input_id"] for r in rows] == ["boom"] and rows[0]["status"] == "error"
    assert (
        summary.stopped is not None and "--fail-fast: boom failed (ValueError)" in summary.stopped
    )
    assert summary.failed == 1 and summary.not_run == 9 and summary.exit_code == 1


def test_an_unknown_llm_http_client_is_refused_before_the_batch_starts(
    greet_project: Path, tmp_path: Path, batch: RunBatch
) -> None:
    source = _names(tmp_path / "rows.jsonl", ["Ada"])
    with pytest.raises(ConfigError, match="auto, aiohttp, httpx"):
        batch(greet_project, source, http_client="curl")
    assert not list(tmp_path.glob("out-*"))
