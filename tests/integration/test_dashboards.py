"""TensorBoard dashboards: gradient flow per time step, confusion matrix, HPARAMS, plot_runs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.api_pb2 import DataType
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from rnnlab.callbacks import GradientFlow
from rnnlab.train import train
from tests.conftest import ROOT, TINY_RECALL, compose_config


def events(run_dir):
    accumulator = EventAccumulator(
        str(run_dir / "tensorboard"), size_guidance={"images": 0, "histograms": 0}
    )
    accumulator.Reload()
    return accumulator


def run_with_gradient_flow(run_dir, model):
    overrides = [*TINY_RECALL, f"model={model}", "callbacks=diagnostics", "trainer.max_epochs=2"]
    train(compose_config([*overrides, "~callbacks.progress_bar", "data.num_train=512"], run_dir))


def keep_gradient_flow(monkeypatch):
    """The rows of every run's GradientFlow at its end, and every heat map it drew."""
    rows, figures = [], []
    original_end, original_figure = GradientFlow.on_train_end, GradientFlow.figure

    def keep_rows(self, trainer, module):
        rows.append(list(self.rows))
        original_end(self, trainer, module)

    def keep_figure(self):
        figures.append(original_figure(self))
        return figures[-1]

    monkeypatch.setattr(GradientFlow, "on_train_end", keep_rows)
    monkeypatch.setattr(GradientFlow, "figure", keep_figure)
    return rows, figures


def test_gradient_flow_shows_the_vanilla_rnn_vanishing(make_cfg, tmp_path, monkeypatch):
    rows, figures = keep_gradient_flow(monkeypatch)
    run_with_gradient_flow(tmp_path / "run_a", "rnn")
    rnn_rows = rows[0]
    accumulator = events(tmp_path / "run_a")
    tags = accumulator.Tags()
    assert "gradient_flow/heatmap" in tags["images"]
    assert "gradient_flow/norm_by_step" not in tags["histograms"]  # it lost the time axis
    assert any(tag.startswith("weights/") for tag in tags["histograms"])
    assert any(tag.startswith("gradients/") for tag in tags["histograms"])
    # one line per epoch over the time steps: x is t = 0..T-1, y log10 of the mean norm
    for epoch, profile in enumerate(rnn_rows):
        series = accumulator.Scalars(f"gradient_flow/log10_norm_by_step/epoch_{epoch}")
        assert [event.step for event in series] == list(range(len(profile)))
        assert len(profile) == 30  # data.max_len: every step of the longest sequence
        expected = [math.log10(value) for value in profile]
        assert [event.value for event in series] == pytest.approx(expected, rel=1e-5)
    ratios = accumulator.Scalars("gradient_flow/log10_first_over_last")
    assert [event.step for event in ratios] == [0, 1]
    assert ratios[-1].value == pytest.approx(
        math.log10(rnn_rows[-1][0] / rnn_rows[-1][-1]), rel=1e-5
    )
    run_with_gradient_flow(tmp_path / "run_b", "lstm")
    rnn, lstm = rnn_rows[-1], rows[1][-1]
    # the key sits at step 0; the loss reads the state after the last step (>= 20)
    rnn_ratio, lstm_ratio = rnn[0] / rnn[19], lstm[0] / lstm[19]
    assert rnn_ratio < lstm_ratio / 100, (rnn_ratio, lstm_ratio)
    assert (rnn[1:20] >= rnn[:19]).all()  # the RNN's gradient grows towards the loss
    # each heat map names its cell and run, and both share the configured colour range
    assert len(figures) == 4  # one a run and epoch
    rnn_figure, lstm_figure = figures[1], figures[3]
    assert rnn_figure.axes[0].get_title().startswith("rnn | run_a\n")
    assert lstm_figure.axes[0].get_title().startswith("lstm | run_b\n")
    assert rnn_figure.axes[0].images[0].get_clim() == (-8.0, -2.0)
    assert lstm_figure.axes[0].images[0].get_clim() == (-8.0, -2.0)
    # plot_runs over the two runs (as over a multirun): one figure per epoch, each run's last ratio
    tags = ["gradient_flow/log10_norm_by_step/*", "gradient_flow/log10_first_over_last"]
    command = ["scripts/plot_runs.py", str(tmp_path), "--tags", *tags, "--last"]
    result = subprocess.run(
        [sys.executable, *command, "--out", str(tmp_path / "plots")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert {p.name for p in (tmp_path / "plots").glob("*.png")} == {
        "gradient_flow_log10_norm_by_step_epoch_0.png",
        "gradient_flow_log10_norm_by_step_epoch_1.png",
        "gradient_flow_log10_first_over_last.png",
    }
    last = {
        tuple(line.split("\t")[:2]): float(line.split("\t")[2])
        for line in result.stdout.splitlines()
        if "\t" in line
    }
    lstm_ratio_tag = events(tmp_path / "run_b").Scalars("gradient_flow/log10_first_over_last")
    # printed to 6 significant digits
    assert last["run_a", "gradient_flow/log10_first_over_last"] == pytest.approx(
        ratios[-1].value, rel=1e-5
    )
    assert last["run_b", "gradient_flow/log10_first_over_last"] == pytest.approx(
        lstm_ratio_tag[-1].value, rel=1e-5
    )


def test_gradient_flow_colours_do_not_follow_the_run(tmp_path):
    """Two runs whose gradients differ by 10^5 draw the same norm in the same colour."""
    colours = []
    for scale in (1e-7, 1e-2):
        callback = GradientFlow(max_steps=8)
        callback._record(torch.full((4, 8, 3), scale) * torch.arange(1, 9).view(1, 8, 1))
        callback.rows.append(callback.epoch_profile())
        image = callback.figure().axes[0].images[0]
        assert image.get_clim() == (-8.0, -2.0)
        colours.append(image.cmap(image.norm(math.log10(3e-5))))
    assert colours[0] == colours[1]
    relative = GradientFlow(max_steps=8, log10_range=None, relative=True)
    relative._record(torch.full((4, 8, 3), 1e-3) * torch.arange(1, 9).view(1, 8, 1))
    relative.rows.append(relative.epoch_profile())
    grid = relative.figure().axes[0].images[0].get_array()
    assert grid[0, -1] == pytest.approx(0.0)  # the last step over itself
    assert grid[0, 0] == pytest.approx(math.log10(1 / 8))
    with pytest.raises(ValueError, match="callbacks.gradient_flow.log10_range"):
        GradientFlow(log10_range=(0.0, -1.0))


def test_confusion_matrix_image_and_hparams_columns(make_cfg, tmp_path):
    train(make_cfg([*TINY_RECALL, "trainer.max_epochs=1", "~callbacks.progress_bar"]))
    accumulator = events(tmp_path)
    assert "val/confusion_matrix" in accumulator.Tags()["images"]
    scalars = set(accumulator.Tags()["scalars"])
    # SCALARS opens on the run's metrics: no `epoch` card, no hp/* copies of final metrics
    assert "epoch" not in scalars
    assert not [tag for tag in scalars if tag.startswith("hp/")]
    hparams = {
        tag: HParamsPluginData.FromString(content)
        for tag, content in accumulator.PluginTagToContent("hparams").items()
    }
    experiment = hparams["_hparams_/experiment"].experiment
    columns = {info.name.tag for info in experiment.metric_infos}
    # the columns are the run's own best validation and test scalars, each named once
    assert columns == {"val/acc_best", "test/acc", "test/f1", "test/loss"}
    assert columns <= scalars
    # booleans are booleans (torch's summary alone stores bool as a number: 0.0000 in HPARAMS)
    types = {info.name: DataType.Name(info.type) for info in experiment.hparam_infos}
    assert types["bidirectional"] == "DATA_TYPE_BOOL"
    assert types["hidden_size"] == "DATA_TYPE_FLOAT64" and types["cell"] == "DATA_TYPE_STRING"
    started = hparams["_hparams_/session_start_info"].session_start_info.hparams
    assert started["bidirectional"].WhichOneof("kind") == "bool_value"
    assert started["bidirectional"].bool_value is False
    assert started["hidden_size"].number_value == 16


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
        # the validation value a tuned setting is chosen on is kept beside the test values
        assert 0 <= run["validation"]["val/acc_best"] <= 1
        assert 0 <= run["validation"]["best_epoch"] < run["epochs"]
        assert run["parameters"] == runs["1"]["parameters"] > 1000  # the model's size, stored
        assert {"commit", "torch", "lightning", "machine"} <= set(run["provenance"])
        assert run["provenance"]["machine"]["isa"]
    # the table shows the mean and the sample standard deviation over the two seeds
    mean = sum(accuracies) / 2
    sd = abs(accuracies[0] - accuracies[1]) / 2**0.5
    places = 1 - math.floor(math.log10(sd)) if sd else None  # the mean to the sd's 2nd digit
    shown = f"{mean:.{places}f} ± {sd:.{places}f}" if sd else f"{mean:.4g} ± 0"
    assert f"acc {shown} (2 seeds)" in rows["recall_20-30_gru"]
    assert "seed=<seed>" in rows["recall_20-30_gru"] and "chance 0.125" in rows["recall_20-30_gru"]
    # no data here: the row is skipped, and the skip keeps the seeds measured where it ran
    assert "mse 0.3810 ± 0.0028, mae not measured yet" in rows["ett_96"]
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
