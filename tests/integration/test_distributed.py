"""Two CPU processes over gloo (trainer=ddp_cpu): sharded batches, equal steps, one writer."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys

from tests.conftest import ROOT, TINY_RECALL


def test_ddp_cpu_fit_and_test_take_equal_steps_and_log_once(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "trainer=ddp_cpu",
            "trainer.max_epochs=2",
            "logger=csv",
            "~callbacks.progress_bar",
            *[o for o in TINY_RECALL if not o.startswith("trainer.accelerator")],
            "data.num_train=250",  # 8 batches of 32 (the last of 26): 4 a rank, none repeated
            f"hydra.run.dir={run_dir}",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    steps = dict(re.findall(r"rank (\d) of 2: (\d+) optimizer steps", output))
    assert steps == {"0": "8", "1": "8"}, output[-3000:]  # 4 batches x 2 epochs on each rank
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    val_rows = [row for row in rows if row.get("val/acc")]
    assert len(val_rows) == 2  # one row per validation epoch: logged by rank 0 only
