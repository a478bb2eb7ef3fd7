"""Two CPU processes over gloo (trainer=ddp_cpu): sharded batches, equal steps, one writer,
and epoch metrics that equal a single process's."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_RECALL

TWO_PROCESSES = "trainer=ddp_cpu"
ONE_PROCESS = "trainer.accelerator=cpu"
# 250 training examples: 8 batches of 32 (the last of 26), 4 a rank, none repeated; 72 to
# validate and test: batches of 32, 32 and 8, so rank 0 reads 40 examples and rank 1 reads 32
UNEQUAL_SHARDS = [
    *[o for o in TINY_RECALL if not o.startswith("trainer.accelerator")],
    "data.num_train=250",
    "data.num_val=72",
    "data.num_test=72",
    "~callbacks.progress_bar",
]


# sine forecasting, the same way: 325 training windows, 109 to validate in batches of 32
SINE = [
    "data=sine",
    "data.length=600",
    "data.lookback=24",
    "data.horizon=12",
    "data.batch_size=32",
    "data.eval_batch_size=32",
    "task.segment_len=6",
    "task.head_dropout=0",  # dropout masks would differ between the runs' processes
    "model=gru",
    "model.hidden_size=8",
    "~callbacks.progress_bar",
]


def launch(script: str, overrides: list[str], run_dir: Path) -> str:
    """Run train.py or eval.py as a user would (DDP starts its second process itself)."""
    result = subprocess.run(
        [sys.executable, script, *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return output


def read_metrics(path: Path) -> dict[str, float]:
    return json.loads(path.read_text())


def mismatches(one: dict[str, float], two: dict[str, float], keys: list[str]) -> dict:
    return {key: (one.get(key), two.get(key)) for key in keys if abs(one[key] - two[key]) > 1e-5}


def test_ddp_cpu_fit_and_test_take_equal_steps_and_log_once(tmp_path):
    run_dir = tmp_path / "run"
    output = launch(
        "train.py",
        [
            TWO_PROCESSES,
            "trainer.max_epochs=2",
            "logger=csv",
            "~callbacks.progress_bar",
            *[o for o in TINY_RECALL if not o.startswith("trainer.accelerator")],
            "data.num_train=250",  # 8 batches of 32 (the last of 26): 4 a rank, none repeated
        ],
        run_dir,
    )
    steps = dict(re.findall(r"rank (\d) of 2: (\d+) optimizer steps", output))
    assert steps == {"0": "8", "1": "8"}, output[-3000:]  # 4 batches x 2 epochs on each rank
    metrics = read_metrics(run_dir / "metrics.json")
    assert 0.0 <= metrics["test/acc"] <= 1.0
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    val_rows = [row for row in rows if row.get("val/acc")]
    assert len(val_rows) == 2  # one row per validation epoch: logged by rank 0 only


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (UNEQUAL_SHARDS, {"train/loss_epoch", "val/loss", "val/acc", "test/loss", "test/f1"}),
        (SINE, {"train/loss_epoch", "val/mse", "val/mae", "test/mse", "test/windows"}),
    ],
    ids=["classification", "forecasting"],
)
def test_two_processes_log_the_epoch_metrics_of_one(tmp_path, overrides, expected):
    """Every epoch metric is over the whole split, not rank 0's shard, with unequal shards.

    Steps of 1e-30 leave the initial weights as they are to float precision (a learning rate of
    0 is refused), so the training, validation and test epochs of one and of two processes
    see the same model and the same examples.
    """
    frozen = [*overrides, "trainer.max_epochs=2", "task.optimizer.lr=1e-30", "logger=none"]
    launch("train.py", [ONE_PROCESS, *frozen], tmp_path / "one")
    launch("train.py", [TWO_PROCESSES, *frozen], tmp_path / "two")
    one = read_metrics(tmp_path / "one" / "metrics.json")
    two = read_metrics(tmp_path / "two" / "metrics.json")
    # a step value is the last batch's on rank 0, by design; `steps` (provenance: optimizer
    # steps) halves with two processes, each step taking a batch on each (rounded up an epoch)
    assert two["steps"] == math.ceil(one["steps"] / 2 / 2) * 2  # 2 epochs
    epoch_keys = sorted(key for key in one if not key.endswith("_step") and key != "steps")
    assert expected <= set(epoch_keys)
    assert sorted(k for k in two if not k.endswith("_step") and k != "steps") == epoch_keys
    assert not mismatches(one, two, epoch_keys), mismatches(one, two, epoch_keys)


def test_two_processes_evaluate_a_checkpoint_as_one_does(tmp_path):
    """eval.py over two processes reports the test metrics that training's own test did."""
    launch("train.py", [ONE_PROCESS, *UNEQUAL_SHARDS, "trainer.max_epochs=2"], tmp_path / "fit")
    trained = read_metrics(tmp_path / "fit" / "metrics.json")
    [checkpoint] = (tmp_path / "fit" / "checkpoints").glob("epoch*.ckpt")  # the best one
    data = [o for o in UNEQUAL_SHARDS if o.startswith(("data.", "model."))]
    launch("eval.py", [TWO_PROCESSES, *data, f"ckpt_path={checkpoint}"], tmp_path / "eval")
    evaluated = read_metrics(tmp_path / "eval" / "eval_metrics.json")
    test_keys = sorted(key for key in trained if key.startswith("test/"))
    assert {"test/loss", "test/acc", "test/f1"} <= set(test_keys)
    assert not mismatches(trained, evaluated, test_keys), mismatches(trained, evaluated, test_keys)


def test_a_process_group_is_torn_down_at_exit(tmp_path):
    """gloo's threads alive at interpreter exit once aborted a finished two-process run; rnnlab
    destroys the group at exit. A handler registered before rnnlab's runs after it (LIFO)."""
    code = (
        "import atexit, torch.distributed as dist\n"
        "atexit.register(lambda: print('initialized at exit:', dist.is_initialized()))\n"
        "import rnnlab.train\n"
        f"dist.init_process_group('gloo', init_method='file://{tmp_path / 'store'}', "
        "rank=0, world_size=1)\n"
        "print('initialized:', dist.is_initialized())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "initialized: True" in result.stdout
    assert "initialized at exit: False" in result.stdout
