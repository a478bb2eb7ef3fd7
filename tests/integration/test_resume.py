"""Reliability: a run of any task kind killed mid-epoch resumes with ckpt_path=last to the
uninterrupted result; runs of any length (max_steps, few one-cycle steps) end cleanly."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from rnnlab.data.base import ResumableDataLoader
from rnnlab.data.shakespeare import StreamWindows
from rnnlab.errors import ConfigError
from rnnlab.tasks import ClassificationTask
from rnnlab.tasks.base import fit_warm_up, rebuild_train_loader_after_estimate
from rnnlab.train import train
from tests.conftest import ROOT, TINY_RECALL, compose_config
from tests.integration.test_forecasting import write_csv
from tests.integration.test_language_model import TEXT
from tests.integration.test_translation import PAIRS, write_multi30k

# Deterministic runs with a last.ckpt every 3 steps, so a kill lands mid-epoch.
EPOCHS = 3
KILLABLE = [
    f"trainer.max_epochs={EPOCHS}",
    "trainer.deterministic=true",
    "callbacks.periodic_checkpoint.every_n_train_steps=3",
    "~callbacks.early_stopping",
    "~callbacks.progress_bar",
    "logger=csv",
]
STEPS_PER_EPOCH = 64  # 2,048 examples in batches of 32
RUN = [
    sys.executable,
    "train.py",
    *TINY_RECALL,
    "data.num_train=2048",
    "model.hidden_size=32",
    "task.head_dropout=0.3",  # dropout: the resumed run must draw the same masks
    *KILLABLE,
]


def checkpoint_step(path):
    try:
        return torch.load(path, map_location="cpu", weights_only=True)["global_step"]
    except (FileNotFoundError, RuntimeError, EOFError):
        return None


def kill_mid_epoch_and_resume(tmp_path, run, steps_per_epoch):
    """Run `run` whole; run it again and SIGKILL it inside the second epoch, after checkpoints
    of that epoch (tests.pause.PauseAt holds it there, so a loaded machine cannot outrun the
    kill); rerun that with ckpt_path=last in the same directory. Returns both metrics files."""
    whole = tmp_path / "whole"
    finished = subprocess.run(
        [*run, f"hydra.run.dir={whole}"], cwd=ROOT, capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stderr[-3000:]
    expected = json.loads((whole / "metrics.json").read_text())

    killed, paused = tmp_path / "killed", tmp_path / "paused"
    pause = {"_target_": "tests.pause.PauseAt", "step": steps_per_epoch + 4, "marker": paused}
    process = subprocess.Popen(
        [
            *run,
            f"hydra.run.dir={killed}",
            "trusted_targets=[tests.pause.PauseAt]",
            *(f"+callbacks.pause.{key}={value}" for key, value in pause.items()),
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    last = killed / "checkpoints" / "last.ckpt"
    try:
        while process.poll() is None and not paused.exists():
            time.sleep(0.01)
        if process.poll() is None:  # inside the second epoch, between two batches
            process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (killed / "metrics.json").exists()
    for path in (killed / "checkpoints").glob("*.ckpt"):  # no half-written checkpoint
        assert checkpoint_step(path) is not None, path
    resumed_from = checkpoint_step(last)
    assert resumed_from % steps_per_epoch != 0

    result = subprocess.run(
        [*run, f"hydra.run.dir={killed}", "ckpt_path=last"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    resumed = json.loads((killed / "metrics.json").read_text())
    assert checkpoint_step(last) == EPOCHS * steps_per_epoch
    assert not list((killed / "checkpoints").glob("last-v*.ckpt"))  # one last.ckpt, newest wins
    return expected, resumed


def assert_same_results(expected, resumed, keys):
    assert set(keys) <= set(expected), sorted(expected)
    for key in keys:
        assert resumed[key] == pytest.approx(expected[key], abs=1e-6), key


@pytest.mark.parametrize("scheduler", ["plateau", "onecycle"])
def test_killed_run_resumes_mid_epoch_to_the_uninterrupted_result(tmp_path, scheduler):
    run = [*RUN, f"task/scheduler={scheduler}"]
    expected, resumed = kill_mid_epoch_and_resume(tmp_path, run, STEPS_PER_EPOCH)
    assert_same_results(expected, resumed, ("test/acc", "test/loss", "val/acc_best", "best_epoch"))
    # the best epoch travels in the checkpoint beside the best value: a run resumed after its
    # best epoch still reports it (before, the resumed process only knew the epochs it ran)
    last = torch.load(tmp_path / "killed" / "checkpoints" / "last.ckpt", weights_only=False)
    (record,) = [v for k, v in last["callbacks"].items() if k.startswith("ValidationLog")]
    assert record == pytest.approx(
        {"best": expected["val/acc_best"], "best_epoch": expected["best_epoch"]}
    )


# Each other task kind on a tiny copy of its real data format, killed mid-epoch and resumed.


@pytest.mark.parametrize("processes", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_killed_language_model_resumes_its_stream_and_hidden_state(tmp_path, processes):
    """TBPTT: the window position and the carried hidden state travel in the checkpoint. Under
    DDP (trainer=ddp_cpu; slow: two processes a run) every rank's state is gathered into it."""
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "input.txt").write_text(TEXT, encoding="utf-8")
    streams, bptt = 4, 16  # streams per process
    windows = len(StreamWindows(torch.zeros(int(len(TEXT) * 0.9)), streams * processes, bptt))
    run = [
        sys.executable,
        "train.py",
        "data=shakespeare",
        *(["trainer=ddp_cpu"] if processes > 1 else []),
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"data.batch_size={streams}",
        f"data.bptt={bptt}",
        "task.output_dropout=0.3",  # the resumed run must draw the same masks
        "data.estimate_windows=8",
        "data.estimate_window=32",
        "model.hidden_size=16",
        *KILLABLE,
    ]
    expected, resumed = kill_mid_epoch_and_resume(tmp_path, run, windows)
    assert_same_results(expected, resumed, ("test/loss", "val/loss_best", "val/loss_windows"))


def test_killed_forecaster_resumes_to_the_uninterrupted_result(tmp_path):
    write_csv(tmp_path / "data" / "ett")  # 300 daily rows: 6/2/2 months
    lookback, horizon, batch_size = 24, 12, 4
    train_windows = 180 - lookback - horizon + 1
    run = [
        sys.executable,
        "train.py",
        "data=ett",
        "model=gru",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.split_months=[6,2,2]",
        f"data.lookback={lookback}",
        f"data.horizon={horizon}",
        f"data.batch_size={batch_size}",
        "task.segment_len=6",
        "model.hidden_size=16",
        *KILLABLE,
    ]
    expected, resumed = kill_mid_epoch_and_resume(tmp_path, run, -(-train_windows // batch_size))
    assert_same_results(expected, resumed, ("test/mse", "test/mae", "val/mse_best"))


def test_killed_translation_resumes_to_the_uninterrupted_result(tmp_path):
    write_multi30k(tmp_path / "data" / "multi30k", pairs=PAIRS * 3)  # 60 training pairs
    batch_size = 2
    run = [
        sys.executable,
        "train.py",
        "data=multi30k",
        "model=gru",
        f"paths.data_dir={tmp_path / 'data'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "data.min_freq=1",
        f"data.batch_size={batch_size}",
        "task.embedding_dim=12",
        "task.beam_size=2",
        "task.max_decode_len=12",
        "model.hidden_size=16",
        *KILLABLE,
    ]
    expected, resumed = kill_mid_epoch_and_resume(tmp_path, run, 60 // batch_size)
    assert_same_results(
        expected, resumed, ("test/bleu_greedy", "test/bleu_beam", "test/loss", "val/bleu_best")
    )


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


def test_resume_after_an_epoch_cut_by_limit_train_batches_starts_the_next_epoch(make_cfg, tmp_path):
    """`limit_train_batches` (debug=limit, reproduce.py --quick) ends epochs early: a checkpoint
    written after such an epoch's last batch (by the every-N-steps callback, before the epoch's
    validation) resumes on the next epoch, not inside the one that was cut."""
    run = [*TINY_RECALL, "trainer.limit_train_batches=3", "trainer.deterministic=true"]
    run += ["task.head_dropout=0.3", "~callbacks.early_stopping", "logger=none", "test=false"]
    # last.ckpt only from the every-3-steps callback: at the last batch of each 3-batch epoch
    run += ["callbacks.model_checkpoint.save_last=false"]
    run += ["callbacks.periodic_checkpoint.every_n_train_steps=3"]
    whole = train(make_cfg([*run, "trainer.max_epochs=2"]))
    cut = tmp_path / "cut"
    train(compose_config([*run, "trainer.max_epochs=1"], cut))
    resumed = train(compose_config([*run, "trainer.max_epochs=2", "ckpt_path=last"], cut))
    for key in ("val/loss", "val/acc", "train/loss_epoch"):
        assert resumed[key] == pytest.approx(whole[key], abs=1e-6), key


class LoaderProbe(L.LightningModule):
    """Records its training batches; estimates its step count as a one-cycle schedule does."""

    def __init__(self, rebuild: bool) -> None:
        super().__init__()
        self.rebuild = rebuild
        self.layer = torch.nn.Linear(1, 1)
        self.seen: list[list[int]] = []

    def train_dataloader(self) -> ResumableDataLoader:
        return ResumableDataLoader(torch.arange(12), batch_size=2, trainer=self.trainer)

    def training_step(self, batch, batch_idx):
        self.seen.append(batch.tolist())
        return self.layer(batch.float()[:, None]).sum()

    def configure_optimizers(self):
        assert self.trainer.estimated_stepping_batches > 0  # builds the training loader
        if self.rebuild:
            rebuild_train_loader_after_estimate(self.trainer)
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize("rebuild", [True, False])
def test_lightning_still_needs_the_loader_rebuilt_after_estimating_steps(tmp_path, rebuild):
    """Guards the private Lightning attribute that rebuild_train_loader_after_estimate writes
    (checked against LIGHTNING_CHECKED): with it, a run resumed after step 4 of 6 reads batches
    4 and 5; without it Lightning restarts the epoch's reading at batch 0. When Lightning
    renames the attribute the first case fails; when it applies the loader state after the
    estimate by itself, the second does, and the workaround can go."""
    options = {"logger": False, "enable_progress_bar": False, "enable_model_summary": False}
    options["default_root_dir"] = tmp_path  # its checkpoints stay out of the working directory
    periodic = ModelCheckpoint(tmp_path, save_last=True, save_top_k=0, every_n_train_steps=2)
    L.Trainer(max_steps=4, callbacks=[periodic], **options).fit(LoaderProbe(rebuild))
    probe = LoaderProbe(rebuild)
    L.Trainer(max_epochs=1, **options).fit(probe, ckpt_path=tmp_path / "last.ckpt")
    assert (probe.seen == [[8, 9], [10, 11]]) is rebuild, probe.seen


def test_max_steps_inside_an_epoch_validates_checkpoints_and_tests(make_cfg, tmp_path):
    """trainer.max_steps shorter than an epoch (8 batches here) ends with a validated,
    checkpointed and tested run, not an early-stopping error about the missing metric."""
    metrics = train(make_cfg([*TINY_RECALL, "trainer.max_steps=5", "logger=none"]))
    assert {"val/acc", "val/acc_best", "test/acc"} <= set(metrics)
    best = tmp_path / "checkpoints" / "epoch_000.ckpt"
    assert checkpoint_step(best) == 5
    assert checkpoint_step(tmp_path / "checkpoints" / "last.ckpt") == 5


@pytest.mark.parametrize("pct_start", [0.1, 0.2, 0.25, 0.3, 0.5])
def test_one_cycle_schedule_fits_any_step_budget(pct_start):
    """Every budget from 1 to 60 optimizer steps runs to its end, annealed to the minimum;
    where torch's OneCycleLR already works (a warm-up past step 0), nothing changes."""
    for total_steps in range(1, 61):
        changes = fit_warm_up(pct_start, total_steps)
        assert (changes == {}) is (pct_start * total_steps > 1)
        optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        options = {"max_lr": 0.1, "total_steps": total_steps, "pct_start": pct_start}
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, **options | changes)
        for _ in range(total_steps - 1):
            optimizer.step()
            schedule.step()
        minimum = 0.1 / 25 / 1e4  # OneCycleLR's defaults: div_factor, final_div_factor
        assert schedule.get_last_lr()[0] == pytest.approx(minimum, rel=1e-6), total_steps


def test_one_cycle_run_of_few_steps_trains_and_tests(make_cfg):
    """5 optimizer steps at pct_start=0.2 divided by zero inside OneCycleLR."""
    overrides = [*TINY_RECALL, "task/scheduler=onecycle", "trainer.max_epochs=1"]
    metrics = train(make_cfg([*overrides, "trainer.limit_train_batches=5", "logger=none"]))
    assert "test/acc" in metrics


def test_one_cycle_needs_a_run_with_an_end(make_cfg):
    overrides = [*TINY_RECALL, "task/scheduler=onecycle", "trainer.max_epochs=-1"]
    with pytest.raises(ConfigError, match="trainer.max_epochs or trainer.max_steps"):
        train(make_cfg([*overrides, "logger=none"]))
