"""Multi-step forecasting: a recurrent encoder over the look-back and a direct multi-step head.

    (B, L, C) --RevIN--> --channel independence--> (B*C, L, 1) --segments of w steps-->
    (B*C, L/w, w) --linear+ReLU--> backbone --last state--> linear --> (B*C, H) --> (B, H, C)

The options that matter for recurrent forecasters on ETT (SegRNN, Lin et al. 2023; RevIN, Kim
et al. 2022; PatchTST's channel independence, Nie et al. 2023):
- `revin`: per-window instance normalisation; each input window is shifted and scaled by its own
  mean and std, and the forecast is mapped back, so level shifts between splits cost nothing.
- `channel_independent`: every channel is its own univariate series through shared weights.
- `segment_len`: the backbone steps over segments of w points instead of single points,
  so it runs L/w steps (the gradient path that SegRNN shortens).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import (
    MeanAbsoluteError,
    MeanMetric,
    MeanSquaredError,
    MetricCollection,
    SumMetric,
)

from rnnlab.errors import ConfigError
from rnnlab.tasks.base import BaseTask


class RevIN(nn.Module):
    """Reversible instance normalisation over the time axis of (B, T, C) windows."""

    def __init__(self, channels: int, affine: bool = False, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.affine = affine
        if affine:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def normalize(self, x: Tensor) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        mean = x.mean(dim=1, keepdim=True).detach()
        std = torch.sqrt(x.var(dim=1, keepdim=True, unbiased=False) + self.eps).detach()
        x = (x - mean) / std
        if self.affine:
            x = x * self.weight + self.bias
        return x, (mean, std)

    def denormalize(self, y: Tensor, stats: tuple[Tensor, Tensor]) -> Tensor:
        mean, std = stats
        if self.affine:
            y = (y - self.bias) / (self.weight + self.eps * self.eps)
        return y * std + mean


class ForecastingTask(BaseTask):
    """MSE-trained direct multi-step forecaster; MSE and MAE over every window of each split."""

    def __init__(
        self,
        num_features: int,
        horizon: int,
        model: dict[str, Any],
        lookback: int | None = None,
        embedding_dim: int = 64,
        embedding_dropout: float = 0.0,
        segment_len: int = 1,
        channel_independent: bool = True,
        revin: bool = True,
        revin_affine: bool = False,
        head_dropout: float = 0.0,
        loss: str = "mse",
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/mse",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        self.save_hyperparameters(logger=False)
        if not isinstance(segment_len, int) or segment_len < 1:
            raise ConfigError(f"task.segment_len must be a positive integer, got {segment_len!r}")
        if lookback is not None and lookback % segment_len:
            raise ConfigError(
                f"data.lookback={lookback} is not a multiple of task.segment_len={segment_len}"
            )
        if loss not in ("mse", "mae", "huber"):
            raise ConfigError(f"task.loss must be 'mse', 'mae' or 'huber', got {loss!r}")
        channels = 1 if channel_independent else num_features
        self.build_encoder_and_backbone(
            model, embedding_dim, None, segment_len * channels, 0, embedding_dropout
        )
        self.revin = RevIN(num_features, revin_affine) if revin else None
        self.head = nn.Sequential(
            nn.Dropout(head_dropout), nn.Linear(self.backbone.output_size, horizon * channels)
        )
        metrics = MetricCollection({"mse": MeanSquaredError(), "mae": MeanAbsoluteError()})
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.test_windows = SumMetric()
        self.train_loss = MeanMetric()  # a Metric: its epoch value is over every rank's windows

    def forward(self, inputs: Tensor) -> Tensor:
        """(B, L, C) look-back -> (B, H, C) forecast, in the data's (z-scored) units."""
        batch, steps, num_features = inputs.shape
        if num_features != self.hparams.num_features:
            raise ValueError(f"expected {self.hparams.num_features} channels, got {num_features}")
        segment = self.hparams.segment_len
        if steps % segment:
            raise ValueError(f"a look-back of {steps} is not a multiple of task.segment_len")
        x = inputs
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        if self.hparams.channel_independent:
            x = x.permute(0, 2, 1).reshape(batch * num_features, steps, 1)  # (B*C, L, 1)
        x = x.reshape(x.size(0), steps // segment, segment * x.size(-1))  # (B', L/w, w*c)
        encoded = self.backbone(F.relu(self.encoder(x)))
        y = self.head(encoded.last)  # (B', H*c)
        horizon = self.hparams.horizon
        if self.hparams.channel_independent:
            y = y.view(batch, num_features, horizon).transpose(1, 2).contiguous()  # (B, H, C)
        else:
            y = y.view(batch, horizon, num_features)
        if self.revin is not None:
            y = self.revin.denormalize(y, stats)
        return y

    def _loss(self, forecast: Tensor, targets: Tensor) -> Tensor:
        if self.hparams.loss == "mae":
            return F.l1_loss(forecast, targets)
        if self.hparams.loss == "huber":
            return F.huber_loss(forecast, targets)
        return F.mse_loss(forecast, targets)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(self(batch["inputs"]), batch["targets"])
        self.track_loss("train", loss, len(batch["inputs"]))  # every window has H x C points
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        # The metrics sum squared / absolute errors, so the epoch value is over every window.
        self.val_metrics.update(self(batch["inputs"]), batch["targets"])

    def on_validation_epoch_end(self) -> None:
        values = self.val_metrics.compute()
        self.val_metrics.reset()
        self.log_dict(values, prog_bar=True)
        self.log_best(values)

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_metrics.update(self(batch["inputs"]), batch["targets"])
        self.test_windows.update(len(batch["inputs"]))

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        self.log("test/windows", self.test_windows.compute())
        self.test_metrics.reset()
        self.test_windows.reset()

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        return self(batch["inputs"])
