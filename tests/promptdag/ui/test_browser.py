"""The traces page in headless Chromium, used as a keyboard user does, over the traces of real
service runs: the service (on a real socket, in a thread) serves the tiny project from a git
repository with --store-inputs, the offline model answers, and the page is read at /ui behind
the API key. Screenshots at 1280 px are checked for the key content (by colour), the DOM for the
text. Skipped when Chromium is missing, unless CI is set (then it fails: `make test` installs
it). One browser and one server for the module: Chromium and a replay are the slow parts.

Set PROMPTDAG_UI_SCREENSHOTS=DIR to keep the screenshots (the README's comes from here)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from promptdag.service.settings import ServiceSettings
from promptdag.ui.feedback import feedback_for
from tests.browsers import chromium_binary
from tests.promptdag.service.conftest import KEY, POEM, write_tiny_project
from tests.promptdag.service.threaded import ThreadedServer, threaded_server
from tests.promptdag.ui.cdp import Chromium, near, png_colours

HEADER = (0x1F, 0x29, 0x37)
LLM_NODE = (0xE9, 0xD5, 0xFF)
INSERTED, DELETED = (0xDC, 0xFC, 0xE7), (0xFE, 0xE2, 0xE2)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo, check=True, capture_output=True,
    )  # fmt: skip


@dataclass
class Site:
    server: ThreadedServer
    ids: dict[tuple[str, str], str]
    data: Path
    shots: Path

    def url(self, path: str) -> str:
        return f"{self.server.base_url}/ui{path}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("ui")
    repo = write_tiny_project(tmp / "tiny")
    (repo / ".gitignore").write_text(".promptdag/\n", encoding="utf-8")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "tiny")
    shots = Path(os.environ.get("PROMPTDAG_UI_SCREENSHOTS") or tmp / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTDAG_DATA_DIR", str(tmp / "data"))
        settings = ServiceSettings(
            api_keys=frozenset({KEY}), project=repo, store_inputs="on", allow_variant_header=True
        )
        with threaded_server(settings) as server:
            client = server.client(KEY)
            ids = {}
            for variant in ("a", "b"):
                for topic in ("harbour", "rain", "the sea"):
                    r = client.post(
                        POEM,
                        json={"topic": topic, "subject_id": f"user-{topic}"},
                        headers={"X-Promptdag-Variant": variant},
                    )
                    assert r.status_code == 200, r.text
                    ids[(variant, topic)] = r.json()["request_id"]
            assert client.post(POEM, json={"topic": "x" * 500}).status_code == 422
            # A prompt change committed after the runs: replay at HEAD shows what it changes.
            variants = repo / "prompts" / "variants.toml"
            text = variants.read_text(encoding="utf-8")
            variants.write_text(
                text.replace('poem_prompt_version = "v1"', 'poem_prompt_version = "v2"'), "utf-8"
            )
            _git(repo, "commit", "-q", "-am", "variant a: poem v2")
            yield Site(server, ids, tmp / "data", shots)


@pytest.fixture(scope="module")
def browser(site: Site, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chromium]:
    with Chromium(chromium_binary(), tmp_path_factory.mktemp("profile")) as chromium:
        chromium.headers({"Authorization": f"Bearer {KEY}"})
        yield chromium


def _shot(browser: Chromium, site: Site, name: str) -> tuple[int, int, dict]:
    width, height, colours = png_colours(browser.screenshot(site.shots / f"{name}.png"))
    assert width == 1280, width
    assert len(colours) > 30, f"{name}: the screenshot looks blank ({len(colours)} colours)"
    return width, height, colours


def test_runs_list_fits_1280_px_and_is_usable_with_the_keyboard(browser: Chromium, site: Site):
    browser.go(site.url("/"))
    assert browser.eval("document.querySelector('h1').textContent") == "Runs"
    rows = browser.eval("[...document.querySelectorAll('tbody tr, table tr')].length")
    assert rows >= 8  # 7 runs and the header
    text = browser.eval("document.body.innerText")
    assert all(rid[:12] in text for rid in site.ids.values())
    assert browser.eval("document.documentElement.scrollWidth") <= 1280
    _, _, colours = _shot(browser, site, "runs")
    assert near(colours, HEADER) > 1000, "no navigation bar in the screenshot"
    # Keyboard: the first Tab reaches the skip link, then the filters, then the runs.
    browser.press("Tab")
    assert browser.eval("document.activeElement.textContent") == "Skip to content"
    browser.tab_to("el.tagName === 'SELECT' && el.name === 'variant'")
    browser.tab_to(f"el.href && el.href.endsWith('/runs/{site.ids[('b', 'rain')]}')")
    browser.press("Enter", wait_load=True)
    assert browser.eval("location.pathname").endswith(site.ids[("b", "rain")])
    assert browser.eval("document.querySelector('h1').textContent").startswith("Run ")


def test_one_run_shows_its_dag_and_each_llm_call(browser: Chromium, site: Site):
    rid = site.ids[("a", "harbour")]
    browser.go(site.url(f"/runs/{rid}"))
    text = browser.eval("document.body.innerText")
    for words in ("poem_prompt@v1", "finish reason", "tokens in / out", "latency s", "cost"):
        assert words in text, words
    assert browser.eval("document.querySelectorAll('svg rect[fill=\"#e9d5ff\"]').length") == 1
    prompt = browser.eval("document.querySelector('pre[aria-label=prompt]').textContent")
    assert prompt.startswith("Write 3 lines about harbour.")
    answer = browser.eval("document.querySelector('pre[aria-label=answer]').textContent")
    assert answer.strip()
    assert KEY not in browser.eval("document.documentElement.outerHTML")
    assert browser.eval("document.documentElement.scrollWidth") <= 1280
    _, _, colours = _shot(browser, site, "run")
    assert near(colours, LLM_NODE) > 300, "the DAG's LLM node is not drawn"


def test_feedback_given_with_the_keyboard_is_stored_with_the_run(browser: Chromium, site: Site):
    rid = site.ids[("a", "rain")]
    browser.go(site.url(f"/runs/{rid}"))
    browser.tab_to("el.tagName === 'TEXTAREA'")
    browser.type("Misses the rain.")
    browser.tab_to("el.classList.contains('down')")
    browser.press("Enter", wait_load=True)
    assert (
        browser.eval("document.querySelector('button.down').getAttribute('aria-pressed')") == "true"
    )
    assert browser.eval("document.querySelector('textarea').value") == "Misses the rain."
    got = feedback_for(site.data, rid)
    assert got is not None and (got["rating"], got["comment"]) == (-1, "Misses the rain.")
    browser.go(site.url("/"))
    assert "▼ bad" in browser.eval("document.body.innerText")


def test_variants_compared_and_side_by_side(browser: Chromium, site: Site):
    browser.go(site.url("/variants"))
    cells = browser.eval("[...document.querySelectorAll('td:first-child')].map(c => c.textContent)")
    assert cells == ["(none)", "a", "b"]  # (none): the request refused before assignment
    text = browser.eval("document.body.innerText")
    assert "Error rate (95% CI)" in text and "p95 latency s" in text and "Cost per run" in text
    assert "(0.0%–" in text  # the interval of a variant with no errors
    _shot(browser, site, "variants")
    browser.go(site.url("/compare?a=a&b=b"))
    lefts = browser.eval(
        "[...document.querySelectorAll('.cols pre')].map(p => Math.round(p.getBoundingClientRect().left))"
    )
    assert len(lefts) == 6 and len(set(lefts)) == 2  # three inputs, A beside B
    _shot(browser, site, "compare")


def _replay_verdict(browser: Chromium, polls: int = 1200) -> str:
    """The replay page's verdict once it no longer says it is running (a page reloading itself
    may be caught between two documents: then ask again). Bounded by a count, not a clock."""
    verdict = ""
    for _ in range(polls):
        try:
            verdict = browser.eval(
                "(document.querySelector('.verdict') || {textContent: ''}).textContent"
            )
        except AssertionError:  # the document was replaced while evaluating
            verdict = ""
        if verdict and not verdict.startswith("Replaying"):
            return str(verdict)
        time.sleep(0.25)
    raise AssertionError(f"the replay never finished: {verdict!r}")


def test_the_replay_button_shows_the_diff_at_head(browser: Chromium, site: Site):
    rid = site.ids[("a", "the sea")]
    browser.go(site.url(f"/runs/{rid}"))
    assert browser.eval("document.querySelector('input[name=at]').value") == "HEAD"
    browser.tab_to("el.tagName === 'BUTTON' && el.textContent === 'Replay and diff'")
    browser.press("Enter", wait_load=True)
    # The replay runs beside the server: its page says so and reloads itself until the diff.
    assert "/ui/replays/" in browser.eval("location.pathname")
    verdict = _replay_verdict(browser)
    assert verdict.startswith("The answer differs"), verdict
    assert "Rendered prompts differ: poem_prompt" in browser.eval("document.body.innerText")
    assert browser.eval("document.querySelectorAll('pre ins').length") > 0
    prompt = browser.eval(
        "document.querySelector('pre[aria-label=\"Prompt word diff\"]').innerHTML"
    )
    assert "Write 3 <del>lines</del><ins>bullet points</ins> about the sea." in prompt, prompt
    deleted = browser.eval("document.querySelectorAll('pre del').length")
    _, _, colours = _shot(browser, site, "replay")
    assert near(colours, INSERTED) > 200, "the inserted words are not highlighted"
    assert (near(colours, DELETED) > 200) == (deleted > 0)
