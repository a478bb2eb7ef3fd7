"""One "best so far" for every task: `<task.monitor>_best`, kept across resumes and old
checkpoints."""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from rnnlab.errors import ConfigError
from rnnlab.tasks import ClassificationTask, LanguageModelTask
from rnnlab.train import train
from tests.conftest import TINY_RECALL


def classifier(**kwargs) -> ClassificationTask:
    torch.manual_seed(0)
    return ClassificationTask(
        num_classes=3, vocab_size=10, model={"hidden_size": 4}, embedding_dim=4, **kwargs
    )


def test_any_monitor_gets_its_best_over_the_epochs(make_cfg, tmp_path):
    overrides = [*TINY_RECALL, "task.monitor=val/f1", "trainer.max_epochs=3", "logger=csv"]
    metrics = train(make_cfg([*overrides, "~callbacks.progress_bar"]))
    (log,) = tmp_path.glob("csv/**/metrics.csv")
    with log.open() as rows:
        per_epoch = [float(row["val/f1"]) for row in csv.DictReader(rows) if row["val/f1"]]
    assert len(per_epoch) == 3  # the sanity check is not among them
    assert metrics["val/f1_best"] == pytest.approx(max(per_epoch))
    assert "val/acc_best" not in metrics


def test_a_monitor_the_task_does_not_compute_names_the_key_and_the_choices():
    batch = {
        "inputs": torch.randint(2, 10, (4, 5)),
        "lengths": torch.full((4,), 5),
        "labels": torch.tensor([0, 1, 2, 0]),
    }
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    with pytest.raises(
        ConfigError, match=r"task.monitor='val/accuracy'.*val/acc, val/f1, val/loss"
    ):
        trainer.validate(classifier(monitor="val/accuracy"), DataLoader([batch], batch_size=None))


def test_a_bad_monitor_mode_names_its_key():
    with pytest.raises(ConfigError, match="task.monitor_mode must be 'min' or 'max'"):
        classifier(monitor_mode="maximum")


def legacy_checkpoint(task: L.LightningModule, old_key: str, value: float, path) -> str:
    """A checkpoint as tasks wrote it before one best mechanism: the best under `old_key`."""
    state = {k: v for k, v in task.state_dict().items() if not k.startswith("monitor_best.")}
    state[old_key] = torch.tensor(value)
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": dict(task.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    return str(path)


def test_checkpoints_with_the_old_best_keys_still_load(tmp_path):
    ckpt = legacy_checkpoint(classifier(), "val_acc_best.max_value", 0.75, tmp_path / "a.ckpt")
    restored = ClassificationTask.load_from_checkpoint(ckpt)
    assert float(restored.monitor_best.compute()) == 0.75
    lm = LanguageModelTask(vocab_size=8, model={"hidden_size": 4}, embedding_dim=4)
    ckpt = legacy_checkpoint(lm, "val_loss_best.min_value", 1.5, tmp_path / "b.ckpt")
    assert float(LanguageModelTask.load_from_checkpoint(ckpt).monitor_best.compute()) == 1.5
    # the old best tracked accuracy: a run now monitoring F1 starts its best afresh
    ckpt = legacy_checkpoint(
        classifier(monitor="val/f1"), "val_acc_best.max_value", 0.75, tmp_path / "c.ckpt"
    )
    restored = ClassificationTask.load_from_checkpoint(ckpt)
    assert float(restored.monitor_best.max_value) == float("-inf")
