"""Next-frame prediction of polyphonic piano rolls: 88 independent Bernoulli keys per frame.

    frames (B, T, 88) --linear--> backbone --dropout--> linear --> (B, T, 88) key logits

Each valid step's loss is the NLL of the next frame, the sum over the keys of their binary
cross-entropies; the split's value is the mean over every predicted frame of every sequence
(`<split>/loss`, the NLL per frame of Boulanger-Lewandowski et al. 2012 and Bai et al. 2018).
Padding past a sequence's length is never scored and, left to right, never read by a valid step,
so a padded batch scores exactly what each sequence scores alone. Sampling runs one frame at a
time, carrying the state (`generate`).
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

State = Tensor | tuple[Tensor, Tensor] | None


class PianoRollTask(BaseTask):
    """Next-frame Bernoulli NLL per frame; frame-by-frame sampling of continuations."""

    def __init__(
        self,
        num_features: int,
        model: dict[str, Any],
        embedding_dim: int = 128,
        embedding_dropout: float = 0.0,
        output_dropout: float = 0.0,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        if model.get("bidirectional"):
            raise ConfigError("model.bidirectional=true would read the frame it must predict")
        self.save_hyperparameters(logger=False)
        self.build_encoder_and_backbone(
            model, embedding_dim, None, num_features, 0, embedding_dropout
        )
        self.dropout = nn.Dropout(output_dropout)
        self.decoder = nn.Linear(self.backbone.output_size, num_features)
        # Metric objects: the epoch value is the NLL over every rank's predicted frames
        self.train_loss, self.val_loss, self.test_loss = MeanMetric(), MeanMetric(), MeanMetric()

    def forward(
        self, frames: Tensor, lengths: Tensor | None = None, state: State = None
    ) -> tuple[Tensor, State]:
        """(B, T, K) frames -> (B, T, K) logits of the next frame's keys, and the final state."""
        encoded = self.backbone(self.encoder(frames), lengths=lengths, state=state)
        return self.decoder(self.dropout(encoded.outputs)), encoded.state

    def frame_nll(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """(B, T) NLL of each predicted frame (summed over keys), and the (B, T) valid mask."""
        logits, _ = self(batch["inputs"], batch["lengths"])
        targets = batch["targets"]
        nll = F.binary_cross_entropy_with_logits(logits, targets, reduction="none").sum(-1)
        return nll, valid_mask(batch["lengths"], targets.size(1), targets.device)

    def shared_step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        nll, valid = self.frame_nll(batch)
        loss = nll[valid].mean()
        self.track_loss(split, loss, int(valid.sum()))
        return loss

    def split_loss(self, split: str) -> dict[str, Tensor]:
        metric = getattr(self, f"{split}_loss")
        values = {f"{split}/loss": metric.compute()}
        metric.reset()
        self.log_dict(values, prog_bar=split == "val")
        return values

    def on_validation_epoch_end(self) -> None:
        self.log_best(self.split_loss("val"))

    def on_test_epoch_end(self) -> None:
        self.split_loss("test")

    @torch.no_grad()
    def generate(
        self,
        primer: Tensor,
        length: int,
        temperature: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The (P, K) primer followed by `length` sampled frames: (P + length, K), 0/1.

        The primer runs through the fused kernel once; each new frame then costs one step.
        Every key is drawn on its own from sigmoid(logit / temperature).
        """
        if primer.ndim != 2 or primer.size(0) < 1 or primer.size(1) != self.hparams.num_features:
            raise ValueError(
                f"the primer must be P x {self.hparams.num_features} frames with P >= 1, "
                f"got {tuple(primer.shape)}"
            )
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        was_training = self.training
        self.eval()
        frames = [primer.float().cpu()]
        inputs = primer.float().to(self.device).unsqueeze(0)  # (1, P, K)
        state: State = None
        for _ in range(length):
            logits, state = self(inputs, state=state)
            probabilities = torch.sigmoid(logits[0, -1] / temperature).cpu()  # (K,)
            frame = torch.bernoulli(probabilities, generator=generator)
            frames.append(frame.unsqueeze(0))
            inputs = frame.to(self.device).view(1, 1, -1)
        self.train(was_training)
        return torch.cat(frames)
