"""Delayed recall: a synthetic long-memory classification task generated in memory.

Each sequence starts with a key symbol, followed by distractor symbols; the label is the key.
The model must carry the key across the whole sequence, read at its last valid step::

    key  distractors ...........................  label
     5   3 1 7 7 2 8 1 ... (length-1 symbols)  ->  5

A vanilla RNN's gradient vanishes over that distance, so it stays near chance (1/num_symbols)
as `max_len` grows, while LSTM and GRU learn it: the textbook contrast, offline and fast. Beyond
about 40 steps the gated cells need their gates initialised for long memory too
(`model.chrono_t_max`, as in `experiment=recall_long`).
Lengths vary in [min_len, max_len], so every batch also exercises the padding path.
"""

from __future__ import annotations

import torch

from rnnlab.data.base import SequenceDataModule
from rnnlab.data.collate import SequenceDataset
from rnnlab.data.spec import DataSpec
from rnnlab.errors import ConfigError


def make_recall(
    num_examples: int, num_symbols: int, min_len: int, max_len: int, generator: torch.Generator
) -> SequenceDataset:
    """A key in 1..K, then distractors in K+1..2K (0 is padding); label = key - 1."""
    lengths = torch.randint(min_len, max_len + 1, (num_examples,), generator=generator)
    keys = torch.randint(1, num_symbols + 1, (num_examples, 1), generator=generator)
    noise = torch.randint(
        num_symbols + 1, 2 * num_symbols + 1, (num_examples, max_len - 1), generator=generator
    )
    symbols = torch.cat([keys, noise], dim=1)  # (N, max_len)
    sequences = [symbols[i, :length] for i, length in enumerate(lengths.tolist())]
    return SequenceDataset(sequences, keys.squeeze(1) - 1)


class RecallDataModule(SequenceDataModule):
    """Delayed-recall train / val / test sets, each from its own seeded generator."""

    def __init__(
        self,
        num_symbols: int = 8,
        min_len: int = 20,
        max_len: int = 30,
        num_train: int = 8000,
        num_val: int = 1000,
        num_test: int = 1000,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        if num_symbols < 2:
            raise ConfigError(f"data.num_symbols must be >= 2, got {num_symbols}")
        if not 1 <= min_len <= max_len:
            raise ConfigError(f"need 1 <= data.min_len <= data.max_len, got {min_len}, {max_len}")
        self.num_symbols = num_symbols
        self.min_len = min_len
        self.max_len = max_len
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}

    def build(self) -> DataSpec:
        for offset, (split, size) in enumerate(self.sizes.items()):
            generator = torch.Generator().manual_seed(self.seed * 1000 + offset)
            self.datasets[split] = make_recall(
                size, self.num_symbols, self.min_len, self.max_len, generator
            )
        return DataSpec(
            vocab_size=2 * self.num_symbols + 1,
            num_classes=self.num_symbols,
            pad_id=0,
            labels=tuple(str(symbol) for symbol in range(1, self.num_symbols + 1)),
            class_counts=self.train_set.class_counts(self.num_symbols),
        )

    def data_state(self) -> dict:
        """What the data is drawn from (with the seed): a checkpoint evaluated with another seed
        or other lengths tests on the data it was trained for, or stops naming what differs."""
        return {
            "num_symbols": self.num_symbols,
            "min_len": self.min_len,
            "max_len": self.max_len,
        }
