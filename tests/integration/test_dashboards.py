"""TensorBoard dashboards: gradient flow per time step, confusion matrix, HPARAMS, plot_runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnlab.callbacks import GradientFlow
from rnnlab.train import train
from tests.conftest import ROOT, TINY_RECALL, compose_config


def events(run_dir):
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "histograms": 0}
    )
    accumulator.Reload()
    return accumulator


def run_with_gradient_flow(run_dir, model, monkeypatch):
    profiles = []
    original = GradientFlow.on_train_end

    def keep(self, trainer, module):
        profiles.append(self.rows[-1])
        original(self, trainer, module)

    monkeypatch.setattr(GradientFlow, "on_train_end", keep)
    overrides = [*TINY_RECALL, f"model={model}", "callbacks=diagnostics", "trainer.max_epochs=2"]
    train(compose_config([*overrides, "~callbacks.progress_bar", "data.num_train=512"], run_dir))
    return profiles[0]


def test_gradient_flow_shows_the_vanilla_rnn_vanishing(make_cfg, tmp_path, monkeypatch):
    rnn = run_with_gradient_flow(tmp_path / "rnn", "rnn", monkeypatch)
    accumulator = events(tmp_path / "rnn")
    assert "gradient_flow/heatmap" in accumulator.Tags()["images"]
    assert "gradient_flow/norm_by_step" in accumulator.Tags()["histograms"]
    assert any(tag.startswith("weights/") for tag in accumulator.Tags()["histograms"])
    assert any(tag.startswith("gradients/") for tag in accumulator.Tags()["histograms"])
    lstm = run_with_gradient_flow(tmp_path / "lstm", "lstm", monkeypatch)
    # the key sits at step 0; the loss reads the state after the last step (>= 20)
    rnn_ratio, lstm_ratio = rnn[0] / rnn[19], lstm[0] / lstm[19]
    assert rnn_ratio < lstm_ratio / 100, (rnn_ratio, lstm_ratio)
    assert (rnn[1:20] >= rnn[:19]).all()  # the RNN's gradient grows towards the loss


def test_confusion_matrix_image_and_val_best_hparam(make_cfg, tmp_path):
    train(make_cfg([*TINY_RECALL, "trainer.max_epochs=1", "~callbacks.progress_bar"]))
    accumulator = events(tmp_path)
    assert "val/confusion_matrix" in accumulator.Tags()["images"]
    hparams_files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert b"hp/val_best" in b"".join(p.read_bytes() for p in hparams_files)


def test_plot_runs_writes_one_png_per_metric(make_cfg, tmp_path):
    runs = []
    for model in ("rnn", "gru"):
        run_dir = tmp_path / model
        overrides = [*TINY_RECALL, f"model={model}", "trainer.max_epochs=2"]
        train(compose_config([*overrides, "~callbacks.progress_bar"], run_dir))
        runs.append(run_dir)
    out = tmp_path / "plots"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/plot_runs.py",
            *map(str, runs),
            "--tags",
            "val/*",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p.name for p in out.glob("*.png")} >= {"val_acc.png", "val_loss.png"}
    assert all(name.startswith("val_") for name in (p.name for p in out.glob("*.png")))


def test_reproduce_quick_runs_seeds_and_writes_the_results_table(tmp_path):
    # a row measured in an earlier run, where the data was present, and a README to update
    measured = {
        "rows": {
            "ett_96": {
                "command": "python train.py data=ett model=gru data.horizon=96 seed=<seed>",
                "anchor": "DLinear 0.386",
                "metrics": ["test/mse"],
                "runs": {
                    "1": {"status": "ok", "seconds": 50.0, "values": {"test/mse": 0.379}},
                    "2": {"status": "ok", "seconds": 52.0, "values": {"test/mse": 0.383}},
                },  # the row's other metrics (mae, windows) were not measured by these seeds
            }
        }
    }
    (tmp_path / "results.json").write_text(json.dumps(measured))
    readme = tmp_path / "README.md"
    readme.write_text("# title\n<!-- reproduce:start -->\nold\n<!-- reproduce:end -->\nafter\n")
    result = subprocess.run(
        [sys.executable, "scripts/reproduce.py", "--quick", "--only", "recall_20-30_gru", "ett_96"]
        + ["--seeds", "1", "2", "--out", str(tmp_path), "--readme", str(readme)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "RNNLAB_DATA_DIR"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "results.md").read_text().splitlines()
    assert len(table) == 2 + 2
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert list(rows) == ["ett_96", "recall_20-30_gru"]
    stored = json.loads((tmp_path / "results.json").read_text())
    runs = stored["rows"]["recall_20-30_gru"]["runs"]
    assert set(runs) == {"1", "2"}
    accuracies = [runs[seed]["values"]["test/acc"] for seed in ("1", "2")]
    for run in runs.values():
        assert run["status"] == "ok" and run["epochs"] >= 1 and run["precision"] == "32-true"
        assert {"commit", "torch", "lightning", "machine"} <= set(run["provenance"])
        assert run["provenance"]["machine"]["isa"]
    # the table shows the mean and the sample standard deviation over the two seeds
    mean = sum(accuracies) / 2
    sd = abs(accuracies[0] - accuracies[1]) / 2**0.5
    assert f"acc {mean:.4g} ± {sd:.2g} (2 seeds)" in rows["recall_20-30_gru"]
    assert "seed=<seed>" in rows["recall_20-30_gru"] and "chance 0.125" in rows["recall_20-30_gru"]
    # no data here: the row is skipped, and the skip keeps the seeds measured where it ran
    assert "mse 0.381 ± 0.0028, mae not measured yet" in rows["ett_96"]
    assert "(2 seeds)" in rows["ett_96"] and "skipped" not in rows["ett_96"]
    text = readme.read_text()
    assert text.startswith("# title\n<!-- reproduce:start -->\n| experiment |")
    assert text.endswith("<!-- reproduce:end -->\nafter\n") and "old" not in text
    assert "\n".join(table) in text
    # --table rewrites the tables from the results file and runs nothing
    (tmp_path / "results.md").unlink()
    readme.write_text("<!-- reproduce:start -->\n<!-- reproduce:end -->\n")
    result = subprocess.run(
        [sys.executable, "scripts/reproduce.py", "--table", "--quick", "--out", str(tmp_path)]
        + ["--readme", str(readme)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "results.md").read_text().splitlines() == table
    assert "\n".join(table) in readme.read_text()
    assert json.loads((tmp_path / "results.json").read_text()) == stored
