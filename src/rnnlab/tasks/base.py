"""What every task shares: a backbone built from plain config values, and optimisation.

Tasks take only plain values (ints, strings, dicts), store them with `save_hyperparameters`, and
build their modules from them, so `Task.load_from_checkpoint(path)` works without Hydra. The
optimizer and scheduler are Hydra `_partial_` dicts, instantiated here with the parameters.
"""

from __future__ import annotations

import inspect
import logging
import math
import random
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torchmetrics import MaxMetric, MinMetric

from rnnlab.errors import ConfigError
from rnnlab.models import InputEncoder, RecurrentBackbone
from rnnlab.utils import build

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}
# rnnlab's own key in `task.optimizer`, read here and not passed to the optimizer class
DECAY_EMBEDDINGS = "decay_embeddings"
LIGHTNING_CHECKED = "2.6.6"  # the Lightning whose private fit-loop attribute is written below

# where tasks kept their best validation value before `BaseTask.monitor_best`
LEGACY_BEST = ("val_acc_best", "val_loss_best", "val_mse_best", "val_bleu_best")

log = logging.getLogger(__name__)


def rebuild_train_loader_after_estimate(trainer: L.Trainer) -> None:
    """Make the fit loop build its training loader again after `estimated_stepping_batches`.

    The estimate builds the loader (and its first iterator) inside `configure_optimizers`,
    before Lightning restores a resumed run's loader state; the fit loop then keeps that loader
    and never applies the state, so the run would restart its epoch from the first batch.
    Lightning has no public way to drop it (2.6.6: `FitLoop.setup_data` returns early while a
    loader is kept, and `reload_dataloaders_every_n_epochs` would rebuild it every epoch, not
    once): this writes the private `FitLoop._combined_loader`, checked against Lightning 2.6.6
    by tests/integration/test_resume.py, which fails when Lightning renames it or when the
    workaround stops being needed.
    """
    fit_loop = trainer.fit_loop
    if not hasattr(fit_loop, "_combined_loader"):
        raise RuntimeError(
            f"Lightning {L.__version__}'s FitLoop has no _combined_loader (rnnlab checked "
            f"{LIGHTNING_CHECKED}): update rebuild_train_loader_after_estimate"
        )
    fit_loop._combined_loader = None


def fit_warm_up(pct_start: float, total_steps: int) -> dict[str, float]:
    """The one-cycle warm-up for a run of `total_steps`: none when it would last a step or less.

    OneCycleLR's warm-up ends at step ``pct_start * total_steps - 1``; at exactly step 0 it
    divides by zero (5 steps at the default 0.2), and below it the warm-up is skipped anyway.
    """
    if pct_start * total_steps > 1:
        return {}
    log.info(
        "one-cycle schedule over %d optimizer steps: too few for a warm-up of pct_start=%s; "
        "annealing from the peak learning rate",
        total_steps,
        pct_start,
    )
    return {"pct_start": 0.0}


def parameter_groups(
    module: torch.nn.Module, weight_decay: float, decay_embeddings: bool
) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: weight decay on weight matrices only.

    Biases (the LSTM forget-gate bias and the chrono initialisation among them), normalisation
    scales and other vectors get none: decaying them pulls the initialisation the cell relies on
    towards zero. Embedding tables decay only with `decay_embeddings` (see the README's measured
    comparison). Every group lists its tensors in `module.parameters()` order, so the optimizer
    state of a checkpoint maps onto the same tensors.
    """
    embeddings = {id(sub.weight) for sub in module.modules() if isinstance(sub, torch.nn.Embedding)}
    decay, no_decay = [], []
    for parameter in module.parameters():
        if not parameter.requires_grad:
            continue
        decays = parameter.ndim >= 2 and (decay_embeddings or id(parameter) not in embeddings)
        (decay if decays else no_decay).append(parameter)
    # named, so the learning-rate monitor logs lr-<Optimizer>/decay (and /no_decay)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "name": "no_decay"})
    return groups


class BaseTask(L.LightningModule):
    """Builds `self.encoder` (ids or features -> vectors) and `self.backbone` from plain config,
    and keeps the best validation value of `monitor` so far (`<monitor>_best`)."""

    def __init__(self, monitor: str, monitor_mode: str) -> None:
        super().__init__()
        if monitor_mode not in ("min", "max"):
            raise ConfigError(f"task.monitor_mode must be 'min' or 'max', got {monitor_mode!r}")
        self.monitor = monitor
        self.monitor_best = MaxMetric() if monitor_mode == "max" else MinMetric()
        self.monitor_best.persistent(True)  # in checkpoints, so a resumed run keeps its best

    def log_best(self, values: Mapping[str, Tensor]) -> None:
        """Update and log `<monitor>_best` from the epoch's validation `values` (metric name ->
        value); the sanity check does not count, but a monitor the task lacks fails there."""
        if self.monitor not in values:
            raise ConfigError(
                f"task.monitor={self.monitor!r} is not a metric this task computes at "
                f"validation; it logs {', '.join(sorted(values))}"
            )
        if self.trainer.sanity_checking:
            return
        self.monitor_best(values[self.monitor])
        self.log(f"{self.monitor}_best", self.monitor_best.compute(), prog_bar=True)

    def track_loss(self, split: str, loss: Tensor, weight: Tensor | int) -> None:
        """Add a batch's mean loss, weighted by what it averages over (steps, frames, labels), to
        `<split>_loss`, a MeanMetric, so that the epoch's value is the loss over the whole split.
        Training also logs the batch's own value as `train/loss_step`: Lightning takes a logged
        Metric's step value from its forward call, so `update` alone would log none."""
        metric = getattr(self, f"{split}_loss")
        if split != "train":
            metric.update(loss.detach(), weight)
            return
        metric(loss.detach(), weight)
        self.log("train/loss", metric, on_step=True, on_epoch=True, prog_bar=True)

    def shared_step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        """The loss of one batch of `split` (train, val or test), its metrics updated: tasks
        whose three steps differ only in the split implement this and inherit the steps."""
        raise NotImplementedError(f"{type(self).__name__} defines its own steps")

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self.shared_step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.shared_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.shared_step(batch, "test")

    def build_encoder_and_backbone(
        self,
        model: dict[str, Any],
        embedding_dim: int,
        vocab_size: int | None,
        num_features: int | None,
        pad_id: int,
        embedding_dropout: float,
        extra_inputs: int = 0,
    ) -> None:
        """`extra_inputs`: features the task concatenates to the encoded input (a condition)."""
        self.encoder = InputEncoder(
            embedding_dim, vocab_size, num_features, pad_id, embedding_dropout
        )
        self.backbone = RecurrentBackbone(self.encoder.output_size + extra_inputs, **model)

    def diverged(self, what: str) -> FloatingPointError:
        return FloatingPointError(
            f"non-finite {what} at epoch {self.current_epoch}, step {self.global_step}: "
            "training stopped; the checkpoints saved so far hold finite weights. Lower "
            "task.optimizer.lr, keep trainer.gradient_clip_val, or try trainer.precision=32-true."
        )

    def on_before_backward(self, loss: Tensor) -> None:
        """Stop at the first non-finite loss, before it reaches the weights."""
        if not math.isfinite(float(loss.detach())):
            raise self.diverged(f"training loss ({float(loss)})")

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """Step, then stop if the update itself overflowed, before any checkpoint is written."""
        super().optimizer_step(*args, **kwargs)
        if not all(bool(torch.isfinite(p).all()) for p in self.parameters()):
            raise self.diverged("weights after the optimizer step")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Random state at the save, so a run resumed mid-epoch draws the same dropout masks as
        # an uninterrupted one (plain tensors and ints: loads with weights_only=True).
        states = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        checkpoint["rng_states"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied at the first training batch after resuming: the sanity check and the new
        # DataLoader iterator draw from the global generator before it.
        self._rng_to_restore = checkpoint.get("rng_states")
        self.adopt_legacy_best(checkpoint.get("state_dict", {}))

    def adopt_legacy_best(self, state: dict[str, Tensor]) -> None:
        """Checkpoints written before `monitor_best` kept each task's best under its own name
        (`val_acc_best.max_value`, ...): that value becomes `monitor_best`'s when it tracked
        this monitor; a best of another metric is dropped and the best starts afresh."""
        tracked = self.monitor.replace("/", "_") + "_best"
        for key in [key for key in state if key.split(".", 1)[0] in LEGACY_BEST]:
            name, field = key.split(".", 1)
            value = state.pop(key)
            if name == tracked:
                state[f"monitor_best.{field}"] = value
        for key, value in self.monitor_best.state_dict(prefix="monitor_best.").items():
            state.setdefault(key, value)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        states = getattr(self, "_rng_to_restore", None)
        if states:
            torch.set_rng_state(states["torch"])
            random.setstate(states["python"])
            if "cuda" in states and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(states["cuda"])
            self._rng_to_restore = None

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """A run that `trainer.max_steps` ends inside an epoch is validated at its last step.

        Lightning validates at an epoch's end, or inside one when asked to stop, but not when
        max_steps ends the epoch early: the run would end with no validation metric, no best
        checkpoint, and early stopping failing on the missing metric. Asking to stop at the
        last step validates it. Lightning honours a stop only once min_epochs is met, which a
        run ended by max_steps never reaches, so min_epochs is lowered to the epochs run.
        """
        trainer = self.trainer
        if trainer.max_steps == -1 or self.global_step < trainer.max_steps:
            return
        trainer.fit_loop.min_epochs = min(trainer.fit_loop.min_epochs or 0, self.current_epoch)
        trainer.should_stop = True

    def configure_optimizers(self) -> Any:
        optimizer_cfg = dict(self.hparams.optimizer or DEFAULT_OPTIMIZER)
        decay_embeddings = bool(optimizer_cfg.pop(DECAY_EMBEDDINGS, False))
        factory = build(optimizer_cfg)
        weight_decay = optimizer_cfg.get("weight_decay")
        if weight_decay is None:  # the optimizer's own default, for its own groups
            default = inspect.signature(factory.func).parameters.get("weight_decay")
            weight_decay = default.default if default is not None else 0.0
        optimizer = factory(params=parameter_groups(self, weight_decay, decay_embeddings))
        if not self.hparams.get("scheduler"):
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        interval = scheduler_cfg.pop("interval", "epoch")
        scheduler_factory = build(scheduler_cfg)
        extra = {}
        # Schedules over the whole run (OneCycleLR) get its length from the Trainer.
        parameters = inspect.signature(scheduler_factory.func).parameters
        if "total_steps" in parameters and scheduler_cfg.get("total_steps") is None:
            total_steps = self.trainer.estimated_stepping_batches
            rebuild_train_loader_after_estimate(self.trainer)
            if not math.isfinite(total_steps):
                raise ConfigError(
                    "task/scheduler=onecycle spans the whole run, which has no end: set "
                    "trainer.max_epochs or trainer.max_steps (or pick task/scheduler=plateau)"
                )
            extra["total_steps"] = max(1, int(total_steps))
            if "pct_start" in parameters:
                pct_start = scheduler_cfg.get("pct_start", parameters["pct_start"].default)
                extra |= fit_warm_up(pct_start, extra["total_steps"])
        scheduler = scheduler_factory(optimizer=optimizer, **extra)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": interval,
                "monitor": self.monitor,
            },
        }
