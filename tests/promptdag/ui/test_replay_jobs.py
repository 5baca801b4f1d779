"""The replay button does not hold up the page's server: the replay runs in the background, its
page shows it running (and reloads itself), every other page keeps answering meanwhile, and the
diff shows once it is done. The replay itself is a stand-in that waits for the test's signal
(the real one, a worktree and a process, is in tests/promptdag/replay and the browser tests)."""

from __future__ import annotations

import threading
import time

import pytest

import promptdag.replay.core as replay_core
from promptdag.replay.core import ReplayError, ReplayResult
from tests.promptdag.service.conftest import AUTH, POEM

WAIT_S = 120  # generous: the machine is shared; no test asserts how fast anything is


def _result(rid: str, at: str | None) -> ReplayResult:
    return ReplayResult(
        request_id=rid, pipeline="poem", variant="a", recorded_sha=None, at=at or "recorded",
        at_sha="f" * 40, same_prompts=True, prompt_changes=[], same_output=True,
        recorded_answer="the poem", replayed_answer="the poem", calls=1, cached_calls=1,
    )  # fmt: skip


def _settled(client, url: str) -> str:
    """The replay's page once it no longer says it is running (bounded by a count, not a clock)."""
    for _ in range(WAIT_S * 10):
        page = client.get(url, headers=AUTH)
        assert page.status_code == 200, page.text
        if "Replaying at" not in page.text:
            return page.text
        time.sleep(0.1)
    raise AssertionError(f"the replay at {url} never finished")


@pytest.fixture
def served(make_client, tiny_project):
    client = make_client(project=tiny_project, store_inputs="on")
    rid = client.post(POEM, json={"topic": "rain"}, headers=AUTH).json()["request_id"]
    return client, rid


def test_other_pages_answer_while_a_replay_runs(served, monkeypatch):
    client, rid = served
    started, release = threading.Event(), threading.Event()

    def slow_replay(request_id, *, at=None, project_root=None):
        started.set()
        assert release.wait(WAIT_S), "the test never let the replay finish"
        return _result(request_id, at)

    monkeypatch.setattr(replay_core, "replay_request", slow_replay)
    try:
        r = client.post(
            f"/ui/runs/{rid}/replay", data={"at": "HEAD"}, headers=AUTH, follow_redirects=False
        )
        assert r.status_code == 303 and "/ui/replays/" in r.headers["location"]
        job = r.headers["location"]
        assert started.wait(WAIT_S)
        running = client.get(job, headers=AUTH).text
        assert "Replaying at HEAD" in running and 'http-equiv="refresh"' in running
        # The replay holds its thread; the page's server answers everything else.
        assert client.get("/ui/", headers=AUTH).status_code == 200
        assert client.get(f"/ui/runs/{rid}", headers=AUTH).status_code == 200
        assert client.get("/ui/variants", headers=AUTH).status_code == 200
        # Asking again while it runs joins the same replay.
        again = client.post(
            f"/ui/runs/{rid}/replay", data={"at": "HEAD"}, headers=AUTH, follow_redirects=False
        )
        assert again.headers["location"] == job
    finally:
        release.set()
    page = _settled(client, job)
    assert "Same answer, byte for byte." in page and 'http-equiv="refresh"' not in page


def test_a_failed_replay_shows_why_and_unknown_replays_are_404(served, monkeypatch):
    client, rid = served

    def failing(request_id, *, at=None, project_root=None):
        raise ReplayError("cannot replay at 'nope': it is not a commit")

    monkeypatch.setattr(replay_core, "replay_request", failing)
    r = client.post(f"/ui/runs/{rid}/replay", data={"at": "nope"}, headers=AUTH)
    assert r.status_code == 200  # followed to the replay's page
    page = _settled(client, str(r.url))
    assert "Cannot replay" in page and "not a commit" in page
    assert client.get("/ui/replays/unknown", headers=AUTH).status_code == 404
    assert client.post("/ui/runs/nope/replay", data={"at": ""}, headers=AUTH).status_code == 404
    assert client.get(str(r.url)).status_code == 401  # behind the keys like every page
