"""Batching: padding layout, and the length-bucketing sampler's guarantees."""

from __future__ import annotations

import pytest
import torch

from rnnlab.data.collate import BucketBatchSampler, PadCollate, SequenceDataset, padding_waste


def lengths_fixture(n=1000, seed=0):
    return torch.randint(5, 400, (n,), generator=torch.Generator().manual_seed(seed))


def test_pad_collate_right_pads_and_reports_lengths():
    dataset = SequenceDataset([torch.tensor([1, 2, 3]), torch.tensor([4])], [1, 0])
    batch = PadCollate(pad_id=0)([dataset[0], dataset[1]])
    assert batch["inputs"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["lengths"].tolist() == [3, 1]
    assert batch["labels"].tolist() == [1, 0]


def test_sampler_yields_every_example_exactly_once():
    lengths = lengths_fixture()
    sampler = BucketBatchSampler(lengths, batch_size=64, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
        assert len(batches) == len(sampler)


def test_sampler_batches_are_length_homogeneous():
    lengths = lengths_fixture(20000)
    bucketed = BucketBatchSampler(lengths, batch_size=32, bucket_size_multiplier=50, seed=1)
    naive = BucketBatchSampler(lengths, batch_size=32, bucket_size_multiplier=1, seed=1)
    assert padding_waste(bucketed.batches(), lengths) < 0.02
    assert padding_waste(naive.batches(), lengths) > 0.3


def test_sampler_order_is_deterministic_per_epoch_and_changes_across_epochs():
    lengths = lengths_fixture()
    a, b = BucketBatchSampler(lengths, 16, seed=3), BucketBatchSampler(lengths, 16, seed=3)
    assert a.batches() == b.batches()
    a.set_epoch(1)
    assert a.batches() != b.batches()


def test_evaluation_order_is_sorted_by_length():
    lengths = lengths_fixture(100)
    batches = BucketBatchSampler(lengths, 10, shuffle=False).batches()
    flat = [int(lengths[i]) for batch in batches for i in batch]
    assert flat == sorted(flat)


def test_drop_last():
    sampler = BucketBatchSampler(torch.ones(10, dtype=torch.long), 4, drop_last=True)
    assert len(sampler) == 2 and all(len(b) == 4 for b in sampler)


def test_empty_sequence_is_rejected_with_a_clear_message():
    with pytest.raises(ValueError, match="length 0"):
        SequenceDataset([torch.tensor([1]), torch.tensor([], dtype=torch.long)], [0, 1])
