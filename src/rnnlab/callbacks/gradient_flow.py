"""How much gradient reaches each time step: vanishing and exploding gradients made visible.

For every training batch the backbone reports dL/dx_t, the gradient of the loss with respect to
its input at step t. The input at step t reaches the loss only through the hidden state h_t and
the recurrence after it, so ||dL/dx_t|| over t shows how far back the loss's gradient flows:
a vanilla RNN's decays geometrically from the last step, an LSTM's or GRU's much less.

Each epoch k logs, in TensorBoard:
- `gradient_flow/log10_norm_by_step/epoch_k`: log10 of the mean norm per step, one scalar per
  time step with t as its x axis, so TensorBoard overlays the runs of a multirun (the cells) on
  one chart, and `scripts/plot_runs.py` draws them into one figure;
- `gradient_flow/log10_first_over_last`: log10 of the first step's norm over the last step's;
- `gradient_flow/heatmap`: epoch x time step, log10, on one fixed colour range for every run,
  titled with the cell and the run.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import Logger, TensorBoardLogger  # noqa: E402
from torch import Tensor  # noqa: E402

TINY = 1e-30  # floor before log10: a step whose gradient underflowed to zero


class GradientFlow(L.Callback):
    """Per-time-step gradient norms of `module.backbone` (any task with a backbone).

    `max_steps`: the longest prefix of time steps tracked. Padded steps get no gradient and
    are left out of the means (a norm of exactly 0 counts as padding).
    `log10_range`: the heat map's colour range (low, high) in log10 units, the same for every
    run so that cells compare side by side; None gives each run its own range.
    `relative`: draw each epoch's norms divided by its last step's norm (the step nearest the
    loss) instead of the norms themselves; `log10_range` is then in those units.
    """

    def __init__(
        self,
        max_steps: int = 512,
        log10_range: tuple[float, float] | None = (-8.0, -2.0),
        relative: bool = False,
    ) -> None:
        if log10_range is not None and not (
            len(log10_range) == 2 and log10_range[0] < log10_range[1]
        ):
            raise ValueError(
                f"callbacks.gradient_flow.log10_range must be [low, high] with low < high or null, "
                f"got {list(log10_range)}"
            )
        self.max_steps = max_steps
        self.log10_range = tuple(log10_range) if log10_range is not None else None
        self.relative = relative
        self.title = "gradient flow"
        self.rows: list[np.ndarray] = []  # one per epoch: mean ||dL/dx_t|| for t = 0, 1, ...
        self._sums = torch.zeros(max_steps, dtype=torch.float64)
        self._counts = torch.zeros(max_steps, dtype=torch.float64)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        module.backbone.input_grad_hook = self._record
        model = module.hparams.get("model") or {}
        cell = ("bi" if model.get("bidirectional") else "") + str(model.get("cell", "?"))
        self.title = " | ".join([cell, *filter(None, map(run_name, trainer.loggers[:1]))])

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        module.backbone.input_grad_hook = None

    def on_train_epoch_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._sums.zero_()
        self._counts.zero_()

    def _record(self, grad: Tensor) -> None:
        norms = grad.detach().float().norm(dim=-1)[:, : self.max_steps].cpu()  # (B, T)
        steps = norms.size(1)
        self._sums[:steps] += norms.sum(0).double()
        self._counts[:steps] += (norms > 0).sum(0).double()

    def epoch_profile(self) -> np.ndarray:
        seen = int((self._counts > 0).nonzero().max()) + 1 if bool((self._counts > 0).any()) else 0
        return (self._sums[:seen] / self._counts[:seen].clamp(min=1)).numpy()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        profile = self.epoch_profile()
        if not len(profile):
            return
        self.rows.append(profile)
        if not trainer.is_global_zero:
            return
        log_profile = np.log10(np.maximum(profile, TINY))
        epoch = trainer.current_epoch
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            writer = logger.experiment
            # one tag per epoch with the time step as x: runs overlay as lines over t
            for t, value in enumerate(log_profile):
                writer.add_scalar(f"gradient_flow/log10_norm_by_step/epoch_{epoch}", value, t)
            ratio = log_profile[0] - log_profile[-1]
            writer.add_scalar("gradient_flow/log10_first_over_last", ratio, epoch)
            writer.add_figure("gradient_flow/heatmap", self.figure(), epoch)

    def figure(self) -> plt.Figure:
        width = max(len(row) for row in self.rows)
        grid = np.full((len(self.rows), width), np.nan)
        for i, row in enumerate(self.rows):
            grid[i, : len(row)] = np.log10(np.maximum(row, TINY))
            if self.relative:
                grid[i, : len(row)] -= grid[i, len(row) - 1]
        low, high = self.log10_range or (None, None)
        figure, axis = plt.subplots(figsize=(6, 1.8 + 0.3 * len(self.rows)))
        image = axis.imshow(
            grid, aspect="auto", cmap="magma", interpolation="nearest", vmin=low, vmax=high
        )
        axis.set_xlabel("time step t")
        axis.set_ylabel("epoch")
        axis.set_yticks(range(len(self.rows)))
        quantity = "||dL/dx_t|| / ||dL/dx_last||" if self.relative else "||dL/dx_t||"
        axis.set_title(f"{self.title}\nlog10 {quantity}", fontsize="medium")
        figure.colorbar(image, ax=axis, extend="both" if self.log10_range else "neither")
        figure.tight_layout()
        plt.close(figure)
        return figure


def run_name(logger: Logger) -> str:
    """The run as TensorBoard lists it: the logger's name and version, or, where both are empty
    (rnnlab's runs write to `<run dir>/tensorboard`), the run directory's name."""
    parts = [str(part) for part in (logger.name, logger.version) if part not in (None, "")]
    if parts:
        return "/".join(parts)
    directory = Path(logger.log_dir or logger.save_dir or "")
    return directory.parent.name if directory.name == "tensorboard" else directory.name
