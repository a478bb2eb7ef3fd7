"""Daily use: what a run prints without a terminal, run names, the trainer knobs and presets."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch.callbacks import ProgressBar, RichProgressBar
from lightning.pytorch.profilers import SimpleProfiler

from rnnlab import progress
from rnnlab.naming import register_resolvers
from rnnlab.train import run, train
from rnnlab.utils import build
from tests.conftest import CONFIG_DIR, ROOT, TINY_RECALL
from tests.integration.test_text_data import write_names

LINE = re.compile(
    r"epoch (\d+)/3 step (\d+) \| train/loss \S+ \| val/acc (\S+) .*\| "
    r"best val/acc (\S+) \(epoch (\d+)\) \| lr \S+ \| \d+:\d\d:\d\d elapsed, ~\d+:\d\d:\d\d left"
)


def command(script: str, *overrides: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, script, *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory):
    """Three epochs of train.py with stdout and stderr piped (not a terminal)."""
    run_dir = tmp_path_factory.mktemp("piped")
    overrides = [*TINY_RECALL, "trainer.max_epochs=3", "logger=csv", f"hydra.run.dir={run_dir}"]
    result = command("train.py", *overrides)
    return run_dir, result.stdout + result.stderr


def test_a_piped_run_logs_one_line_per_validation_and_no_bar(piped_run):
    run_dir, output = piped_run
    lines = [LINE.search(line) for line in output.splitlines()]
    lines = [match for match in lines if match]
    assert [int(m.group(1)) for m in lines] == [0, 1, 2]
    assert [int(m.group(2)) for m in lines] == [8, 16, 24]  # 256 examples in batches of 32
    # the same lines reach the run's log file
    logged = (run_dir / "train.log").read_text()
    assert len([line for line in logged.splitlines() if LINE.search(line)]) == 3
    # the values are those the CSV logger recorded; best so far is their running maximum
    rows = [r for r in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if r["val/acc"]]
    accs = [float(r["val/acc"]) for r in rows]
    for match, epoch in zip(lines, range(3), strict=True):
        assert float(match.group(3)) == pytest.approx(accs[epoch], abs=5e-4)
        best = max(accs[: epoch + 1])
        assert float(match.group(4)) == pytest.approx(best, abs=5e-4)
        assert int(match.group(5)) == accs.index(best)
    for noise in ("━", "LeafSpec", "💡 Tip", "FLOPs", "_execution_whitelist_"):
        assert noise not in output


def test_a_run_says_where_it_writes_and_how_it_ended(piped_run):
    run_dir, output = piped_run
    assert f"run directory {run_dir}" in output
    assert re.search(
        r"data=recall \(num_classes=8, vocab_size=\d+\) \| lstm hidden_size=16 ", output
    )
    assert re.search(r"\| [\d,]+ parameters \| cpu \| precision 32-true", output)
    summary = json.loads((run_dir / "run.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = [r for r in csv.DictReader((run_dir / "csv" / "metrics.csv").open()) if r["val/acc"]]
    accs = [float(r["val/acc"]) for r in rows]
    best_epoch = accs.index(max(accs))
    assert summary["best_epoch"] == metrics["best_epoch"] == best_epoch
    assert summary["best_checkpoint"] == str(
        run_dir / "checkpoints" / f"epoch_{best_epoch:03d}.ckpt"
    )
    assert summary["test"] == {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert summary["wall_time_s"] > 0
    done = next(line for line in output.splitlines() if "done in" in line)
    assert summary["best_checkpoint"] in done and "test/acc" in done


def test_the_progress_bar_can_be_switched_off_by_the_trainer_flag_alone(make_cfg):
    cfg = make_cfg([*TINY_RECALL, "trainer.max_epochs=1", "trainer.enable_progress_bar=false"])
    assert "test/acc" in train(cfg)


@pytest.mark.parametrize(
    ("bar_in_callbacks", "enabled", "terminal", "bar_shown"),
    [
        (True, True, True, True),  # a terminal: the configured bar
        (False, True, True, False),  # callbacks.progress_bar=null: none, not Lightning's own
        (True, False, True, False),  # trainer.enable_progress_bar=false
        (True, True, False, False),  # piped: log lines instead
    ],
)
def test_a_bar_is_drawn_only_where_asked_for_and_in_a_terminal(
    monkeypatch, bar_in_callbacks, enabled, terminal, bar_shown
):
    monkeypatch.setattr(progress, "interactive", lambda: terminal)
    configured = [RichProgressBar()] if bar_in_callbacks else []
    callbacks, show = progress.progress_callbacks(configured, enabled, "val/acc", "max")
    trainer = L.Trainer(callbacks=callbacks, enable_progress_bar=show, logger=False)
    assert show is bar_shown
    assert isinstance(trainer.progress_bar_callback, RichProgressBar) is bar_shown
    assert bar_shown or not any(isinstance(c, ProgressBar) for c in trainer.callbacks)


def test_help_and_cfg_answer_without_loading_lightning():
    probe = (
        "import runpy, sys; sys.argv = ['train.py', '--cfg', 'job'];"
        "\ntry: runpy.run_path('train.py', run_name='__main__')"
        "\nexcept SystemExit: pass"
        "\nassert 'lightning' not in sys.modules and 'torch' not in sys.modules, 'loaded'"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model:" in result.stdout  # the job config was printed


def run_dir_of(overrides: list[str], config_name: str = "train") -> str:
    """hydra.run.dir as train.py / eval.py resolve it for these command-line overrides."""
    register_resolvers()  # as rnnlab.cli does before Hydra composes
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    try:
        return str(cfg.hydra.run.dir)
    finally:
        GlobalHydra.instance().clear()


def pasted(path: str) -> str:
    """What Hydra's override parser makes of `ckpt_path=<path>` typed unquoted."""
    return OverridesParser.create().parse_override(f"ckpt_path={path}").value()


def test_run_names_carry_the_overrides_that_differ_and_paste_into_ckpt_path(tmp_path):
    assert re.fullmatch(r"[\d_-]+_recall_lstm", Path(run_dir_of([])).name)
    differing = ["model=gru", "model.hidden_size=16", "task.optimizer.lr=0.01"]
    name = Path(run_dir_of(differing)).name
    assert name.endswith("_recall_gru_hidden_size-16_lr-0.01")
    # where a run writes and how it is tagged do not name it
    elsewhere = [*differing, "tags=[a,b]", f"paths.log_dir={tmp_path}", "~callbacks.progress_bar"]
    assert Path(run_dir_of(elsewhere)).name.endswith("_recall_gru_hidden_size-16_lr-0.01")
    # many overrides: a short name, still distinct by a hash of the whole
    long_names = [
        Path(run_dir_of([*TINY_RECALL, "trainer.max_epochs=3", f"seed={seed}"])).name
        for seed in (1, 2)
    ]
    assert all(len(n.split("_recall_lstm_")[1]) <= 60 for n in long_names)
    assert long_names[0].split("_recall_lstm_")[1] != long_names[1].split("_recall_lstm_")[1]
    for run_name in (name, *long_names, "2_cell-gru_hidden_size-128_lr-0.00316"):
        path = f"outputs/train/runs/{run_name}/checkpoints/last.ckpt"
        assert pasted(path) == path


def test_eval_names_its_run_after_the_checkpoint_and_records_it(make_cfg, tmp_path):
    train(make_cfg([*TINY_RECALL, "model=gru", "trainer.max_epochs=1", "logger=none"]))
    checkpoint = tmp_path / "checkpoints" / "last.ckpt"
    logs = tmp_path / "logs"
    command("eval.py", f"ckpt_path={checkpoint}", f"paths.log_dir={logs}", *TINY_RECALL)
    (run,) = (logs / "eval" / "runs").iterdir()
    assert run.name.endswith("_recall_gru")  # the model group's default is lstm
    evaluated = json.loads((run / "eval_metrics.json").read_text())
    assert evaluated["ckpt_path"] == str(checkpoint)
    assert 0.0 <= evaluated["test/acc"] <= 1.0


def test_the_template_trainer_knobs_need_no_plus(make_cfg):
    knobs = {
        "max_steps": 30,
        "limit_train_batches": 0.5,
        "limit_val_batches": 2,
        "limit_test_batches": 3,
        "val_check_interval": 0.5,
    }
    overrides = [f"trainer.{key}={value}" for key, value in knobs.items()]
    cfg = make_cfg([*overrides, "trainer.fast_dev_run=false", "trainer.profiler=simple"])
    trainer = build(cfg.trainer, logger=False, enable_checkpointing=False)
    assert {key: getattr(trainer, key) for key in knobs} == knobs
    assert isinstance(trainer.profiler, SimpleProfiler) and not trainer.fast_dev_run
    # their defaults are Lightning's own
    default = build(make_cfg([]).trainer, logger=False, enable_checkpointing=False)
    plain = L.Trainer(logger=False, enable_checkpointing=False)
    for key in (*knobs, "fast_dev_run"):
        assert getattr(default, key) == getattr(plain, key), key
    assert type(default.profiler) is type(plain.profiler)


def test_a_run_that_ends_before_its_first_validation_ends_cleanly(make_cfg, tmp_path):
    write_names(tmp_path / "data" / "names")
    overrides = [
        "data=names",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.batch_size=2",  # about a dozen training batches: 3 steps end inside epoch 0
        "model.hidden_size=8",
        "trainer.max_steps=3",
        "logger=none",
    ]
    value = run(make_cfg(overrides))
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert value == metrics["val/acc_best"] and "test/acc" in metrics


def test_the_profiler_preset_writes_its_report(make_cfg, tmp_path):
    train(make_cfg([*TINY_RECALL, "debug=profiler", "logger=none"]))
    report = (tmp_path / "fit-profiler.txt").read_text()
    assert "run_training_epoch" in report and "[LightningModule]" in report


def test_the_mps_preset_composes(make_cfg):
    cfg = make_cfg(["trainer=mps"])
    assert (cfg.trainer.accelerator, cfg.trainer.devices) == ("mps", 1)


def test_logger_many_writes_tensorboard_and_csv(make_cfg, tmp_path):
    train(make_cfg([*TINY_RECALL, "trainer.max_epochs=1", "logger=many"]))
    assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    assert any(row.get("val/acc") for row in rows)


def test_logger_mlflow_records_a_real_run(make_cfg, tmp_path):
    pytest.importorskip("mlflow", reason="pip install -e '.[mlflow]'")
    from mlflow.tracking import MlflowClient

    overrides = [*TINY_RECALL, "trainer.max_epochs=2", "logger=mlflow", "model=gru"]
    metrics = train(make_cfg(overrides))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    (experiment,) = [e for e in client.search_experiments() if e.name == "train"]
    (stored,) = client.search_runs([experiment.experiment_id])
    assert stored.info.status == "FINISHED"
    assert stored.info.run_name.startswith("recall_gru_")
    assert stored.data.params["cell"] == "gru"
    assert stored.data.metrics["test/acc"] == pytest.approx(metrics["test/acc"])
    history = client.get_metric_history(stored.info.run_id, "val/acc")
    assert len(history) == 2  # one value per validation epoch


def test_logger_wandb_writes_an_offline_run(make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="pip install -e '.[wandb]'")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    train(make_cfg([*TINY_RECALL, "trainer.max_epochs=1", "logger=wandb"]))
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (records,) = run_dir.glob("run-*.wandb")
    assert records.stat().st_size > 0


def test_help_tells_presets_from_pieces_and_its_advice_composes(make_cfg):
    result = command("train.py", "--help")
    assert result.stdout.startswith("train: python train.py")
    assert "callbacks=[default,gradient_flow]" in result.stdout
    callbacks = make_cfg(["callbacks=[default,gradient_flow]"]).callbacks
    assert {"model_checkpoint", "early_stopping", "gradient_flow"} <= set(callbacks)
