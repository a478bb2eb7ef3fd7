"""Many-to-one classification: encoder -> recurrent backbone -> pooling -> linear head."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor, nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
)

from rnnlab.errors import ConfigError
from rnnlab.models import Pooling
from rnnlab.tasks.base import BaseTask


class ClassificationTask(BaseTask):
    """Cross-entropy over pooled sequence vectors; accuracy and macro-F1 on every split.

    `model` holds the backbone's arguments (the `model` config group); the sizes (`vocab_size`
    or `num_features`, `num_classes`, `pad_id`, `labels`) come from the datamodule's DataSpec.
    """

    def __init__(
        self,
        num_classes: int,
        model: dict[str, Any],
        vocab_size: int | None = None,
        num_features: int | None = None,
        pad_id: int = 0,
        labels: list[str] | None = None,
        class_counts: list[int] | None = None,
        class_weighting: bool = False,
        label_smoothing: float = 0.0,
        embedding_dim: int = 64,
        embedding_dropout: float = 0.0,
        pooling: str = "last",
        head_dropout: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/acc",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ConfigError(f"the data must give num_classes >= 2, got {num_classes!r}")
        self.save_hyperparameters(logger=False)
        self.build_encoder_and_backbone(
            model, embedding_dim, vocab_size, num_features, pad_id, embedding_dropout
        )
        self.pooling = Pooling(pooling, self.backbone.output_size)
        self.head = nn.Sequential(
            nn.Dropout(head_dropout), nn.Linear(self.backbone.output_size, num_classes)
        )
        metrics = MetricCollection(
            {
                "acc": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        # Metric objects, not tensors: their epoch value is reduced over every rank's examples
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"task.label_smoothing must be in [0, 1), got {label_smoothing}")
        if class_weighting and not class_counts:
            raise ConfigError("task.class_weighting=true needs class counts from the data")
        weights = None
        if class_weighting:
            # "balanced" weights: N / (C * count), so every class weighs the same in total
            counts = torch.tensor(class_counts, dtype=torch.float).clamp(min=1)
            weights = counts.sum() / (len(counts) * counts)
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T) ids or (B, T, F) features, (B,) lengths -> (B, C) logits."""
        encoded = self.backbone(self.encoder(inputs), lengths)
        return self.head(self.pooling(encoded, lengths))

    def shared_step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        metrics = getattr(self, f"{split}_metrics")
        logits = self(batch["inputs"], batch["lengths"])
        labels = batch["labels"]
        # class weights and smoothing shape training only; validation and test report the plain
        # loss, comparable across runs whatever their training settings
        weights = self.class_weights if split == "train" else None
        loss = F.cross_entropy(
            logits,
            labels,
            weight=weights,
            label_smoothing=self.hparams.label_smoothing if split == "train" else 0.0,
        )
        # A weighted loss is a mean over the labels' weights: each batch counts by their sum,
        # so the epoch value is the loss over the whole split on every rank together.
        share = weights[labels].sum() if weights is not None else labels.numel()
        epoch_loss = getattr(self, f"{split}_loss")
        epoch_loss(loss.detach(), share)
        metrics.update(logits, labels)
        if split == "val":
            self.val_confusion.update(logits, labels)
        self.log(
            f"{split}/loss",
            epoch_loss,
            on_step=split == "train",
            on_epoch=True,
            prog_bar=True,
        )
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=split != "train")
        return loss

    def on_validation_epoch_end(self) -> None:
        confusion = self.val_confusion.compute()
        self.val_confusion.reset()
        self.log_best({**self.val_metrics.compute(), "val/loss": self.val_loss.compute()})
        if not self.trainer.sanity_checking and self.trainer.is_global_zero:
            self.log_confusion_matrix(confusion)

    def log_confusion_matrix(self, confusion: Tensor) -> None:
        """The validation confusion matrix (rows: true class, normalised) as a TensorBoard image."""
        loggers = [lg for lg in self.trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = self.hparams.labels or [str(i) for i in range(self.hparams.num_classes)]
        rates = confusion.float() / confusion.sum(dim=1, keepdim=True).clamp(min=1)
        size = 2 + 0.35 * len(labels)
        figure, axis = plt.subplots(figsize=(size, size))
        axis.imshow(rates.cpu().numpy(), cmap="Blues", vmin=0, vmax=1)
        axis.set_xticks(range(len(labels)), labels, rotation=90)
        axis.set_yticks(range(len(labels)), labels)
        axis.set_xlabel("predicted")
        axis.set_ylabel("true")
        figure.tight_layout()
        for logger in loggers:
            logger.experiment.add_figure("val/confusion_matrix", figure, self.global_step)
        plt.close(figure)

    @torch.no_grad()
    def predict_proba(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, C) class probabilities."""
        return self(inputs, lengths).softmax(dim=-1)
