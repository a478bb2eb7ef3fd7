"""The base of every datamodule, and its loaders (resumable, bucketed, sharded)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.collate import BucketBatchSampler, PadCollate
from rnnlab.data.spec import DataSpec
from rnnlab.errors import ConfigError


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


SPLITS = ("train", "val", "test")


def require_positive_ints(**values: Any) -> None:
    """An error naming `data.<key>` for the first value that is not a positive integer."""
    for key, value in values.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")


class DataModule(L.LightningDataModule):
    """The one contract of rnnlab's datamodules: what a new data set (text, series, a corpus,
    music, speech) implements, and what the rest of rnnlab may rely on.

    A subclass implements
      - ``__init__(..., **kwargs)``: its own options, each checked with a `ConfigError` naming
        ``data.<key>``, then ``super().__init__(**kwargs)`` with `batch_size`, `num_workers`,
        `seed` and `eval_batch_size` (None: `batch_size`);
      - ``prepare_data()`` (optional): download or build caches, once, through
        `rnnlab.data.storage` (atomic, under a lock);
      - ``build() -> DataSpec``: read the data, fill ``self.datasets`` (one entry per split of
        `SPLITS`) and return the spec. Everything a task needs to know of the data (sizes,
        vocabularies, tokeniser, label names) goes in the spec, and what a task needs per
        example (references, lengths) goes in the batch: tasks and callbacks never read the
        datamodule;
      - ``data_state() -> dict``: plain JSON values that say how the data was encoded
        (vocabulary, tokeniser, labels, scaling statistics). A checkpoint stores
        ``state_dict() = {"seed": seed, **data_state()}``; evaluating or resuming it adopts the
        seed before `setup` and then requires the rebuilt state to equal the stored one
        (`rnnlab.checkpoints`);
      - ``collate_fn()`` (optional): how examples become a batch dict (default: torch's);
      - ``loader(split)`` (only to batch otherwise): the default shuffles the training split
        per seed and epoch and reads the evaluation splits in order, in batches of
        `batch_size` / `eval_batch_size`, sharded under DDP (`replica`); training loaders are
        resumable mid-epoch (`split_loader`), evaluation loaders are plain. A loader for an
        evaluation split may be a list: one dataloader index per estimate.

    The base gives `setup` (builds once: Lightning calls it again after `train()` has),
    `spec` (an error before setup), the `train_set` / `val_set` / `test_set` views, the
    dataloader hooks and `state_dict` / `load_state_dict`.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
    ) -> None:
        super().__init__()
        require_positive_ints(batch_size=batch_size, eval_batch_size=eval_batch_size or 1)
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.seed = seed
        # what each split's loader reads: a Dataset, or for streams the split's ids
        self.datasets: dict[str, Any] = {}
        self._spec: DataSpec | None = None

    def build(self) -> DataSpec:
        raise NotImplementedError

    def data_state(self) -> dict[str, Any]:
        return {}

    def setup(self, stage: str | None = None) -> None:
        if self._spec is None:
            self._spec = self.build()

    @property
    def spec(self) -> DataSpec:
        if self._spec is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before .spec is read")
        return self._spec

    def dataset(self, split: str) -> Any:
        if self._spec is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before its dataloaders")
        return self.datasets[split]

    @property
    def train_set(self) -> Any:
        return self.datasets.get("train")

    @property
    def val_set(self) -> Any:
        return self.datasets.get("val")

    @property
    def test_set(self) -> Any:
        return self.datasets.get("test")

    def state_dict(self) -> dict[str, Any]:
        return {"seed": self.seed, **self.data_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A checkpoint's seed, taken before setup: it chose the split the vocabulary and
        statistics came from, or generated the data. (Lightning calls this again after setup
        when resuming; the data stays.)"""
        if self._spec is None:
            self.seed = state.get("seed", self.seed)

    def collate_fn(self) -> Callable | None:
        return None

    def loader(self, split: str, **sampling: Any) -> DataLoader | list[DataLoader]:
        """`batch_loader` over the split; `sampling` overrides its `lengths`,
        `bucket_size_multiplier` and `length_noise` (default: equal lengths, plain shuffling)."""
        dataset = self.dataset(split)
        train = split == "train"
        options = {"lengths": [1] * len(dataset), "bucket_size_multiplier": 1} | sampling
        return batch_loader(
            self,
            dataset,
            batch_size=self.batch_size if train else self.eval_batch_size,
            train=train,
            seed=self.seed,
            collate_fn=self.collate_fn(),
            num_workers=self.num_workers,
            **options,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("train")

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader | list[DataLoader]:
        return self.loader("test")


class SequenceDataModule(DataModule):
    """Variable-length sequences (`SequenceDataset` or anything with `lengths`), padded.

    Training batches are length-bucketed (``bucketing=true``) or plainly shuffled; evaluation
    batches are sorted by length, which changes no metric and wastes the least padding.
    """

    def __init__(
        self,
        bucketing: bool = True,
        bucket_size_multiplier: int = 50,
        length_noise: float = 0.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.bucketing = bucketing
        self.bucket_size_multiplier = bucket_size_multiplier
        self.length_noise = length_noise  # noisy sort keys: batch composition varies by epoch

    def loader(self, split: str, **sampling: Any) -> DataLoader:
        return super().loader(
            split,
            lengths=self.dataset(split).lengths,
            # A window of one batch is plain shuffled batching: sorting inside a batch is a no-op.
            bucket_size_multiplier=self.bucket_size_multiplier if self.bucketing else 1,
            length_noise=self.length_noise if self.bucketing else 0.0,
            **sampling,
        )

    def collate_fn(self) -> Callable:
        """How examples become a batch: padded ids, lengths and labels."""
        return PadCollate(self.spec.pad_id)
