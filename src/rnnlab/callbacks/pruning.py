"""Optuna pruning inside a trial run by rnnlab's sweeper (see rnnlab/sweeper.py)."""

from __future__ import annotations

from typing import Any

import lightning as L
import optuna

from rnnlab.sweeper import load_study


class OptunaPruning(L.Callback):
    """Reports `monitor` to the trial after every validation epoch; stops it when the study's
    pruner says so, raising `optuna.TrialPruned` (the sweeper records the trial as PRUNED)."""

    def __init__(self, storage: str, study: str, trial_id: int, monitor: str, pruner: Any) -> None:
        # the sweep's storage settings (a SQLite busy timeout), not Optuna's defaults
        study_ = load_study(storage, study, pruner)
        self.trial = optuna.trial.Trial(study_, trial_id)
        self.monitor = monitor
        self.reports = 0

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        self.reports += 1  # one step per validation, also with val_check_interval < 1
        prune = False
        if trainer.is_global_zero:  # one rank reports and decides; the others follow it
            self.trial.report(value, step=self.reports)
            prune = self.trial.should_prune()
        if trainer.strategy.broadcast(prune, src=0):
            raise optuna.TrialPruned(
                f"pruned after validation {self.reports} with {self.monitor}={value:.4f}"
            )
