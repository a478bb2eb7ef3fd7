"""scripts/bench_cells.py: a configuration that dies leaves a line saying so; the sweep goes on."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_failed_configuration_is_recorded_and_the_sweep_goes_on(tmp_path):
    out = tmp_path / "lines.jsonl"
    tiny = ["--lengths", "4", "--precisions", "32", "--batch", "2", "--embed", "3"]
    tiny += ["--hidden", "4", "--steps", "1", "--repeats", "1", "--out", str(out)]
    # an unknown cell fails in its own process, between two that run
    cells = ["--cells", "lstm", "nosuchcell", "mingru:chunked", "mingru:lgo", "lstm:log"]
    done = subprocess.run(
        [sys.executable, "scripts/bench_cells.py", *cells, *tiny],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    cells_run = ["lstm", "nosuchcell", "mingru:chunked", "mingru:lgo", "lstm:log"]
    assert [line["cell"] for line in lines] == cells_run
    assert "model.cell='nosuchcell'" in lines[1]["failed"]
    assert lines[2]["tokens_per_s"] > 0 and "failed" not in lines[2]
    # a misspelt scan, or a scan named for a fused cell, is no measurement under that label
    assert all("a scan" in line["failed"] for line in lines[3:])
    assert "| 32 | 4 | mingru:chunked |" in done.stdout
    assert "| 32 | 4 | nosuchcell | failed: " in done.stdout
