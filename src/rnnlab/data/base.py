"""Shared LightningDataModule plumbing for classification data: loaders, bucketing, the spec."""

from __future__ import annotations

import lightning as L
from torch.utils.data import DataLoader

from rnnlab.data.collate import BucketBatchSampler, PadCollate, SequenceDataset
from rnnlab.data.spec import DataSpec


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
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.bucketing = bucketing
        self.bucket_size_multiplier = bucket_size_multiplier
        self.seed = seed
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
        sampler = BucketBatchSampler(
            dataset.lengths,
            self.batch_size,
            shuffle=train,
            # A window of one batch is plain shuffled batching: sorting inside a batch is a no-op.
            bucket_size_multiplier=self.bucket_size_multiplier if self.bucketing else 1,
            seed=self.seed,
        )
        return DataLoader(
            dataset,
            batch_sampler=sampler,
            collate_fn=PadCollate(self.spec.pad_id),
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)
