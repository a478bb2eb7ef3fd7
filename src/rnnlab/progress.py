"""What a run prints: a live bar in a terminal, one log line per validation everywhere else.

Piped to a file (a SLURM job, `nohup`, CI) a progress bar is drawn once, at the end, so
`progress_callbacks` drops it there and `ValidationLog` writes one line per validation through
Python logging instead (the console and the run's `train.log`): epoch, step, train loss, the
`val/*` metrics, best so far, learning rate, elapsed and remaining time. `quiet_lightning`
silences the messages every run printed that tell the user nothing about it.
"""

from __future__ import annotations

import logging
import math
import sys
import time
import warnings
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelSummary, ProgressBar

log = logging.getLogger(__name__)


# Lightning's messages that say nothing about the run: advertising, and a note that rnnlab's
# own model summary replaces Lightning's
DROPPED = ("💡 Tip", "Trainer already configured with model summary")


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(DROPPED)


def quiet_lightning() -> None:
    """Drop Lightning's DROPPED messages and torch's LeafSpec deprecation warning (raised inside
    Lightning's own code, so nothing here can act on it)."""
    warnings.filterwarnings(
        "ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning
    )
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())
    # Lightning, imported after Hydra set up logging, sends its messages both to its own console
    # handler and up to Hydra's (console and train.log): keep Hydra's, so each shows once
    if logging.getLogger().handlers:
        lightning = logging.getLogger("lightning")
        for handler in list(lightning.handlers):
            if type(handler) is logging.StreamHandler:
                lightning.removeHandler(handler)


def interactive() -> bool:
    """True when stdout is a terminal, where a live bar can redraw in place."""
    return sys.stdout.isatty()


def progress_callbacks(
    callbacks: list[L.Callback], bar_enabled: bool, monitor: str, mode: str
) -> tuple[list[L.Callback], bool]:
    """(callbacks, enable_progress_bar) for the Trainer.

    A bar is drawn only in a terminal, when `trainer.enable_progress_bar` is true and the
    callbacks config has one (`callbacks.progress_bar=null` means no bar: Lightning's own is
    not put in its place). The per-validation log line and a summary without the FLOPs column
    (zeros for recurrent layers) are always added.
    """
    has_bar = any(isinstance(c, ProgressBar) for c in callbacks)
    show_bar = bool(bar_enabled) and has_bar and interactive()
    if not show_bar:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return [*callbacks, ValidationLog(monitor, mode), OneLineModelSummary()], show_bar


def duration(seconds: float) -> str:
    """`0:01:05` (hours:minutes:seconds, no fraction)."""
    return str(timedelta(seconds=round(seconds)))


def number(value: float) -> str:
    return f"{value:.4g}"


class ValidationLog(L.Callback):
    """One log line per validation (rank 0), and the best epoch of the monitored metric.

    The train loss is the mean of the training-step losses since the previous validation, so a
    line is never a mix of epochs. The time left assumes the rest of the run goes at the pace
    seen so far, up to `max_epochs` or `max_steps` (early stopping may end it sooner).
    """

    def __init__(self, monitor: str, mode: str) -> None:
        self.monitor = monitor
        self.mode = mode
        self.best: float | None = None
        self.best_epoch: int | None = None
        self._losses: list[float] = []
        self._start = 0.0
        self._start_fraction = 0.0

    def state_dict(self) -> dict[str, Any]:
        # in checkpoints: a resumed run's best epoch is the whole run's, as its best value is
        return {"best": self.best, "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best = state_dict.get("best")
        self.best_epoch = state_dict.get("best_epoch")

    def on_fit_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._start = time.monotonic()
        self._start_fraction = self._fraction(trainer)

    def on_train_batch_end(
        self, trainer: L.Trainer, module: L.LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if torch.is_tensor(loss) and loss.numel() == 1:
            self._losses.append(float(loss.detach()))

    def on_validation_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
        value = metrics.get(self.monitor)
        if value is not None and math.isfinite(value) and self._improves(value):
            self.best, self.best_epoch = value, trainer.current_epoch
        if trainer.is_global_zero:
            log.info(self.line(trainer, metrics))
        self._losses.clear()

    def _improves(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def _fraction(self, trainer: L.Trainer) -> float:
        """How much of the run is done, by epochs and by steps (whichever is further)."""
        fraction = 0.0
        if trainer.max_epochs and trainer.max_epochs > 0:
            batches = trainer.num_training_batches
            within = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            epoch = trainer.current_epoch + (within / batches if 0 < batches < math.inf else 0)
            fraction = epoch / trainer.max_epochs
        if trainer.max_steps and trainer.max_steps > 0:
            fraction = max(fraction, trainer.global_step / trainer.max_steps)
        return min(fraction, 1.0)

    def line(self, trainer: L.Trainer, metrics: dict[str, float]) -> str:
        epochs = f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else ""
        parts = [f"epoch {trainer.current_epoch}{epochs} step {trainer.global_step}"]
        if self._losses:
            parts.append(f"train/loss {number(sum(self._losses) / len(self._losses))}")
        validation = sorted(
            (k, v) for k, v in metrics.items() if k.startswith("val/") and not k.endswith("_best")
        )
        if validation:
            parts.append(" ".join(f"{k} {number(v)}" for k, v in validation))
        if self.best is not None:
            parts.append(f"best {self.monitor} {number(self.best)} (epoch {self.best_epoch})")
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g}")
        elapsed = time.monotonic() - self._start
        fraction = self._fraction(trainer)
        done = fraction - self._start_fraction  # in this process: a resumed run started later
        timing = f"{duration(elapsed)} elapsed"
        if done > 0:
            timing += f", ~{duration(elapsed * (1 - fraction) / done)} left"
        parts.append(timing)
        return " | ".join(parts)


class OneLineModelSummary(ModelSummary):
    """The model's top-level modules with their parameter counts, on one log line (Lightning's
    table has a FLOPs column of zeros for recurrent layers and rows for every metric)."""

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int = 0,
        **summarize_kwargs: Any,
    ) -> None:
        columns = dict(summary_data)
        rows = zip(columns["Name"], columns["Type"], columns["Params"], strict=True)
        modules = [
            f"{name} {kind} {params.strip()}"
            for name, kind, params in rows
            if params.strip() not in ("0", "")
        ]
        log.info(
            "model: %s (%s parameters, %s trainable)",
            ", ".join(modules),
            f"{total_parameters:,}",
            f"{trainable_parameters:,}",
        )
