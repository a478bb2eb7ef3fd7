"""The offline delayed-recall task: labels, lengths, determinism."""

from __future__ import annotations

import pytest
import torch

from rnnlab.data.synthetic import RecallDataModule


def test_label_is_the_key_and_distractors_are_not_keys():
    dm = RecallDataModule(
        num_symbols=4, min_len=3, max_len=9, num_train=200, num_val=10, num_test=10, seed=1
    )
    dm.setup()
    for sequence, label in (dm.train_set[i] for i in range(200)):
        assert int(sequence[0]) == int(label) + 1
        assert ((sequence[1:] > 4) & (sequence[1:] <= 8)).all()
        assert 3 <= len(sequence) <= 9
    assert dm.spec.num_classes == 4 and dm.spec.vocab_size == 9 and dm.spec.pad_id == 0


def test_same_seed_same_data_and_splits_differ():
    a, b = RecallDataModule(seed=5), RecallDataModule(seed=5)
    a.setup()
    b.setup()
    assert torch.equal(a.train_set.labels, b.train_set.labels)
    assert not torch.equal(a.train_set.labels[:1000], a.val_set.labels)


def test_batches_carry_padding_and_lengths():
    dm = RecallDataModule(num_train=64, num_val=8, num_test=8, batch_size=16)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape[0] == 16
    assert batch["inputs"].shape[1] == int(batch["lengths"].max())


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"num_symbols": 1}, "data.num_symbols"),
        ({"min_len": 10, "max_len": 5}, "data.min_len"),
    ],
)
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        RecallDataModule(**kwargs)
