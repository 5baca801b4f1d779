"""drivers/summarize_folder.py: one Pipeline, one JSON line per document, failures typed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_folder_is_summarized_line_by_line_and_a_bad_file_is_reported(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(REPO / "examples" / "the-man-without-a-body.pdf", docs / "story.pdf")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (docs / "note.txt").write_text("Cats sleep a lot. They also purr loudly when content.")
    proc = subprocess.run(
        [sys.executable, "drivers/summarize_folder.py", str(docs)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PROMPTDAG_DATA_DIR": str(tmp_path / "data")},
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(d["file"], d["status"]) for d in lines] == [
        ("broken.pdf", "error"), ("note.txt", "ok"), ("story.pdf", "ok"),
    ]  # fmt: skip
    assert lines[0]["error"] == "PdfUnreadableError" and "Traceback" not in proc.stderr
    assert "head" in lines[2]["summary"].lower() and len(lines[2]["fingerprint"]) == 16
    assert proc.returncode == 1 and "1 failed (variant baseline)" in proc.stderr
