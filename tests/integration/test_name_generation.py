"""Name generation: <s>/</s> sequences on the names split, a conditional model, the script."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from rnnlab.data.names import NameGenerationDataModule
from rnnlab.data.tokenizers import BOS, EOS
from rnnlab.tasks import NameGenerationTask
from rnnlab.train import train
from tests.conftest import ROOT
from tests.integration.test_text_data import write_names


@pytest.fixture
def names_dir(tmp_path):
    write_names(tmp_path / "data" / "names")
    return tmp_path / "data"


def test_names_are_wrapped_in_start_and_end_marks(names_dir, tmp_path):
    dm = NameGenerationDataModule(data_dir=str(names_dir), cache_dir=str(tmp_path / "c"))
    dm.setup()
    sequence, label = dm.train_set[0]
    tokens = dm.vocab.decode(sequence.tolist())
    assert tokens[0] == BOS and tokens[-1] == EOS
    name = "".join(tokens[1:-1])
    assert (name, dm.languages[int(label)]) in dm.pairs
    spec = dm.spec
    assert spec.num_classes == len(dm.languages) and spec.class_counts == ()
    assert spec.labels == tuple(dm.languages)


def make_task(num_classes=3):
    torch.manual_seed(0)
    return NameGenerationTask(
        vocab_size=12,
        num_classes=num_classes,
        condition_dim=4,
        model={"cell": "gru", "hidden_size": 8},
        embedding_dim=6,
    )


def test_sequence_loss_ignores_padding_and_predicts_the_next_character():
    task = make_task()
    batch = {
        "inputs": torch.tensor([[2, 5, 6, 3, 0, 0], [2, 7, 8, 9, 10, 3]]),
        "lengths": torch.tensor([4, 6]),
        "labels": torch.tensor([0, 2]),
    }
    loss, count = task._loss(batch)
    assert count == 3 + 5
    # the same loss, summed one sequence at a time without padding
    total = 0.0
    for row, length in enumerate(batch["lengths"].tolist()):
        ids = batch["inputs"][row : row + 1, :length]
        logits, _ = task(ids[:, :-1], condition=batch["labels"][row : row + 1])
        total += torch.nn.functional.cross_entropy(logits[0], ids[0, 1:], reduction="sum").item()
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_the_condition_changes_the_prediction_and_is_required():
    task = make_task().eval()
    ids = torch.tensor([[2, 5, 6]])
    a, _ = task(ids, condition=torch.tensor([0]))
    b, _ = task(ids, condition=torch.tensor([1]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="conditional"):
        task(ids)
    with pytest.raises(ValueError, match="condition"):
        task.generate([2], 5)


def test_generation_stops_at_the_end_mark():
    task = make_task()
    with torch.no_grad():  # make </s> (id 3) overwhelmingly likely after the first character
        task.decoder.bias.zero_()
        task.decoder.bias[3] = 50.0
    assert task.generate([2], 10, condition=1, stop_id=3) == []
    assert len(task.generate([2], 10, condition=1)) == 10  # without a stop id: full length


def test_fast_dev_run_and_generate_names_by_language(make_cfg, names_dir, tmp_path):
    cfg = make_cfg(
        [
            "data=names_gen",
            f"paths.data_dir={names_dir}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "trainer.max_epochs=2",
            "model.hidden_size=16",
            "data.batch_size=4",
            "logger=csv",
            "~callbacks.progress_bar",
        ]
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss"]) and math.isfinite(metrics["test/loss"])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    command = [sys.executable, "scripts/generate.py", f"ckpt_path={ckpt}", "seed=0"]
    result = subprocess.run(
        [*command, "language=French", "samples=3", "length=12", "prompt=Mo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    names = result.stdout.splitlines()
    assert len(names) == 3
    assert all(name.startswith("Mo") and len(name) <= 2 + 12 for name in names)
    assert all(BOS not in name and EOS not in name for name in names)
    missing = subprocess.run(
        [*command, "language=Klingon"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert missing.returncode != 0 and "language='Klingon'" in missing.stderr
