"""How much gradient reaches each time step: vanishing and exploding gradients made visible.

For every training batch the backbone reports dL/dx_t, the gradient of the loss with respect to
its input at step t. The input at step t reaches the loss only through the hidden state h_t and
the recurrence after it, so ||dL/dx_t|| over t shows how far back the loss's gradient flows:
a vanilla RNN's decays geometrically from the last step, an LSTM's or GRU's much less. Each
epoch logs the mean norm per step as a histogram, the ratio of the first step's norm to the
last step's, and a heat map (epoch x time step, log10 scale) as a TensorBoard image.
"""

from __future__ import annotations

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402
from torch import Tensor  # noqa: E402


class GradientFlow(L.Callback):
    """Per-time-step gradient norms of `module.backbone` (any task with a backbone).

    `max_steps`: the longest prefix of time steps tracked. Padded steps get no gradient and
    are left out of the means (a norm of exactly 0 counts as padding).
    """

    def __init__(self, max_steps: int = 512) -> None:
        self.max_steps = max_steps
        self.rows: list[np.ndarray] = []  # one per epoch: mean ||dL/dx_t|| for t = 0, 1, ...
        self._sums = torch.zeros(max_steps, dtype=torch.float64)
        self._counts = torch.zeros(max_steps, dtype=torch.float64)

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        module.backbone.input_grad_hook = self._record

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
        for logger in trainer.loggers:
            if not isinstance(logger, TensorBoardLogger):
                continue
            writer = logger.experiment
            step = trainer.current_epoch
            writer.add_histogram("gradient_flow/norm_by_step", profile, step)
            ratio = profile[0] / max(profile[-1], 1e-30)
            writer.add_scalar("gradient_flow/first_over_last", ratio, step)
            writer.add_figure("gradient_flow/heatmap", self.figure(), step)

    def figure(self) -> plt.Figure:
        width = max(len(row) for row in self.rows)
        grid = np.full((len(self.rows), width), np.nan)
        for i, row in enumerate(self.rows):
            grid[i, : len(row)] = np.log10(np.maximum(row, 1e-30))
        figure, axis = plt.subplots(figsize=(6, 1.5 + 0.3 * len(self.rows)))
        image = axis.imshow(grid, aspect="auto", cmap="magma", interpolation="nearest")
        axis.set_xlabel("time step t")
        axis.set_ylabel("epoch")
        axis.set_yticks(range(len(self.rows)))
        axis.set_title("log10 ||dL/dx_t||")
        figure.colorbar(image, ax=axis)
        figure.tight_layout()
        plt.close(figure)
        return figure
