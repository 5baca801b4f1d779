"""drivers/batch.py: the summarizer over a folder into one Parquet file, a bad file reported."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(600)
def test_a_folder_becomes_one_row_per_document_and_a_bad_file_is_its_rows_error(
    tmp_path: Path,
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(REPO / "examples" / "the-man-without-a-body.pdf", docs / "story.pdf")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    (docs / "note.txt").write_text("Cats sleep a lot. They also purr loudly when content.")
    out = tmp_path / "runs" / "docs.parquet"
    proc = subprocess.run(
        [sys.executable, "drivers/batch.py", str(docs), str(out), "--workers", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
        env={"PATH": "/usr/bin:/bin", "PROMPTDAG_DATA_DIR": str(tmp_path / "data")},
    )
    assert proc.returncode == 1, proc.stderr
    rows = {Path(r["input_id"]).name: r for r in pq.read_table(out).to_pylist()}
    assert sorted(rows) == ["broken.pdf", "note.txt", "story.pdf"]
    assert (
        rows["broken.pdf"]["status"] == "error"
        and rows["broken.pdf"]["error_type"] == "PdfUnreadableError"
    )
    assert rows["story.pdf"]["status"] == rows["note.txt"]["status"] == "ok"
    assert rows["story.pdf"]["output_document_pages"] > 0 and rows["note.txt"]["output_summary"]
    assert "2 ok · 1 failed" in proc.stderr and "Traceback" not in proc.stderr
