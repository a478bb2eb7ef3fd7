"""Batch layout for variable-length sequences: right padding plus lengths, and length bucketing.

A batch is a dict: ``inputs`` (B, T) ids or (B, T, F) features, right-padded; ``lengths`` (B,);
``labels`` (B,). The bucketing sampler keeps padding waste to a few percent while every example
is still seen exactly once per epoch::

    shuffle all indices     7 2 9 4 0 5 ...
    cut into windows        [7 2 9 4 0 5 ...] [...]     (bucket_size_multiplier batches each)
    sort each window        by length (times 1 + U(-noise, noise)), then cut it into batches
    shuffle the batches     so consecutive steps see different lengths

Large windows waste the least padding but approach a global sort by length, which puts the
same examples together every epoch; noisy sort keys (AllenNLP's `padding_noise`) let batch
composition change between epochs at a small cost in padding. `scripts/bench_bucketing.py`
measures both effects on a data set's lengths.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from rnnlab.errors import ConfigError


class SequenceDataset(Dataset):
    """Examples as 1-D id tensors (or (T, F) feature tensors) with integer labels."""

    def __init__(self, sequences: Sequence[Tensor], labels: Sequence[int] | Tensor) -> None:
        if len(sequences) != len(labels):
            raise ValueError(f"{len(sequences)} sequences but {len(labels)} labels")
        self.sequences = list(sequences)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.lengths = torch.tensor([len(s) for s in self.sequences], dtype=torch.long)
        if len(self.lengths) and int(self.lengths.min()) == 0:
            raise ValueError("a sequence of length 0 reached the dataset; drop empty inputs first")

    def __len__(self) -> int:
        return len(self.sequences)

    def class_counts(self, num_classes: int) -> tuple[int, ...]:
        """Examples per class id."""
        return tuple(torch.bincount(self.labels, minlength=num_classes).tolist())

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.sequences[index], self.labels[index]


class PadCollate:
    """Right-pads a list of (sequence, label) pairs into the batch dict."""

    def __init__(self, pad_id: int = 0) -> None:
        self.pad_id = pad_id

    def __call__(self, examples: list[tuple[Tensor, Tensor]]) -> dict[str, Tensor]:
        sequences, labels = zip(*examples, strict=True)
        inputs = torch.nn.utils.rnn.pad_sequence(
            list(sequences), batch_first=True, padding_value=self.pad_id
        )
        lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
        return {"inputs": inputs, "lengths": lengths, "labels": torch.stack(labels)}


class BucketBatchSampler(Sampler[list[int]]):
    """Length-bucketed batches: shuffle, sort within windows of many batches, shuffle batches.

    Deterministic given `seed` and the epoch set through `set_epoch` (Lightning calls it).
    With ``shuffle=False`` it sorts the whole set by length (evaluation: least padding).

    Distributed (`num_replicas` > 1): every rank builds the same epoch's batches and takes every
    `num_replicas`-th one from `rank`, so shards are disjoint and together hold every example
    once. Training shards must have equal batch counts (each step all-reduces gradients): when
    the count does not divide, the largest batches are halved until it does, so no example is
    repeated or dropped. Evaluation shards may differ by a batch; metrics are synchronised.
    """

    def __init__(
        self,
        lengths: Sequence[int] | Tensor,
        batch_size: int,
        shuffle: bool = True,
        bucket_size_multiplier: int = 50,
        drop_last: bool = False,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
        length_noise: float = 0.0,
    ) -> None:
        if batch_size < 1:
            raise ConfigError(f"data.batch_size must be >= 1, got {batch_size}")
        if not 0.0 <= length_noise < 1.0:
            raise ConfigError(f"data.length_noise must be in [0, 1), got {length_noise}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.window = batch_size * max(1, bucket_size_multiplier)
        self.drop_last = drop_last
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.length_noise = length_noise
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This rank's batches for the current epoch."""
        batches = self.global_batches()
        if self.num_replicas == 1:
            return batches
        if self.shuffle:
            batches = split_to_multiple(batches, self.num_replicas)
        return batches[self.rank :: self.num_replicas]

    def global_batches(self) -> list[list[int]]:
        """The epoch's batches over the whole data set, identical on every rank."""
        if not self.shuffle:
            order = torch.argsort(self.lengths, stable=True)
            return self._cut(order)
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.lengths), generator=generator)
        batches = []
        for start in range(0, len(order), self.window):
            window = order[start : start + self.window]
            keys = self.lengths[window].double()
            if self.length_noise:
                keys = keys * (
                    1
                    + self.length_noise
                    * (2 * torch.rand(len(window), generator=generator, dtype=torch.double) - 1)
                )
            window = window[torch.argsort(keys, stable=True)]
            batches.extend(self._cut(window))
        permutation = torch.randperm(len(batches), generator=generator).tolist()
        return [batches[i] for i in permutation]

    def _cut(self, order: Tensor) -> list[list[int]]:
        batches = [
            order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)
        ]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches())

    def __len__(self) -> int:
        if self.drop_last:
            total = len(self.lengths) // self.batch_size
        else:
            total = -(-len(self.lengths) // self.batch_size)
        if self.num_replicas == 1:
            return total
        if self.shuffle:
            return -(-total // self.num_replicas)
        return len(range(self.rank, total, self.num_replicas))


def split_to_multiple(batches: list[list[int]], multiple: int) -> list[list[int]]:
    """Halve the largest batches until the count is a multiple of `multiple`.

    Keeps every example exactly once. Where too few batches can be split (tiny data), the first
    batches are repeated instead, as torch's DistributedSampler pads.
    """
    batches = list(batches)
    missing = -len(batches) % multiple
    order = sorted(range(len(batches)), key=lambda i: -len(batches[i]))
    splittable = [i for i in order if len(batches[i]) > 1][:missing]
    for i in sorted(splittable, reverse=True):
        half = len(batches[i]) // 2
        batches[i : i + 1] = [batches[i][:half], batches[i][half:]]
    missing = -len(batches) % multiple
    return batches + [batches[i % len(batches)] for i in range(missing)] if batches else batches


def padding_waste(batches: Sequence[Sequence[int]], lengths: Tensor) -> float:
    """Fraction of padded positions over all batches (0 = no padding)."""
    total = valid = 0
    for batch in batches:
        batch_lengths = lengths[list(batch)]
        total += int(batch_lengths.max()) * len(batch)
        valid += int(batch_lengths.sum())
    return 1.0 - valid / total if total else 0.0
