"""The per-validation log line's record of the best epoch, across a resume."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from rnnlab.progress import ValidationLog


def validate(record: ValidationLog, epoch: int, value: float) -> None:
    trainer = SimpleNamespace(
        sanity_checking=False,
        callback_metrics={"val/acc": torch.tensor(value)},
        current_epoch=epoch,
        is_global_zero=False,
    )
    record.on_validation_end(trainer, None)


def test_a_run_resumed_after_its_best_epoch_still_reports_that_epoch():
    record = ValidationLog("val/acc", "max")
    validate(record, 0, 0.9)
    validate(record, 1, 0.7)
    resumed = ValidationLog("val/acc", "max")  # a new process, loading the checkpoint
    resumed.load_state_dict(record.state_dict())
    validate(resumed, 2, 0.8)
    assert (resumed.best, resumed.best_epoch) == (record.best, 0)
    validate(resumed, 3, 0.95)
    assert resumed.best_epoch == 3


def test_a_checkpoint_from_before_the_record_was_kept_loads():
    resumed = ValidationLog("val/acc", "max")
    resumed.load_state_dict({})
    validate(resumed, 5, 0.5)
    assert (resumed.best, resumed.best_epoch) == (0.5, 5)
