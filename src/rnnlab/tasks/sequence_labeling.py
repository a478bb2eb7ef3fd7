"""Many-to-many classification: one class per input step (the copy-memory task, data=copy).

    inputs    (B, T) ids  --encoder--> backbone --linear--> (B, T, C) logits
    targets   (B, T) class ids; steps at or past a sequence's length are left out

The loss is cross-entropy per step, averaged over every valid step of the split (Bai et al.'s
copy-memory loss). `acc` counts every step; `acc_symbols` only the steps whose target is not
`blank_id`, which for copy memory are the recalled symbols: the score a reader understands,
where `acc` is close to 1 for a model that only ever predicts blanks.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric

from rnnlab.errors import ConfigError
from rnnlab.models.heads import valid_mask
from rnnlab.tasks.base import BaseTask


class SequenceLabelingTask(BaseTask):
    """Cross-entropy per step; per-step accuracy, and accuracy on the steps not labelled blank."""

    def __init__(
        self,
        num_classes: int,
        model: dict[str, Any],
        vocab_size: int | None = None,
        num_features: int | None = None,
        pad_id: int = 0,
        labels: list[str] | None = None,
        blank_id: int | None = 0,
        embedding_dim: int = 32,
        embedding_dropout: float = 0.0,
        head_dropout: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"the data must give num_classes >= 2, got {num_classes!r}")
        if blank_id is not None and not 0 <= blank_id < num_classes:
            raise ConfigError(f"task.blank_id={blank_id} is not a class id in [0, {num_classes})")
        self.save_hyperparameters(logger=False)
        self.build_encoder_and_backbone(
            model, embedding_dim, vocab_size, num_features, pad_id, embedding_dropout
        )
        self.head = nn.Sequential(
            nn.Dropout(head_dropout), nn.Linear(self.backbone.output_size, num_classes)
        )
        # Metric objects, so epoch values are over every rank's steps: the loss per step, and
        # the accuracies at validation and test as means of 0/1 over their steps
        self.train_loss = MeanMetric()
        for split in ("val", "test"):
            for name in ("loss", "acc", "acc_symbols"):
                setattr(self, f"{split}_{name}", MeanMetric())

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T) ids or (B, T, F) features -> (B, T, C) logits."""
        return self.head(self.backbone(self.encoder(inputs), lengths).outputs)

    def shared_step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        logits = self(batch["inputs"], batch.get("lengths"))
        targets = batch["targets"]
        valid = torch.ones_like(targets, dtype=torch.bool)
        if batch.get("lengths") is not None:
            valid = valid_mask(batch["lengths"], targets.size(1), targets.device)
        logits, targets = logits[valid], targets[valid]  # (N, C), (N,): the valid steps
        loss = F.cross_entropy(logits, targets)
        self.track_loss(split, loss, targets.numel())
        if split == "train":
            return loss
        correct = (logits.argmax(dim=-1) == targets).float()
        getattr(self, f"{split}_acc").update(correct)
        symbols = targets != self.hparams.blank_id
        if bool(symbols.any()):
            getattr(self, f"{split}_acc_symbols").update(correct[symbols])
        return loss

    def epoch_values(self, split: str) -> dict[str, Tensor]:
        """Log and return the split's metrics over the pass, and start afresh."""
        names = ("loss", "acc") if self.hparams.blank_id is None else ("loss", "acc", "acc_symbols")
        values = {}
        for name in names:
            metric = getattr(self, f"{split}_{name}")
            values[f"{split}/{name}"] = metric.compute()
            metric.reset()
        self.log_dict(values, prog_bar=split == "val")
        return values

    def on_validation_epoch_end(self) -> None:
        self.log_best(self.epoch_values("val"))

    def on_test_epoch_end(self) -> None:
        self.epoch_values("test")
