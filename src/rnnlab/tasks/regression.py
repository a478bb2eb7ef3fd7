"""Many-to-one regression: encoder -> recurrent backbone -> pooling -> one real value (MSE).

The adding problem (data=adding) is its benchmark: two input channels, one target per sequence.
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric, MeanSquaredError

from rnnlab.models import Pooling
from rnnlab.tasks.base import BaseTask


class RegressionTask(BaseTask):
    """MSE on one real target per sequence; `<split>/mse` over every example of the split."""

    def __init__(
        self,
        num_features: int,
        model: dict[str, Any],
        embedding_dim: int = 32,
        embedding_dropout: float = 0.0,
        pooling: str = "last",
        head_dropout: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/mse",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        self.save_hyperparameters(logger=False)
        self.build_encoder_and_backbone(
            model, embedding_dim, None, num_features, 0, embedding_dropout
        )
        self.pooling = Pooling(pooling, self.backbone.output_size)
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(self.backbone.output_size, 1))
        self.train_loss = MeanMetric()  # a Metric: its epoch value is over every rank's examples
        self.val_mse, self.test_mse = MeanSquaredError(), MeanSquaredError()

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, F) features, (B,) lengths -> (B,) predictions."""
        encoded = self.backbone(self.encoder(inputs), lengths)
        return self.head(self.pooling(encoded, lengths)).squeeze(-1)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss = F.mse_loss(self(batch["inputs"], batch.get("lengths")), batch["targets"])
        self.track_loss("train", loss, len(batch["targets"]))
        return loss

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.val_mse.update(self(batch["inputs"], batch.get("lengths")), batch["targets"])

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        self.test_mse.update(self(batch["inputs"], batch.get("lengths")), batch["targets"])

    def on_validation_epoch_end(self) -> None:
        values = {"val/mse": self.val_mse.compute()}
        self.val_mse.reset()
        self.log_dict(values, prog_bar=True)
        self.log_best(values)

    def on_test_epoch_end(self) -> None:
        self.log("test/mse", self.test_mse.compute())
        self.test_mse.reset()
