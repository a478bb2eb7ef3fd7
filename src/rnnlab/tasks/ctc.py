"""Sequence recognition with CTC (Graves et al. 2006): unsegmented frames -> a label string.

    frames (B, T, F) --linear--> backbone --dropout--> linear --> (B, T, 1 + C) log-probabilities
    class 0 is the blank; class 1 + c is label c (for connected digits, the digit c)

The loss is `nn.functional.ctc_loss` over each utterance's valid frames only (its length is the
input length, so padding never changes it), summed and divided by the number of target labels:
the negative log-likelihood per label, the same whatever the batching. Decoding is greedy (best
path: the most probable class per frame, repeats collapsed, blanks dropped) or a prefix beam
search (the most probable label strings, each summed over all its alignments). Metrics: the
label (digit) error rate, edit distance over reference length (`val/der`), and the share of
utterances recognised exactly (`val/acc`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.text import CharErrorRate

from rnnlab.errors import ConfigError
from rnnlab.tasks.base import BaseTask

BLANK = 0


def greedy_decode(log_probs: Tensor, lengths: Tensor) -> list[list[int]]:
    """(B, T, 1 + C) -> per utterance the labels (0..C-1) of its best path over valid frames."""
    best = log_probs.argmax(dim=-1).tolist()  # (B, T)
    decoded = []
    for path, length in zip(best, lengths.tolist(), strict=True):
        labels, previous = [], BLANK
        for symbol in path[:length]:
            if symbol != previous and symbol != BLANK:
                labels.append(symbol - 1)
            previous = symbol
        decoded.append(labels)
    return decoded


def prefix_beam_search(log_probs: Tensor, beam_size: int) -> tuple[list[int], float]:
    """(T, 1 + C) log-probabilities of ONE utterance -> (labels, log-probability of them).

    Each kept prefix carries two log-probabilities: of its alignments so far ending in a blank
    and ending in its last label; a label equal to the prefix's last one extends it only after
    a blank, otherwise it merges into that label. With a beam as wide as the number of prefixes
    this is exact: the most probable labelling, summed over all of its alignments. A beam of one
    is not greedy decoding: it keeps the most probable prefix summed over alignments, where
    greedy follows the single best path (the two agree when frames are confident).
    """
    if beam_size < 1:
        raise ConfigError(f"task.beam_size must be >= 1, got {beam_size}")
    table = log_probs.double().tolist()
    minus_inf = -math.inf
    beams: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, minus_inf)}

    def add(a: float, b: float) -> float:
        if a == minus_inf:
            return b
        if b == minus_inf:
            return a
        return max(a, b) + math.log1p(math.exp(-abs(a - b)))

    for frame in table:
        following: dict[tuple[int, ...], list[float]] = {}
        for prefix, (blank, label) in beams.items():
            total = add(blank, label)
            stay = following.setdefault(prefix, [minus_inf, minus_inf])
            stay[0] = add(stay[0], total + frame[BLANK])
            for symbol in range(1, len(frame)):
                score = frame[symbol]
                if prefix and prefix[-1] == symbol:
                    stay[1] = add(stay[1], label + score)  # the same label, not yet ended
                    reached = blank + score  # a repeat, after a blank
                else:
                    reached = total + score
                grown = following.setdefault(prefix + (symbol,), [minus_inf, minus_inf])
                grown[1] = add(grown[1], reached)
        ranked = sorted(following.items(), key=lambda item: -add(*item[1]))
        beams = {prefix: (scores[0], scores[1]) for prefix, scores in ranked[:beam_size]}
    prefix, scores = max(beams.items(), key=lambda item: add(*item[1]))
    return [symbol - 1 for symbol in prefix], add(*scores)


class CTCTask(BaseTask):
    """Per-frame label posteriors trained with CTC; decoded greedily or by prefix beam search
    (`beam_size` > 1, at test and in `transcribe`)."""

    def __init__(
        self,
        num_classes: int,
        model: dict[str, Any],
        num_features: int | None = None,
        vocab_size: int | None = None,
        pad_id: int = 0,
        labels: list[str] | None = None,
        embedding_dim: int = 64,
        embedding_dropout: float = 0.0,
        head_dropout: float = 0.0,
        beam_size: int = 1,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/der",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ConfigError(f"the data must give num_classes >= 1, got {num_classes!r}")
        if not isinstance(beam_size, int) or beam_size < 1:
            raise ConfigError(f"task.beam_size must be a positive integer, got {beam_size!r}")
        self.save_hyperparameters(logger=False)
        self.labels = labels or [str(i) for i in range(num_classes)]
        self.build_encoder_and_backbone(
            model, embedding_dim, vocab_size, num_features, pad_id, embedding_dropout
        )
        self.head = nn.Sequential(
            nn.Dropout(head_dropout), nn.Linear(self.backbone.output_size, num_classes + 1)
        )
        # Metric objects: epoch values over every rank's utterances
        for split in ("train", "val", "test"):
            setattr(self, f"{split}_loss", MeanMetric())
        for split in ("val", "test"):
            setattr(self, f"{split}_der", CharErrorRate())
            setattr(self, f"{split}_acc", MeanMetric())

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, T, F) frames -> (B, T, 1 + C) log-probabilities (blank first)."""
        outputs = self.backbone(self.encoder(inputs), lengths).outputs
        return self.head(outputs).log_softmax(dim=-1)

    def ctc_losses(self, log_probs: Tensor, batch: dict[str, Tensor]) -> Tensor:
        """(B,) negative log-likelihood of each utterance's target over its valid frames."""
        return F.ctc_loss(
            log_probs.transpose(0, 1).float(),  # (T, B, 1 + C), as ctc_loss takes it
            batch["targets"] + 1,  # label c is class 1 + c; padding is cut by target_lengths
            batch["lengths"],
            batch["target_lengths"],
            blank=BLANK,
            reduction="none",
            zero_infinity=self.training,  # an utterance too short for its labels adds nothing
        )

    def decode(self, log_probs: Tensor, lengths: Tensor, beam_size: int = 1) -> list[str]:
        """Label strings of a batch: greedy for a beam of 1, else prefix beam search."""
        if beam_size == 1:
            decoded = greedy_decode(log_probs, lengths)
        else:
            decoded = [
                prefix_beam_search(row[:length], beam_size)[0]
                for row, length in zip(log_probs, lengths.tolist(), strict=True)
            ]
        return ["".join(self.labels[label] for label in labels) for labels in decoded]

    def shared_step(self, batch: dict[str, Tensor], split: str) -> Tensor:
        log_probs = self(batch["inputs"], batch["lengths"])
        losses = self.ctc_losses(log_probs, batch)
        label_count = batch["target_lengths"].sum()
        loss = losses.sum() / label_count
        self.track_loss(split, loss, label_count)
        if split == "train":
            return loss
        beam = self.hparams.beam_size if split == "test" else 1
        predictions = self.decode(log_probs.detach().cpu(), batch["lengths"].cpu(), beam)
        references = [
            "".join(self.labels[label] for label in row[:length])
            for row, length in zip(
                batch["targets"].tolist(), batch["target_lengths"].tolist(), strict=True
            )
        ]
        getattr(self, f"{split}_der").update(predictions, references)
        exact = [float(p == r) for p, r in zip(predictions, references, strict=True)]
        getattr(self, f"{split}_acc").update(torch.tensor(exact, device=self.device))
        return loss

    def epoch_values(self, split: str) -> dict[str, Tensor]:
        """Log and return the split's metrics over the pass, and start afresh."""
        values = {}
        for name in ("loss", "der", "acc"):
            metric = getattr(self, f"{split}_{name}")
            values[f"{split}/{name}"] = metric.compute()
            metric.reset()
        self.log_dict(values, prog_bar=split == "val")
        return values

    def on_validation_epoch_end(self) -> None:
        self.log_best(self.epoch_values("val"))

    def on_test_epoch_end(self) -> None:
        self.epoch_values("test")

    @torch.no_grad()
    def transcribe(
        self, inputs: Tensor, lengths: Tensor, beam_size: int | None = None
    ) -> list[str]:
        """Label strings of a padded batch of frames (`beam_size`: the task's by default)."""
        return self.decode(self(inputs, lengths), lengths, beam_size or self.hparams.beam_size)
