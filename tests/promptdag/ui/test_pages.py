"""The traces page over HTTP, mounted in the service at /ui over the traces of real runs of the
tiny project (offline model): behind the API keys, every page renders what the traces hold,
feedback is stored, and nothing secret shows."""

from __future__ import annotations

import base64

import pytest

from promptdag.ui.data import wilson
from promptdag.ui.feedback import feedback_for
from tests.promptdag.service.conftest import AUTH, KEY, POEM, WORDS

BASIC = {"Authorization": "Basic " + base64.b64encode(f"me:{KEY}".encode()).decode()}


@pytest.fixture
def served(make_client, tiny_project):
    client = make_client(project=tiny_project, store_inputs="on", allow_variant_header=True)
    ids = {}
    for variant in ("a", "b"):
        for topic in ("harbour", "rain"):
            r = client.post(
                POEM,
                json={"topic": topic, "subject_id": f"user-{topic}"},
                headers={**AUTH, "X-Promptdag-Variant": variant},
            )
            assert r.status_code == 200, r.text
            ids[(variant, topic)] = r.json()["request_id"]
    bad = client.post(POEM, json={"topic": "x" * 500}, headers=AUTH)
    assert bad.status_code == 422
    files = {"doc": ("a.txt", b"one two", "text/plain")}
    data = {"passphrase": "open sesame"}
    assert client.post(WORDS, files=files, data=data, headers=AUTH).status_code == 200
    return client, ids


def test_the_page_needs_a_key_and_asks_the_browser_for_it(served):
    client, _ = served
    r = client.get("/ui/")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert (
        client.get(
            "/ui/", headers={"Authorization": "Basic " + base64.b64encode(b"me:wrong").decode()}
        ).status_code
        == 401
    )
    for headers in (AUTH, BASIC):
        r = client.get("/ui/", headers=headers)
        assert r.status_code == 200
        assert "script-src" not in r.headers["content-security-policy"]  # default-src 'none'
        assert "default-src 'none'" in r.headers["content-security-policy"]


def test_runs_list_filters(served):
    client, ids = served
    page = client.get("/ui/", headers=AUTH).text
    assert all(rid[:12] in page for rid in ids.values())
    page = client.get("/ui/?variant=b&status=ok", headers=AUTH).text
    assert ids[("b", "rain")][:12] in page and ids[("a", "rain")][:12] not in page
    page = client.get("/ui/?status=error", headers=AUTH).text
    assert "InvalidInputError" in page or "error 422" in page
    page = client.get("/ui/?prompt=poem_prompt%40v2", headers=AUTH).text
    assert ids[("b", "harbour")][:12] in page and ids[("a", "harbour")][:12] not in page
    assert client.get("/ui/?since=banana", headers=AUTH).status_code == 400


def test_one_run_shows_dag_calls_and_no_secret(served):
    client, ids = served
    rid = ids[("a", "harbour")]
    page = client.get(f"/ui/runs/{rid}", headers=AUTH).text
    assert "<svg" in page and "poem_response" in page  # the DAG, its LLM node filled
    assert "Write 3 lines about harbour" in page  # the rendered prompt
    assert "finish reason" in page and "tokens in / out" in page
    assert "Replay and diff" in page
    assert KEY not in page
    words = client.get("/ui/?pipeline=words", headers=AUTH).text
    wid = words.split("/ui/runs/")[1].split('"')[0]
    assert "open sesame" not in client.get(f"/ui/runs/{wid}", headers=AUTH).text
    case = client.get(f"/ui/runs/{wid}/case.toml", headers=AUTH).text
    assert "open sesame" not in case and "Secret inputs left out" in case and "passphrase" in case


def test_variants_compared_side_by_side_and_costs(served):
    client, ids = served
    page = client.get("/ui/variants", headers=AUTH).text
    assert "95% Wilson" in page and "<td>a</td>" in page and "<td>b</td>" in page
    page = client.get("/ui/compare?a=a&b=b", headers=AUTH).text
    assert page.count("<pre>") == 4  # two inputs, two answers each
    assert ids[("a", "rain")][:12] in page and ids[("b", "rain")][:12] in page
    page = client.get("/ui/costs", headers=AUTH).text
    assert "<svg" in page and "Cost per day" in page


def test_feedback_is_stored_with_the_run(served, tmp_path):
    client, ids = served
    rid = ids[("a", "rain")]
    r = client.post(
        f"/ui/runs/{rid}/feedback",
        data={"rating": "-1", "comment": "Too short."},
        headers=AUTH,
        follow_redirects=False,
    )
    assert r.status_code == 303
    got = feedback_for(tmp_path / "data", rid)
    assert got is not None and (got["rating"], got["comment"]) == (-1, "Too short.")
    assert "▼ bad" in client.get("/ui/", headers=AUTH).text
    foreign = client.post(
        f"/ui/runs/{rid}/feedback",
        data={"rating": "1"},
        headers={**AUTH, "Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert client.post(f"/ui/runs/{rid}/feedback", data={"rating": "1"}).status_code == 401


def test_wilson_interval():
    low, high = wilson(0, 10)
    assert low == 0.0 and 0.25 < high < 0.35
    low, high = wilson(5, 10)
    assert low < 0.5 < high
    assert wilson(0, 0) == (0.0, 1.0)


def test_promptdag_ui_without_keys_listens_on_this_machine_only(monkeypatch):
    from typer.testing import CliRunner

    from promptdag.cli import app as cli_app

    monkeypatch.delenv("PROMPTDAG_API_KEYS", raising=False)
    result = CliRunner().invoke(cli_app, ["ui", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "PROMPTDAG_API_KEYS" in result.output


def test_a_local_page_answers_only_to_its_own_host_names(tmp_path):
    from starlette.testclient import TestClient

    from promptdag.ui.app import UIConfig, create_ui

    config = UIConfig(
        traces_db=tmp_path / "traces.sqlite",
        project_root=tmp_path,
        hosts=("127.0.0.1", "localhost"),
    )
    client = TestClient(create_ui(config), base_url="http://127.0.0.1:8765")
    assert client.get("/").status_code == 200  # "No traces yet"
    assert "No traces yet" in client.get("/").text
    rebound = TestClient(create_ui(config), base_url="http://attacker.example")
    assert rebound.get("/").status_code == 400


def test_variants_are_compared_within_one_pipeline(served):
    client, _ = served
    page = client.get("/ui/variants", headers=AUTH).text
    assert "<h2>Pipeline poem</h2>" in page and "<h2>Pipeline words</h2>" in page
    poem = client.get("/ui/variants?pipeline=poem", headers=AUTH).text
    assert '<option value="poem" selected>' in poem and "Pipeline words" not in poem
    assert "<td>a</td><td class=num>2</td>" in poem and "<td>b</td><td class=num>2</td>" in poem
    words = client.get("/ui/variants?pipeline=words", headers=AUTH).text
    (row,) = words.split("</th></tr>")[1].split("</tr>")[:-1]
    assert "</td><td class=num>1</td>" in row  # its one run, in whichever variant it fell
    assert "No runs." in client.get("/ui/variants?pipeline=nope", headers=AUTH).text
    pairs = client.get("/ui/compare?a=a&b=b&pipeline=words", headers=AUTH).text
    assert "No inputs were answered by both variants" in pairs
