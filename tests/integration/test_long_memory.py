"""Adding problem and copy memory: the generated data, the metrics' baselines, runs, bad input."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from rnnlab.checkpoints import require_task, task_of
from rnnlab.data.synthetic import AddingDataModule, CopyDataModule
from rnnlab.errors import ConfigError
from rnnlab.tasks import PianoRollTask, RegressionTask, SequenceLabelingTask
from rnnlab.train import train

MODEL = {"cell": "lstm", "hidden_size": 8}
SMALL = {"num_train": 64, "num_val": 40, "num_test": 70, "batch_size": 16, "eval_batch_size": 32}


def built(datamodule):
    datamodule.setup()
    return datamodule


def test_adding_targets_are_the_sum_of_the_two_marked_values():
    dm = built(AddingDataModule(seq_len=30, **SMALL))
    for split in ("train", "val", "test"):
        for example in dm.datasets[split]:
            values, markers = example["inputs"].unbind(-1)
            assert example["inputs"].shape == (30, 2)
            assert sorted(set(markers.tolist())) == [0.0, 1.0] and markers.sum() == 2
            assert ((values >= 0) & (values < 1)).all()
            marked = [v for v, m in zip(values.tolist(), markers.tolist(), strict=True) if m == 1]
            assert example["targets"].item() == pytest.approx(sum(marked))
    # the marked pairs spread over the steps, as Bai et al.'s uniform draw does
    markers = torch.stack([e["inputs"][:, 1] for e in dm.datasets["train"]])
    assert (markers.sum(0) > 0).sum() > 20


def test_copy_recalls_the_first_symbols_after_the_blanks_and_delimiters():
    dm = built(CopyDataModule(blanks=25, **SMALL))
    for example in dm.datasets["test"]:
        inputs, targets = example["inputs"], example["targets"]
        assert inputs.shape == targets.shape == (25 + 20,)
        assert torch.equal(targets[-10:], inputs[:10])  # the recall is the first 10 inputs
        assert ((inputs[:10] >= 1) & (inputs[:10] <= 8)).all()
        assert (inputs[10:34] == 0).all() and (inputs[34:] == 9).all()  # T-1 blanks, 11 delimiters
        assert (targets[:-10] == 0).all()
    assert dm.spec.vocab_size == dm.spec.num_classes == 10


def test_splits_are_seeded_and_distinct():
    first = built(AddingDataModule(seq_len=12, seed=3, **SMALL))
    again = built(AddingDataModule(seq_len=12, seed=3, **SMALL))
    other = built(AddingDataModule(seq_len=12, seed=4, **SMALL))
    assert torch.equal(first.datasets["test"][5]["inputs"], again.datasets["test"][5]["inputs"])
    assert not torch.equal(first.datasets["test"][5]["inputs"], other.datasets["test"][5]["inputs"])
    assert not torch.equal(first.datasets["val"][0]["inputs"], first.datasets["test"][0]["inputs"])


def score_with(dm, task, forward) -> dict[str, float]:
    """The task's test metrics over the test split with `forward` in place of the model."""
    task.forward = forward
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    return {k: float(v) for k, v in trainer.test(task, datamodule=dm, verbose=False)[0].items()}


def test_adding_mse_of_always_predicting_one_is_the_mean_over_the_split():
    dm = built(AddingDataModule(seq_len=10, **SMALL))
    task = RegressionTask(model=MODEL, **dm.spec.task_kwargs())
    metrics = score_with(dm, task, lambda inputs, lengths=None: torch.ones(len(inputs)))
    targets = torch.tensor([float(e["targets"]) for e in dm.datasets["test"]])
    expected = sum((t - 1.0) ** 2 for t in targets.tolist()) / len(targets)
    assert metrics["test/mse"] == pytest.approx(expected, rel=1e-5)


def test_copy_memoryless_baseline_scores_ten_log_eight_over_the_length():
    """Blanks until the recall, then uniform over the 8 symbols: the loss Bai et al.'s recurrent
    rows sit at (0.0204 at T=1000); accuracy on the symbols is that of always guessing 1."""
    blanks = 30
    dm = built(CopyDataModule(blanks=blanks, **SMALL))
    task = SequenceLabelingTask(model=MODEL, **dm.spec.task_kwargs())
    steps = blanks + 20

    def memoryless(inputs, lengths=None):
        logits = torch.full((len(inputs), steps, 10), -1e4)
        logits[:, :-10, 0] = 1e4  # certain of the blank
        logits[:, -10:, 1:9] = 0.0  # uniform over the symbols
        return logits

    metrics = score_with(dm, task, memoryless)
    recalled = torch.stack([e["targets"][-10:] for e in dm.datasets["test"]])
    assert metrics["test/loss"] == pytest.approx(10 * math.log(8) / steps, rel=1e-5)
    assert metrics["test/acc_symbols"] == pytest.approx(float((recalled == 1).float().mean()))
    blanks_right = (steps - 10) / steps
    assert metrics["test/acc"] == pytest.approx(
        blanks_right + 10 / steps * float((recalled == 1).float().mean())
    )


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data=adding", "data.seq_len=16"], ["test/mse", "val/mse_best", "train/loss_step"]),
        (
            ["data=copy", "data.blanks=16"],
            ["test/loss", "test/acc", "test/acc_symbols", "train/loss_step"],
        ),
    ],
)
def test_fast_dev_run(make_cfg, overrides, expected):
    sizes = ["data.num_train=32", "data.num_val=16", "data.num_test=16", "data.batch_size=16"]
    cfg = make_cfg([*overrides, *sizes, "model.hidden_size=8", "trainer.fast_dev_run=true"])
    metrics = train(cfg)
    assert set(expected) <= set(metrics)
    assert all(math.isfinite(metrics[key]) for key in expected)


@pytest.mark.parametrize(
    ("build", "key"),
    [
        (lambda: AddingDataModule(seq_len=1), "data.seq_len"),
        (lambda: CopyDataModule(blanks=0), "data.blanks"),
        (lambda: CopyDataModule(memory=0), "data.memory"),
        (lambda: AddingDataModule(num_train=0), "data.num_train"),
    ],
)
def test_lengths_too_short_for_the_task_name_the_key(build, key):
    with pytest.raises(ConfigError, match=key):
        build()


def test_checkpoints_of_the_new_tasks_say_which_task_they_hold():
    tasks = [
        RegressionTask(num_features=2, model=MODEL),
        SequenceLabelingTask(num_classes=10, vocab_size=10, model=MODEL),
        PianoRollTask(num_features=88, model=MODEL),
    ]
    for task in tasks:
        assert task_of({"hyper_parameters": dict(task.hparams)}) is type(task)
    checkpoint = {"hyper_parameters": dict(tasks[1].hparams)}
    with pytest.raises(ConfigError, match="a sequence labelling checkpoint, not a regression one"):
        require_task(checkpoint, RegressionTask, "copy.ckpt")
