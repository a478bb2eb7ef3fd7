"""Shared LightningDataModule plumbing for classification data: loaders, bucketing, the spec."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.collate import BucketBatchSampler, PadCollate, SequenceDataset
from rnnlab.data.spec import DataSpec


def replica(datamodule: L.LightningDataModule) -> tuple[int, int]:
    """(rank, world size) of the Trainer the datamodule is attached to; (0, 1) without one.

    rnnlab's datamodules shard their own data under DDP (the trainer config sets
    `use_distributed_sampler: false`), since Lightning cannot shard a length-bucketing or
    stream sampler without breaking what it guarantees.
    """
    trainer = getattr(datamodule, "trainer", None)
    if trainer is None:
        return 0, 1
    return trainer.global_rank, trainer.world_size


class ResumableDataLoader(DataLoader):
    """A training DataLoader that Lightning can checkpoint and resume in the middle of an epoch.

    Its state (plain ints, in the checkpoint's loop state) is the epoch, the batches the Trainer
    has consumed in it and the batches that epoch holds (`trainer.num_training_batches`: less
    than ``len(self)`` under `trainer.limit_train_batches`). After `load_state_dict`, the next
    pass finishes that epoch by skipping the consumed batches, or, when the epoch was complete,
    starts the next one. rnnlab's samplers are deterministic given seed and epoch, and streams
    are read in order, so the resumed run sees exactly the batches the interrupted one would
    have seen next.

    Why not torchdata's `StatefulDataLoader`? torchdata 0.11.0 installs beside torch 2.13, and
    Lightning 2.6 checkpoints it through the same `state_dict` protocol (it has no other
    support for it). Tried with Lightning 2.6.6 on a shuffled 10-batch loader: it resumes an
    epoch cut by `limit_train_batches` as an unfinished one, reading the rest of the old
    epoch's order, and it knows no epochs, so rnnlab's batch samplers would still need this
    class's `set_epoch` and epoch-end logic. What it would save is the skip: it advances only
    the sampler's indices, where this class fetches and collates the skipped batches. Skipping
    a whole IMDb-sized epoch (351 batches of 64 sequences of 233 tokens on average) took 0.10 s
    that way against 2 ms, a small part of a run's start-up: not worth a dependency.
    """

    def __init__(self, *args, trainer: L.Trainer | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.trainer = trainer
        self._resume: dict[str, int] | None = None

    def state_dict(self) -> dict[str, int]:
        if self.trainer is None:
            return {}
        progress = self.trainer.fit_loop.epoch_loop.batch_progress.current
        state = {"epoch": self.trainer.current_epoch, "batches": progress.processed}
        if math.isfinite(self.trainer.num_training_batches):
            state["epoch_batches"] = int(self.trainer.num_training_batches)
        return state

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._resume = dict(state) if state else None

    def __iter__(self):
        """Set the sampler's epoch (Lightning only reaches `dataloader.sampler` and
        `batch_sampler.sampler`, not a batch sampler itself) and skip what a resumed epoch
        already consumed."""
        resume, self._resume = self._resume, None
        epoch = self.trainer.current_epoch if self.trainer is not None else 0
        skip = 0
        if resume:
            # checkpoints written before epoch_batches was stored: the loader's own length
            epoch_batches = resume.get("epoch_batches", len(self))
            if 0 < resume["batches"] < epoch_batches:  # stopped mid-epoch: finish that epoch
                epoch, skip = resume["epoch"], resume["batches"]
            elif resume["batches"] >= epoch_batches:  # saved at an epoch's end: the next one
                epoch = resume["epoch"] + 1
        set_epoch = getattr(self.batch_sampler, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(epoch)
        iterator = super().__iter__()
        for _ in range(skip):
            next(iterator)
        return iterator


def split_loader(
    datamodule: L.LightningDataModule, dataset: Dataset, train: bool, **kwargs: Any
) -> DataLoader:
    """The training loader, resumable mid-epoch, or a plain evaluation loader."""
    if train:
        return ResumableDataLoader(dataset, trainer=datamodule.trainer, **kwargs)
    return DataLoader(dataset, **kwargs)


def batch_loader(
    datamodule: L.LightningDataModule,
    dataset: Dataset,
    lengths: Sequence[int] | Tensor,
    batch_size: int,
    train: bool,
    bucket_size_multiplier: int,
    seed: int,
    collate_fn: Callable | None = None,
    num_workers: int = 0,
    length_noise: float = 0.0,
) -> DataLoader:
    """A loader over `dataset` batched by `BucketBatchSampler`, sharded under DDP.

    Training: shuffled per seed and epoch, resumable mid-epoch. Evaluation: sorted by length
    (stable, so equal lengths keep their order), every example once.
    """
    rank, world = replica(datamodule)
    sampler = BucketBatchSampler(
        lengths,
        batch_size,
        shuffle=train,
        bucket_size_multiplier=bucket_size_multiplier,
        seed=seed,
        num_replicas=world,
        rank=rank,
        length_noise=length_noise,
    )
    return split_loader(
        datamodule,
        dataset,
        train,
        batch_sampler=sampler,
        # its own generator: creating an iterator then draws nothing from the global one, so
        # a resumed run's dropout masks line up with the uninterrupted run's
        generator=torch.Generator().manual_seed(seed),
        collate_fn=collate_fn,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )


class SequenceDataModule(L.LightningDataModule):
    """Subclasses fill `train_set`, `val_set`, `test_set` and `spec` in `setup`.

    Training batches are length-bucketed (``bucketing=true``) or plainly shuffled; evaluation
    batches are sorted by length, which changes no metric and wastes the least padding.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        bucketing: bool = True,
        bucket_size_multiplier: int = 50,
        seed: int = 0,
        length_noise: float = 0.0,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.bucketing = bucketing
        self.bucket_size_multiplier = bucket_size_multiplier
        self.seed = seed
        self.length_noise = length_noise  # noisy sort keys: batch composition varies by epoch
        self.train_set: SequenceDataset | None = None
        self.val_set: SequenceDataset | None = None
        self.test_set: SequenceDataset | None = None
        self._spec: DataSpec | None = None

    @property
    def spec(self) -> DataSpec:
        if self._spec is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before .spec is read")
        return self._spec

    def _loader(self, dataset: SequenceDataset | None, train: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders")
        return batch_loader(
            self,
            dataset,
            dataset.lengths,
            self.batch_size,
            train,
            # A window of one batch is plain shuffled batching: sorting inside a batch is a no-op.
            bucket_size_multiplier=self.bucket_size_multiplier if self.bucketing else 1,
            seed=self.seed,
            collate_fn=self.collate_fn(),
            num_workers=self.num_workers,
            length_noise=self.length_noise if self.bucketing else 0.0,
        )

    def load_state_dict(self, state: dict) -> None:
        """A checkpoint's seed, taken before setup: it chose the split the vocabulary came from.
        (Lightning calls this again after setup when resuming; the split stays.)"""
        if self.train_set is None:
            self.seed = state.get("seed", self.seed)

    def collate_fn(self) -> Callable:
        """How examples become a batch: padded ids, lengths and labels."""
        return PadCollate(self.spec.pad_id)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
