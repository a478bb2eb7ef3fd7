"""Reliability: a run killed mid-epoch resumes with ckpt_path=last to the uninterrupted result."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import pytest
import torch

from rnnlab.tasks import ClassificationTask
from rnnlab.train import train
from tests.conftest import ROOT, TINY_RECALL

STEPS_PER_EPOCH = 64  # 2,048 examples in batches of 32
RUN = [
    sys.executable,
    "train.py",
    *TINY_RECALL,
    "data.num_train=2048",
    "model.hidden_size=32",
    "task.head_dropout=0.3",  # dropout: the resumed run must draw the same masks
    "trainer.max_epochs=3",
    "trainer.deterministic=true",
    "callbacks.periodic_checkpoint.every_n_train_steps=3",
    "~callbacks.early_stopping",
    "~callbacks.progress_bar",
    "logger=csv",
]


def checkpoint_step(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return None


@pytest.mark.parametrize("scheduler", ["plateau", "onecycle"])
def test_killed_run_resumes_mid_epoch_to_the_uninterrupted_result(tmp_path, scheduler):
    run = [*RUN, f"task/scheduler={scheduler}"]
    whole = tmp_path / "whole"
    subprocess.run([*run, f"hydra.run.dir={whole}"], cwd=ROOT, check=True, capture_output=True)
    expected = json.loads((whole / "metrics.json").read_text())

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [*run, f"hydra.run.dir={killed}"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.ckpt"
    step = None
    try:
        while process.poll() is None:  # kill inside the second epoch, between two batches
            step = checkpoint_step(last)
            if step and step > STEPS_PER_EPOCH and step % STEPS_PER_EPOCH:
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.002)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "metrics.json").exists()
    for path in (killed / "checkpoints").glob("*.ckpt"):  # no half-written checkpoint
        assert checkpoint_step(path) is not None, path
    resumed_from = checkpoint_step(last)
    assert resumed_from % STEPS_PER_EPOCH != 0

    result = subprocess.run(
        [*run, f"hydra.run.dir={killed}", "ckpt_path=last"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((killed / "metrics.json").read_text())
    for key in ("test/acc", "test/loss", "val/acc_best"):
        assert resumed[key] == pytest.approx(expected[key], abs=1e-6), key
    assert checkpoint_step(last) == 3 * STEPS_PER_EPOCH
    assert not list((killed / "checkpoints").glob("last-v*.ckpt"))  # one last.ckpt, newest wins


def test_same_seed_deterministic_runs_give_identical_metrics(make_cfg, tmp_path):
    overrides = [*TINY_RECALL, "trainer.max_epochs=2", "trainer.deterministic=true"]
    overrides += ["logger=none", "task.head_dropout=0.3"]
    first = train(make_cfg(overrides))
    second = train(make_cfg(overrides))
    for key in ("test/acc", "test/loss", "val/loss"):
        assert first[key] == second[key], key


def test_non_finite_loss_stops_training_and_keeps_finite_checkpoints(make_cfg, tmp_path):
    cfg = make_cfg(
        [
            *TINY_RECALL,
            "trainer.max_epochs=3",
            "trainer.gradient_clip_val=null",
            "task.optimizer.lr=1e12",
            "logger=none",
            "callbacks.periodic_checkpoint.every_n_train_steps=1",
        ]
    )
    with pytest.raises(FloatingPointError, match="non-finite (training loss|weights)"):
        train(cfg)
    checkpoints = list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert checkpoints  # one was written before the divergence (every step)
    for path in checkpoints:
        task = ClassificationTask.load_from_checkpoint(path, map_location="cpu")
        assert all(torch.isfinite(p).all() for p in task.parameters()), path


def test_checkpoints_load_with_weights_only(make_cfg, tmp_path):
    train(make_cfg([*TINY_RECALL, "trainer.max_epochs=1", "logger=none"]))
    path = tmp_path / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    assert math.isfinite(checkpoint["global_step"])
    ClassificationTask.load_from_checkpoint(path, map_location="cpu", weights_only=True)


def test_training_batches_are_reshuffled_every_epoch(make_cfg):
    """Lightning does not reach a batch sampler's set_epoch; the training loader sets it."""
    import lightning as L

    from rnnlab.utils import build

    cfg = make_cfg([*TINY_RECALL, "trainer.max_epochs=3", "logger=none", "callbacks=none"])
    datamodule = build(cfg.data)
    datamodule.setup("fit")
    first_batches = []

    class Record(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 0:
                first_batches.append(batch["inputs"][:, 0].tolist())

    from rnnlab.train import build_task

    trainer = L.Trainer(
        max_epochs=3,
        logger=False,
        callbacks=[Record()],
        enable_checkpointing=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,
    )
    trainer.fit(build_task(cfg, datamodule.spec), datamodule=datamodule)
    assert len(first_batches) == 3
    assert first_batches[0] != first_batches[1] != first_batches[2]
