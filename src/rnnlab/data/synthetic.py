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

Beside it, the two long-memory benchmarks of Bai, Kolter & Koltun (2018, Table 1), generated as
their code generates them (github.com/locuslab/TCN), so results compare with their table:

- adding problem (Hochreiter & Schmidhuber 1997): T steps of two channels, a value in U(0, 1)
  and a marker that is 1 at exactly two distinct steps; the target is the sum of the two marked
  values (MSE; always predicting 1 scores 1/6 in expectation)::

      values   .31 .72 .05 .90 ... .44 .18
      markers   0   1   0   0  ...  1   0     ->   .72 + .44

- copy memory (Arjovsky et al. 2016, Bai et al.'s version): 10 symbols in 1..8, T-1 blanks (0),
  then 11 delimiters (9); the targets are blanks everywhere except the last 10 steps, which
  hold the 10 symbols (cross-entropy per step over all T+20 steps)::

      inputs    3 1 4 1 5 9 2 6 5 3  0 0 ... 0  9 9 9 9 9 9 9 9 9 9 9
      targets   0 0 0 0 0 0 0 0 0 0  0 0 ... 0  0 3 1 4 1 5 9 2 6 5 3   (symbols in 1..8)
"""

from __future__ import annotations

import torch
from torch.utils.data import StackDataset

from rnnlab.data.base import DataModule, SequenceDataModule, require_positive_ints
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


def make_adding(num_examples: int, steps: int, generator: torch.Generator) -> StackDataset:
    """`inputs` (N, T, 2): values in U(0, 1) and the marker channel; `targets` (N,): the sum of
    the two marked values."""
    values = torch.rand(num_examples, steps, generator=generator)
    # two distinct marked steps per example, uniform over the T(T-1)/2 pairs
    positions = torch.rand(num_examples, steps, generator=generator).topk(2, dim=1).indices
    markers = torch.zeros(num_examples, steps).scatter_(1, positions, 1.0)
    targets = values.gather(1, positions).sum(dim=1)
    return StackDataset(inputs=torch.stack([values, markers], dim=-1), targets=targets)


def make_copy(
    num_examples: int, blanks: int, memory: int, num_symbols: int, generator: torch.Generator
) -> StackDataset:
    """`inputs` and `targets` (N, memory + blanks + memory) ids: symbols in 1..num_symbols,
    0 blank, num_symbols + 1 the delimiter."""
    symbols = torch.randint(1, num_symbols + 1, (num_examples, memory), generator=generator)
    delimiter = torch.full((num_examples, memory + 1), num_symbols + 1)
    silence = torch.zeros(num_examples, blanks - 1, dtype=torch.long)
    inputs = torch.cat([symbols, silence, delimiter], dim=1)
    quiet = torch.zeros(num_examples, memory + blanks, dtype=torch.long)
    return StackDataset(inputs=inputs, targets=torch.cat([quiet, symbols], dim=1))


class SyntheticSplits(DataModule):
    """Train / val / test of one generator, each split from its own seeded generator; every
    sequence has the same length, so batches need no padding and carry no `lengths`."""

    def __init__(self, num_train: int, num_val: int, num_test: int, **loader_kwargs) -> None:
        super().__init__(**loader_kwargs)
        require_positive_ints(num_train=num_train, num_val=num_val, num_test=num_test)
        self.sizes = {"train": num_train, "val": num_val, "test": num_test}

    def generate(self, size: int, generator: torch.Generator) -> StackDataset:
        raise NotImplementedError

    def build_splits(self) -> None:
        for offset, (split, size) in enumerate(self.sizes.items()):
            generator = torch.Generator().manual_seed(self.seed * 1000 + offset)
            self.datasets[split] = self.generate(size, generator)


class AddingDataModule(SyntheticSplits):
    """The adding problem over `seq_len` steps (Bai et al.: 200, 400, 600; 50,000 training and
    1,000 test sequences)."""

    def __init__(
        self,
        seq_len: int = 200,
        num_train: int = 50000,
        num_val: int = 1000,
        num_test: int = 1000,
        **loader_kwargs,
    ) -> None:
        super().__init__(num_train, num_val, num_test, **loader_kwargs)
        if not isinstance(seq_len, int) or seq_len < 2:
            raise ConfigError(
                f"data.seq_len must be an integer >= 2 (two steps are marked), got {seq_len!r}"
            )
        self.seq_len = seq_len

    def generate(self, size: int, generator: torch.Generator) -> StackDataset:
        return make_adding(size, self.seq_len, generator)

    def build(self) -> DataSpec:
        self.build_splits()
        return DataSpec(num_features=2)

    def data_state(self) -> dict:
        return {"seq_len": self.seq_len, "sizes": self.sizes}


class CopyDataModule(SyntheticSplits):
    """Copy memory with `blanks` (T) steps between the symbols and their recall (Bai et al.:
    T=1000 over 10,000 training and 1,000 test sequences)."""

    def __init__(
        self,
        blanks: int = 1000,
        memory: int = 10,
        num_symbols: int = 8,
        num_train: int = 10000,
        num_val: int = 1000,
        num_test: int = 1000,
        **loader_kwargs,
    ) -> None:
        super().__init__(num_train, num_val, num_test, **loader_kwargs)
        if not isinstance(blanks, int) or blanks < 1:
            raise ConfigError(
                f"data.blanks must be an integer >= 1 (the delay before the delimiter), "
                f"got {blanks!r}"
            )
        require_positive_ints(memory=memory)
        if not isinstance(num_symbols, int) or num_symbols < 2:
            raise ConfigError(f"data.num_symbols must be an integer >= 2, got {num_symbols!r}")
        self.blanks = blanks
        self.memory = memory
        self.num_symbols = num_symbols

    def generate(self, size: int, generator: torch.Generator) -> StackDataset:
        return make_copy(size, self.blanks, self.memory, self.num_symbols, generator)

    def build(self) -> DataSpec:
        self.build_splits()
        classes = self.num_symbols + 2  # blank, the symbols, the delimiter
        return DataSpec(
            vocab_size=classes,
            num_classes=classes,
            pad_id=0,  # never padded: every sequence is memory + blanks + memory long
            labels=("blank", *(str(s) for s in range(1, self.num_symbols + 1)), "delimiter"),
        )

    def data_state(self) -> dict:
        return {
            "blanks": self.blanks,
            "memory": self.memory,
            "num_symbols": self.num_symbols,
            "sizes": self.sizes,
        }
