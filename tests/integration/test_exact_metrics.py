"""Epoch losses are the exact loss over a whole split, checked against a loss over all of it."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rnnlab.data.collate import PadCollate, SequenceDataset
from rnnlab.tasks import ClassificationTask, NameGenerationTask


def imbalanced_split(size: int, seed: int, min_length: int = 1) -> SequenceDataset:
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(min_length, 9, (size,), generator=generator)
    sequences = [torch.randint(1, 7, (int(n),), generator=generator) for n in lengths]
    labels = torch.multinomial(torch.tensor([0.7, 0.2, 0.1]), size, True, generator=generator)
    return SequenceDataset(sequences, labels)


@torch.no_grad()
def logits_of(
    task: ClassificationTask, split: SequenceDataset
) -> tuple[torch.Tensor, torch.Tensor]:
    batch = PadCollate(0)([split[i] for i in range(len(split))])
    return task(batch["inputs"], batch["lengths"]), batch["labels"]


def frozen_trainer(tmp_path) -> L.Trainer:
    """One epoch, nothing written; with the FROZEN optimizer the weights stay as they are."""
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )


# a learning rate of 0, so the test computes the logits the run saw
FROZEN = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.0}


def test_class_weights_shape_the_training_loss_only(tmp_path):
    """Validation and test report the plain loss; training the class-weighted one. Batches of
    unequal size (23 = 5 x 4 + 3) and weights make a mean of batch means wrong."""
    torch.manual_seed(0)
    train_set, val_set, test_set = (imbalanced_split(23, seed) for seed in (1, 2, 3))
    task = ClassificationTask(
        num_classes=3,
        vocab_size=7,
        model={"hidden_size": 8},
        class_counts=[16, 5, 2],
        class_weighting=True,
        optimizer=FROZEN,
    )
    loaders = [
        DataLoader(split, batch_size=4, collate_fn=PadCollate(0))
        for split in (train_set, val_set, test_set)
    ]
    trainer = frozen_trainer(tmp_path)
    trainer.fit(task, loaders[0], loaders[1])
    logged = {key: float(value) for key, value in trainer.callback_metrics.items()}
    trainer.test(task, loaders[2], verbose=False)
    logged["test/loss"] = float(trainer.callback_metrics["test/loss"])

    weights = task.class_weights
    assert weights is not None and not torch.allclose(weights, weights[0])
    expected = {
        "train/loss_epoch": F.cross_entropy(*logits_of(task, train_set), weight=weights),
        "val/loss": F.cross_entropy(*logits_of(task, val_set)),
        "test/loss": F.cross_entropy(*logits_of(task, test_set)),
    }
    wrong = {
        key: (logged[key], float(value))
        for key, value in expected.items()
        if abs(logged[key] - float(value)) > 1e-5
    }
    assert not wrong, wrong  # key: (logged, expected)


def test_language_model_epoch_loss_is_per_character_over_the_split(tmp_path):
    """Batches of unequal size and length: the epoch loss is nats per predicted character."""
    torch.manual_seed(0)
    task = NameGenerationTask(
        vocab_size=7, model={"cell": "gru", "hidden_size": 8}, num_classes=3, optimizer=FROZEN
    )
    train_set, val_set = (imbalanced_split(23, seed, min_length=2) for seed in (1, 2))
    loaders = [DataLoader(s, batch_size=4, collate_fn=PadCollate(0)) for s in (train_set, val_set)]
    trainer = frozen_trainer(tmp_path)
    trainer.fit(task, *loaders)
    logged = {key: float(value) for key, value in trainer.callback_metrics.items()}

    def nats_per_character(split: SequenceDataset) -> float:
        total = characters = 0
        with torch.no_grad():
            for ids, language in (split[i] for i in range(len(split))):
                logits, _ = task(ids[None, :-1], condition=language[None])
                total += F.cross_entropy(logits[0], ids[1:], reduction="sum").item()
                characters += len(ids) - 1
        return total / characters

    expected = {
        "train/loss_epoch": nats_per_character(train_set),
        "train/bpc": nats_per_character(train_set) / math.log(2),
        "val/loss": nats_per_character(val_set),
    }
    wrong = {
        key: (logged[key], value)
        for key, value in expected.items()
        if abs(logged[key] - value) > 1e-5
    }
    assert not wrong, wrong  # key: (logged, expected)
