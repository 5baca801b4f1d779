"""The HTML review report in a real browser: headless Chromium draws the coloured diff rows and
the DAG with its changed node. Skipped when Chromium is missing, unless CI is set (then it fails:
`make test` installs it)."""

from __future__ import annotations

import copy
import re
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from promptdag.gate.report import compare
from promptdag.gate.snapshot import take_snapshot
from tests.browsers import chromium_binary

ROOT = Path(__file__).resolve().parents[3]
V2 = "default/chunk_summary_prompt@v2"
_OLD = "Extract the key points with reasoning."
_NEW = "Extract the key points, with their evidence."
# RGB the page must show: diff words (added, removed) and the changed node of the DAG.
ADDED_ROW, REMOVED_ROW, CHANGED_NODE = (0xDC, 0xFC, 0xE7), (0xFE, 0xE2, 0xE2), (0xFD, 0xBA, 0x74)
LLM_NODE = (0xE9, 0xD5, 0xFF)  # only the DAG uses it


def _run(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}",
    ]  # fmt: skip
    return subprocess.run([browser, *flags, *args], capture_output=True, timeout=90, check=True)


def _chunks(png: bytes) -> dict[bytes, bytes]:
    """IHDR and the concatenated IDAT data of a PNG file."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    out: dict[bytes, bytes] = {b"IDAT": b""}
    pos = 8
    while pos < len(png):
        (size,) = struct.unpack(">I", png[pos : pos + 4])
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        out[kind] = out[b"IDAT"] + body if kind == b"IDAT" else body
        pos += 12 + size
    return out


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else b if pb <= pc else c


def _unfilter(kind: int, line: bytearray, prev: bytearray, bpp: int) -> bytearray:
    """Undo one row's PNG filter (0 none, 1 sub, 2 up, 3 average, 4 Paeth) in place."""
    for x in range(len(line)) if kind else ():
        a, b = (line[x - bpp] if x >= bpp else 0), prev[x]
        c = prev[x - bpp] if x >= bpp else 0
        line[x] = (line[x] + (0, a, b, (a + b) // 2, _paeth(a, b, c))[kind]) & 0xFF
    return line


def _pixels(png: bytes) -> list[bytes]:
    """Rows of RGB bytes of an 8-bit truecolour PNG, with or without alpha (what Chromium writes)."""
    chunks = _chunks(png)
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and colour in (2, 6), f"unexpected PNG format {depth=} {colour=}"
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(chunks[b"IDAT"]), width * bpp + 1
    rows, prev = [], bytearray(width * bpp)
    for y in range(height):
        prev = _unfilter(
            raw[y * stride], bytearray(raw[y * stride + 1 : (y + 1) * stride]), prev, bpp
        )
        rows.append(
            bytes(prev) if bpp == 3 else b"".join(prev[i : i + 3] for i in range(0, len(prev), 4))
        )
    return rows


def _colours(rows: list[bytes]) -> Counter[tuple[int, int, int]]:
    return Counter(tuple(row[i : i + 3]) for row in rows for i in range(0, len(row), 6))  # type: ignore[misc]


def _count_near(colours: Counter[tuple[int, int, int]], rgb: tuple[int, int, int]) -> int:
    return sum(
        n for c, n in colours.items() if all(abs(a - b) <= 4 for a, b in zip(c, rgb, strict=True))
    )


@pytest.fixture(scope="module")
def browser() -> str:
    return chromium_binary()


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The report of an edit to v2 (the baseline's chunk prompt) on this project."""
    base: dict[str, Any] = take_snapshot(ROOT)
    head = copy.deepcopy(base)
    for fixture, rendered in head["prompts"][V2]["rendered"].items():
        rendered["text"] = rendered["text"].replace(_OLD, _NEW)
        rendered["sha256"] = f"edited-{fixture}"
    path = tmp_path_factory.mktemp("report") / "report.html"
    path.write_text(compare(base, head, base_label="main", head_label="pr").to_html(), "utf-8")
    return path


def test_the_browser_renders_the_diff_rows_and_the_dag_svg(
    browser: str, page: Path, tmp_path: Path
) -> None:
    dom = _run(browser, tmp_path / "profile", "--dump-dom", page.as_uri()).stdout.decode()
    assert (
        '<tr class="change"><td class="sign">~</td><td>Summarize this text from an academic paper.'
        " Extract the key points<ins>,</ins> with <del>reasoning</del><ins>their evidence</ins>."
        in dom
    )
    assert "&lt;document&gt;" in dom
    svg = dom[dom.index("<svg") :]
    assert "chunk_summary_prompt" in svg and "#fdba74" in svg


def test_the_screenshot_shows_coloured_diff_rows_and_the_highlighted_dag(
    browser: str, page: Path, tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    _run(
        browser,
        tmp_path / "profile",
        f"--screenshot={shot}",
        "--window-size=1280,2000",
        page.as_uri(),
    )
    rows = _pixels(shot.read_bytes())
    assert len(rows) == 2000 and len(rows[0]) == 1280 * 3
    colours = _colours(rows)
    assert len(colours) > 50, f"the screenshot looks blank: {len(colours)} colours"
    for name, rgb in [("added row", ADDED_ROW), ("removed row", REMOVED_ROW),
                      ("changed DAG node", CHANGED_NODE), ("LLM DAG node", LLM_NODE)]:  # fmt: skip
        assert _count_near(colours, rgb) > 200, f"no {name} colour {rgb} in the screenshot"


@pytest.fixture(scope="module")
def gate_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The gate's report.html for the same edit, with one case's output before and after, and
    a script (added to this copy only: the report has none) that measures the layout at the
    window's width into the DOM."""
    from promptdag.gate.gate import GateResult, SuiteGate
    from promptdag.gate.gate_report import write_reports
    from promptdag.gate.lockfile import LockCheck
    from promptdag.gate.selection import Selection

    base: dict[str, Any] = take_snapshot(ROOT)
    head = copy.deepcopy(base)
    for fixture, rendered in head["prompts"][V2]["rendered"].items():
        rendered["text"] = rendered["text"].replace(_OLD, _NEW)
        rendered["sha256"] = f"edited-{fixture}"
    review = compare(base, head, base_label="main", head_label="pr")

    def case(output: str) -> dict[str, Any]:
        usage = {"calls": 2, "cached_calls": 0, "input_tokens": 300, "output_tokens": 40,
                 "cost_usd": 0.0}  # fmt: skip
        return {"case": "news-article", "status": "pass", "output": output, "run_error": None,
                "seconds": 0.2, "usage": usage, "assertions": []}  # fmt: skip

    def suite_result(output: str) -> dict[str, Any]:
        return {"passed": True, "pass_rate": 1.0, "threshold": 1.0,
                "cases_by_status": {"pass": 1}, "assertions_by_status": {"pass": 3},
                "cases": [case(output)]}  # fmt: skip

    long_words = " ".join(["The council voted to build the bridge over the river."] * 30)
    gate = SuiteGate(
        "summarize",
        Selection({"news-article": "summary is downstream of chunk_summary_prompt"}, {}),
        result=suite_result(long_words + " It opens in 2027."),
        base=suite_result(long_words + " It opens in 2026."),
    )
    result = GateResult("main", LockCheck(), review, [gate], [], "skipped", {"calls": 2,
                        "cached_calls": 0}, 0.2, approvals=["needs a judge: variant baseline"])  # fmt: skip
    out = tmp_path_factory.mktemp("gate-report")
    write_reports(result, out)
    measure = """<script>
    const right = (sel) => Math.max(...[...document.querySelectorAll(sel)].map(
        (e) => e.getBoundingClientRect().right), 0);
    const b = document.body;
    b.dataset.scrollWidth = document.documentElement.scrollWidth;
    b.dataset.verdict = right("h1.verdict");
    b.dataset.diff = right("table.diff tr.change");
    b.dataset.outputs = right(".outputs > div");
    b.dataset.dag = right(".dag-part svg");
    </script></body>"""
    page = out / "measured.html"
    page.write_text((out / "report.html").read_text("utf-8").replace("</body>", measure), "utf-8")
    return page


def test_a_reviewer_sees_the_verdict_the_diff_and_both_outputs_without_scrolling_sideways(
    browser: str, gate_page: Path, tmp_path: Path
) -> None:
    dom = _run(
        browser, tmp_path / "profile", "--window-size=1280,2000", "--dump-dom", gate_page.as_uri()
    ).stdout.decode()
    body = dom[dom.index("<body") : dom.index(">", dom.index("<body"))]
    measured = dict(re.findall(r'data-([a-z-]+)="([\d.]+)"', body))
    assert set(measured) == {"scroll-width", "verdict", "diff", "outputs", "dag"}, body
    assert float(measured["scroll-width"]) <= 1280, measured
    for part in ("verdict", "diff", "outputs", "dag"):
        assert 0 < float(measured[part]) <= 1280, (part, measured)
    assert "Prompt gate: needs a judge or a reviewer" in dom
    assert "It opens in <del>2026</del>." in dom and "It opens in <ins>2027</ins>." in dom
