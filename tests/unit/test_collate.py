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


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.parametrize("n", [1000, 999, 70])
def test_distributed_shards_are_disjoint_even_and_cover_every_example_once(world, n):
    lengths = lengths_fixture(n)
    shards = [
        BucketBatchSampler(
            lengths, 32, bucket_size_multiplier=4, seed=1, num_replicas=world, rank=r
        )
        for r in range(world)
    ]
    for sampler in shards:
        sampler.set_epoch(3)
    batches = [list(sampler) for sampler in shards]
    assert len({len(b) for b in batches}) == 1  # equal step counts on every rank
    assert all(len(b) == len(s) for b, s in zip(batches, shards, strict=True))
    seen = [i for rank_batches in batches for batch in rank_batches for i in batch]
    assert sorted(seen) == list(range(n))  # disjoint, and every example exactly once
    # deterministic given seed and epoch
    again = BucketBatchSampler(lengths, 32, bucket_size_multiplier=4, seed=1, num_replicas=world)
    again.set_epoch(3)
    assert list(again) == batches[0]


def test_distributed_evaluation_shards_cover_every_example_without_repeats():
    lengths = lengths_fixture(101)
    shards = [
        BucketBatchSampler(lengths, 8, shuffle=False, num_replicas=3, rank=r) for r in range(3)
    ]
    seen = [i for s in shards for batch in s for i in batch]
    assert sorted(seen) == list(range(101))
    assert [len(s) for s in shards] == [len(list(s)) for s in shards] == [5, 4, 4]


def test_a_rank_outside_the_world_is_refused():
    with pytest.raises(ValueError, match="rank 2"):
        BucketBatchSampler([1, 2], 1, num_replicas=2, rank=2)


def batch_mates(batches):
    """The set of unordered pairs of examples that share a batch."""
    return {(a, b) for batch in batches for a in batch for b in batch if a < b}


def test_length_noise_varies_batch_composition_between_epochs():
    torch.manual_seed(0)
    lengths = torch.randint(50, 400, (2000,))
    # one window holds the whole set: without noise, a sort by length, the same batches each epoch
    exact = BucketBatchSampler(lengths, 16, bucket_size_multiplier=1000, seed=3)
    noisy = BucketBatchSampler(lengths, 16, bucket_size_multiplier=1000, seed=3, length_noise=0.05)
    mates = {}
    for name, sampler in (("exact", exact), ("noisy", noisy)):
        epochs = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)
            batches = sampler.batches()
            assert sorted(i for b in batches for i in b) == list(range(2000))  # each once
            epochs.append(batch_mates(batches))
        mates[name] = len(epochs[0] & epochs[1]) / len(epochs[0])
    assert mates["exact"] > 0.5
    assert mates["noisy"] < mates["exact"] / 2
    # deterministic per seed and epoch, and the noise costs little padding
    noisy.set_epoch(1)
    assert noisy.batches() == noisy.batches()
    assert padding_waste(noisy.batches(), lengths) < 0.05


def test_length_noise_out_of_range_names_the_key():
    with pytest.raises(ValueError, match="data.length_noise"):
        BucketBatchSampler(torch.tensor([1, 2]), 1, length_noise=1.5)
