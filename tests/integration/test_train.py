"""End to end: train() per preset, TensorBoard and checkpoint outputs, reloading and eval.py."""

from __future__ import annotations

import contextlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra.core.global_hydra import GlobalHydra
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnlab.data.imdb import ImdbDataModule
from rnnlab.data.synthetic import RecallDataModule
from rnnlab.errors import ConfigError
from rnnlab.tasks import ClassificationTask
from rnnlab.train import evaluate, objective, train
from rnnlab.utils import read_checkpoint
from tests.conftest import ROOT, TINY_RECALL, compose_config
from tests.integration.test_forecasting import write_csv
from tests.integration.test_language_model import TEXT
from tests.integration.test_text_data import write_imdb, write_names

PRESETS = ["rnn", "lstm", "gru", "birnn", "bilstm", "bigru"]


@pytest.mark.parametrize("model", PRESETS)
def test_fast_dev_run_per_model_preset(make_cfg, model):
    metrics = train(make_cfg([*TINY_RECALL, f"model={model}", "debug=fdr"]))
    assert math.isfinite(metrics["train/loss_step"])
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.parametrize("pooling", ["mean", "max", "attention"])
def test_fast_dev_run_per_pooling(make_cfg, pooling):
    metrics = train(make_cfg([*TINY_RECALL, f"task.pooling={pooling}", "debug=fdr"]))
    assert math.isfinite(metrics["test/loss"])


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    """Two real epochs with the default logger and callbacks."""
    output_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config([*TINY_RECALL, "trainer.max_epochs=2"], output_dir)
    metrics = train(cfg)
    GlobalHydra.instance().clear()
    return output_dir, metrics


def test_short_run_writes_tensorboard_scalars_and_hparams(short_run):
    output_dir, metrics = short_run
    events = list((output_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events
    tags = set()
    hparams_tags = set()
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
        with contextlib.suppress(KeyError):  # files without hparams summaries
            hparams_tags |= set(accumulator.PluginTagToContent("hparams"))
    assert "_hparams_/session_start_info" in hparams_tags  # the HPARAMS tab has this run
    expected = {
        "train/loss_step",
        "train/loss_epoch",
        "train/acc",
        "val/loss",
        "val/acc",
        "val/f1",
        "val/acc_best",
        "test/acc",
        "test/f1",
        "lr-AdamW/decay",
    }
    assert expected <= tags, expected - tags
    assert (output_dir / "config_resolved.yaml").is_file()
    saved = json.loads((output_dir / "metrics.json").read_text())
    assert saved["test/acc"] == pytest.approx(metrics["test/acc"])


def test_short_run_saves_best_and_last_checkpoints(short_run):
    output_dir, _ = short_run
    names = {p.name for p in (output_dir / "checkpoints").glob("*.ckpt")}
    assert "last.ckpt" in names
    assert any(name.startswith("epoch_") for name in names)


def test_checkpoint_reloads_without_hydra(short_run):
    output_dir, _ = short_run
    assert not GlobalHydra.instance().is_initialized()
    task = ClassificationTask.load_from_checkpoint(
        output_dir / "checkpoints" / "last.ckpt", map_location="cpu"
    )
    task.eval()
    assert task.hparams.num_classes == 8 and task.hparams.model["hidden_size"] == 16
    datamodule = RecallDataModule(num_train=256, num_val=64, num_test=64, batch_size=32, seed=12345)
    datamodule.setup()
    batch = next(iter(datamodule.test_dataloader()))
    probabilities = task.predict_proba(batch["inputs"], batch["lengths"])
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(len(probabilities)))


def test_eval_script_reproduces_the_test_metric(short_run, tmp_path):
    output_dir, metrics = short_run
    best = next(p for p in (output_dir / "checkpoints").glob("epoch_*.ckpt"))
    eval_dir = tmp_path / "eval"
    overrides = TINY_RECALL
    result = subprocess.run(
        [sys.executable, "eval.py", f"ckpt_path={best}", f"hydra.run.dir={eval_dir}", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    evaluated = json.loads((eval_dir / "eval_metrics.json").read_text())
    assert evaluated["test/acc"] == pytest.approx(metrics["test/acc"], abs=1e-6)
    assert evaluated["test/loss"] == pytest.approx(metrics["test/loss"], abs=1e-5)


def test_eval_with_other_data_sizes_is_a_clear_error(short_run, make_cfg):
    from rnnlab.train import evaluate

    output_dir, _ = short_run
    cfg = make_cfg(
        [
            *TINY_RECALL,
            "data.num_symbols=5",
            f"ckpt_path={output_dir / 'checkpoints' / 'last.ckpt'}",
        ],
        config_name="eval",
    )
    # the recall data's own settings travel in the checkpoint: the error names the one that differs
    with pytest.raises(ValueError, match="other data .*num_symbols: 8 there, 5 here"):
        evaluate(cfg)


def test_objective_returns_the_metric_and_refuses_nan(make_cfg):
    cfg = make_cfg()
    assert cfg.optimized_metric == "val/acc_best"
    assert objective(cfg, {"val/acc_best": 0.75}) == 0.75
    with pytest.raises(ValueError, match="not finite"):
        objective(cfg, {"val/acc_best": float("nan")})
    with pytest.raises(KeyError, match="val/acc_best"):
        objective(cfg, {"val/acc": 0.5})


def test_missing_checkpoint_path_is_a_clear_error(make_cfg):
    from rnnlab.train import evaluate

    cfg = make_cfg([*TINY_RECALL, "ckpt_path=nowhere/last.ckpt"], config_name="eval")
    with pytest.raises(FileNotFoundError, match="ckpt_path"):
        evaluate(cfg)
    assert not Path("nowhere").exists()


def test_logger_none_runs_with_the_default_callbacks(make_cfg, tmp_path):
    metrics = train(make_cfg([*TINY_RECALL, "logger=none", "trainer.max_epochs=1"]))
    assert "test/acc" in metrics
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.parametrize("scheduler", ["plateau", "onecycle", "none"])
def test_scheduler_presets_train(make_cfg, scheduler):
    cfg = make_cfg(
        [
            *TINY_RECALL,
            f"task/scheduler={scheduler}",
            "trainer.max_epochs=2",
            "trainer.log_every_n_steps=1",
            "logger=csv",
        ]
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss"])
    if scheduler == "onecycle":  # stepped per batch, annealed to ~0 by the last step
        assert metrics["lr-AdamW/decay"] < cfg.task.optimizer.lr / 100


def test_class_weighting_balances_the_loss():
    task = ClassificationTask(
        num_classes=2,
        vocab_size=5,
        model={"hidden_size": 4},
        class_counts=[30, 10],
        class_weighting=True,
    )
    torch.testing.assert_close(task.class_weights, torch.tensor([40 / 60, 40 / 20]))
    assert (
        ClassificationTask(
            num_classes=2, vocab_size=5, model={"hidden_size": 4}, class_counts=[30, 10]
        ).class_weights
        is None
    )


def test_label_smoothing_applies_to_the_training_loss_only(monkeypatch):
    torch.manual_seed(0)
    task = ClassificationTask(
        num_classes=3, vocab_size=6, model={"hidden_size": 4}, label_smoothing=0.2
    )
    logged = {}
    monkeypatch.setattr(task, "log", lambda name, value, **kwargs: logged.update({name: value}))
    monkeypatch.setattr(task, "log_dict", lambda *args, **kwargs: None)
    batch = {
        "inputs": torch.tensor([[1, 2, 3], [4, 5, 0]]),
        "lengths": torch.tensor([3, 2]),
        "labels": torch.tensor([0, 2]),
    }
    logits = task(batch["inputs"], batch["lengths"])
    smoothed = task.training_step(batch, 0)
    task.validation_step(batch, 0)
    torch.testing.assert_close(
        smoothed, F.cross_entropy(logits, batch["labels"], label_smoothing=0.2)
    )
    torch.testing.assert_close(
        logged["val/loss"].compute(), F.cross_entropy(logits, batch["labels"])
    )
    with pytest.raises(ValueError, match="task.label_smoothing"):
        ClassificationTask(num_classes=3, vocab_size=6, model={"hidden_size": 4}, label_smoothing=1)


# min_freq=1 puts each review's number ("take 7") into the vocabulary: the vocabulary then
# depends on which reviews the seed leaves in the training part, while its size does not
TINY_IMDB = ["data=imdb", "data.min_freq=1", "model.hidden_size=8", "data.batch_size=4"]
TRAIN_ONLY = ["trainer.max_epochs=1", "~callbacks.progress_bar"]


def imdb_paths(tmp_path) -> list[str]:
    write_imdb(tmp_path / "data" / "imdb")
    return [f"paths.data_dir={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}"]


def test_imdb_vocabulary_depends_on_the_seed_but_not_its_size(tmp_path):
    """The condition the two tests below need: today's size check cannot see the difference."""
    write_imdb(tmp_path / "data" / "imdb")
    vocabularies = []
    for seed in (1, 12345):
        datamodule = ImdbDataModule(
            data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path), min_freq=1, seed=seed
        )
        datamodule.setup()
        vocabularies.append(datamodule.vocab.tokens)
    assert len(vocabularies[0]) == len(vocabularies[1])
    assert vocabularies[0] != vocabularies[1]


def test_eval_with_another_seed_encodes_with_the_checkpoint_vocabulary(make_cfg, tmp_path):
    paths = imdb_paths(tmp_path)
    trained = train(make_cfg([*TINY_IMDB, *paths, *TRAIN_ONLY, "seed=1", "logger=none"]))
    best = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))  # what the run tested
    evaluated = evaluate(make_cfg([*TINY_IMDB, *paths, f"ckpt_path={best}"], "eval"))  # seed 12345
    assert evaluated["test/loss"] == pytest.approx(trained["test/loss"], abs=1e-6)
    assert evaluated["test/acc"] == pytest.approx(trained["test/acc"], abs=1e-6)


def test_resume_with_another_seed_encodes_with_the_checkpoint_vocabulary(make_cfg, tmp_path):
    # plateau: a one-cycle schedule cannot be extended past the steps it was built for
    paths = [*imdb_paths(tmp_path), "task/scheduler=plateau"]
    train(make_cfg([*TINY_IMDB, *paths, *TRAIN_ONLY, "seed=1", "logger=none"]))
    last = tmp_path / "checkpoints" / "last.ckpt"
    stored = read_checkpoint(last)["ImdbDataModule"]
    resumed_dir = tmp_path / "resumed"
    overrides = [*TINY_IMDB, *paths, "trainer.max_epochs=2", "~callbacks.progress_bar"]
    train(compose_config([*overrides, f"ckpt_path={last}", "logger=none"], resumed_dir))
    resumed = json.loads((resumed_dir / "data_state.json").read_text())
    assert resumed["vocab"] == stored["vocab"]


@pytest.mark.parametrize("data", ["names", "sine", "recall"])
def test_eval_with_another_seed_tests_on_the_checkpoint_data(make_cfg, tmp_path, data):
    """Names: the seed picks the test names and the vocabulary; sine and recall: the data."""
    if data == "names":
        write_names(tmp_path / "data" / "names")
        overrides = [f"paths.data_dir={tmp_path / 'data'}", "data.batch_size=4"]
    elif data == "recall":
        overrides = ["data.num_train=64", "data.num_val=32", "data.num_test=32"]
    else:
        overrides = ["data.lookback=24", "data.horizon=12", "task.segment_len=6"]
    overrides += [f"data={data}", "model=gru", "model.hidden_size=8", "logger=none"]
    overrides += [f"paths.cache_dir={tmp_path / 'cache'}"]
    trained = train(make_cfg([*overrides, *TRAIN_ONLY, "seed=1"]))
    best = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    evaluated = evaluate(make_cfg([*overrides, f"ckpt_path={best}"], "eval"))
    tested = {k: v for k, v in trained.items() if k.startswith("test/")}
    assert tested and evaluated == pytest.approx(tested, abs=1e-6)


@pytest.mark.parametrize("data", ["ett", "shakespeare"])
def test_eval_on_data_that_encodes_differently_names_what_differs(make_cfg, tmp_path, data):
    """ETT: other split borders give other scaling statistics; Shakespeare: another text with
    as many distinct characters gives a vocabulary of the same size but other characters."""
    folder = tmp_path / "data"
    if data == "ett":
        write_csv(folder / "ett")
        overrides = ["data=ett", "data.lookback=24", "data.horizon=12", "task.segment_len=6"]
        overrides += [f"paths.data_dir={folder}"]
        train_only, eval_only = ["data.split_months=[6,2,2]"], ["data.split_months=[5,2,2]"]
        differs = "mean: "
    else:
        (folder / "tinyshakespeare").mkdir(parents=True)
        (folder / "tinyshakespeare" / "input.txt").write_text(TEXT)
        overrides = ["data=shakespeare", f"paths.data_dir={folder}", "data.batch_size=4"]
        overrides += ["data.bptt=32", "data.estimate_windows=0"]
        train_only, eval_only = [], []
        differs = "vocab: "
    overrides += ["model=gru", "model.hidden_size=8", "logger=none"]
    train(make_cfg([*overrides, *train_only, *TRAIN_ONLY]))
    if data == "shakespeare":  # the same characters but one: as many, other ones
        (folder / "tinyshakespeare" / "input.txt").write_text(TEXT.replace("y", "Z"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match=f"was trained on other data .*{differs}"):
        evaluate(make_cfg([*overrides, *eval_only, f"ckpt_path={last}"], "eval"))
