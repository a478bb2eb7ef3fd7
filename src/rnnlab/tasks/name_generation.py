"""Name generation (one-to-many): whole ``<s> name </s>`` sequences, optionally conditioned.

Batches (data/names.py, `NameGenerationDataModule`) are right-padded ids with `lengths` and, for
a conditional model, `labels` (e.g. the language). Each sequence is read shifted by one from a
fresh state; padding is ignored by the loss. With `num_classes` set, a learned embedding of the
condition is concatenated to every input step, so the same model samples names of a chosen
language (`generate_text(prompt, length, condition="Russian")`).
"""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from rnnlab.tasks.language_model import CharacterModel


class NameGenerationTask(CharacterModel):
    """A character model over whole sequences; sampling starts after `<s>`, stops at `</s>`."""

    whole_sequences = True

    def __init__(
        self,
        vocab_size: int,
        model: dict[str, Any],
        pad_id: int = 0,
        num_classes: int | None = None,
        labels: list[str] | None = None,
        condition_dim: int = 32,
        embedding_dim: int = 128,
        embedding_dropout: float = 0.0,
        output_dropout: float = 0.0,
        tie_weights: bool = False,
        tokens: list[str] | None = None,
        tokenizer: dict[str, Any] | None = None,
        optimizer: dict[str, Any] | None = None,
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(monitor, monitor_mode)
        self.save_hyperparameters(logger=False)
        self.build_character_model(
            vocab_size,
            model,
            pad_id,
            embedding_dim,
            embedding_dropout,
            output_dropout,
            tie_weights,
            tokens,
            tokenizer,
            condition=nn.Embedding(num_classes, condition_dim) if num_classes else None,
        )

    def _loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, int]:
        """Mean loss per predicted character, read shifted by one with padding ignored, and the
        number of characters it averages."""
        inputs, targets = batch["inputs"][:, :-1], batch["inputs"][:, 1:]
        logits, _ = self(inputs, None, batch.get("labels"), batch["lengths"] - 1)
        loss = F.cross_entropy(
            logits.flatten(0, 1), targets.flatten(), ignore_index=self.hparams.pad_id
        )
        return loss, int((batch["lengths"] - 1).sum())
