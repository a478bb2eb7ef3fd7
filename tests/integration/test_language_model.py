"""Character language model: TBPTT layout, carried state, whole-stream loss, generation."""

from __future__ import annotations

import math
import subprocess
import sys

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from rnnlab.data.shakespeare import ShakespeareDataModule, StreamWindows
from rnnlab.tasks import LanguageModelTask
from rnnlab.train import train
from tests.conftest import ROOT

TEXT = (
    "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"
    "ROMEO:\nBut, soft! what light through yonder window breaks?\n"
) * 20


@pytest.fixture
def text_dir(tmp_path):
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "input.txt").write_text(TEXT, encoding="utf-8")
    return tmp_path / "data"


def test_windows_are_contiguous_within_each_stream():
    ids = torch.arange(100)
    windows = StreamWindows(ids, streams=4, window=6)
    for k in range(len(windows) - 1):
        this, following = windows[k]["inputs"], windows[k + 1]["inputs"]
        assert torch.equal(this[:, -1] + 1, following[:, 0])  # last of k precedes first of k+1
    for k in range(len(windows)):
        assert torch.equal(windows[k]["targets"], windows[k]["inputs"] + 1)
    streams = torch.cat([windows[k]["inputs"] for k in range(len(windows))], dim=1)
    assert torch.equal(streams.flatten(), ids[: streams.numel()])  # stream b follows stream b-1


def test_split_is_first_ninety_percent_and_vocab_from_train(text_dir, tmp_path):
    dm = ShakespeareDataModule(
        data_dir=str(text_dir), cache_dir=str(tmp_path / "c"), batch_size=4, bptt=16
    )
    dm.setup()
    assert len(dm.train_ids) == int(len(TEXT) * 0.9)
    assert len(dm.train_ids) + len(dm.val_ids) == len(TEXT)
    assert "".join(dm.vocab.decode(dm.train_ids[:14].tolist())) == "First Citizen:"
    assert dm.spec.vocab_size == len(set(TEXT[: len(dm.train_ids)])) + 2


def make_task(vocab_size=20, cell="lstm"):
    torch.manual_seed(0)
    return LanguageModelTask(
        vocab_size=vocab_size,
        model={"cell": cell, "hidden_size": 8, "num_layers": 2},
        embedding_dim=6,
    )


def test_state_is_carried_detached_and_reset_each_epoch():
    task = make_task()
    batch = {"inputs": torch.randint(2, 20, (3, 5)), "targets": torch.randint(2, 20, (3, 5))}
    task.on_train_epoch_start()
    assert task.state is None
    task._loss(batch)
    h, c = task.state
    assert h.shape == (2, 3, 8) and not h.requires_grad and not c.requires_grad
    first = h.clone()
    task._loss(batch)
    assert not torch.equal(task.state[0], first)  # the second window started from the first's
    task.on_train_epoch_start()
    assert task.state is None


def test_windowed_loss_equals_the_loss_over_whole_streams():
    task = make_task(cell="gru").eval()
    ids = torch.randint(2, 20, (203,))
    windows = StreamWindows(ids, streams=2, window=7)
    task.state = None
    total, count = 0.0, 0
    with torch.no_grad():
        for k in range(len(windows)):
            loss, characters = task._loss(windows[k])
            assert characters == windows[k]["targets"].numel()
            total += float(loss) * characters
            count += characters
        logits, _ = task(windows.inputs)
        whole = F.cross_entropy(logits.flatten(0, 1), windows.targets.flatten())
    assert total / count == pytest.approx(float(whole), abs=1e-5)


def test_window_estimate_comes_from_its_own_loader_and_leaves_the_stream_alone():
    """Validation and test over [stream, windows] loaders: `loss` is the stream's alone,
    `loss_windows` the mean over every windows character, each window from a fresh state."""
    task = make_task(cell="gru").eval()
    ids = torch.randint(2, 20, (203,))
    stream = StreamWindows(ids, streams=2, window=7)
    starts = torch.randint(0, len(ids) - 9, (5,))
    windows = [  # two batches of random 8-character windows, as the data's windows loader
        {
            "inputs": torch.stack([ids[s : s + 8] for s in chunk]),
            "targets": torch.stack([ids[s + 1 : s + 9] for s in chunk]),
        }
        for chunk in (starts[:3].tolist(), starts[3:].tolist())
    ]
    loaders = [DataLoader(stream, batch_size=None), DataLoader(windows, batch_size=None)]
    trainer = L.Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(task, dataloaders=loaders, verbose=False)
    val = dict(trainer.callback_metrics)
    trainer.test(task, dataloaders=loaders, verbose=False)
    test = dict(trainer.callback_metrics)
    with torch.no_grad():
        logits, _ = task(stream.inputs)
        whole = F.cross_entropy(logits.flatten(0, 1), stream.targets.flatten())
        inputs = torch.cat([w["inputs"] for w in windows])
        logits, _ = task(inputs)
        targets = torch.cat([w["targets"] for w in windows])
        estimate = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    for split, metrics in (("val", val), ("test", test)):
        assert not any("dataloader_idx" in key for key in metrics)
        assert float(metrics[f"{split}/loss"]) == pytest.approx(float(whole), abs=1e-5)
        assert float(metrics[f"{split}/loss_windows"]) == pytest.approx(float(estimate), abs=1e-5)


def test_generation_length_vocabulary_and_determinism():
    task = make_task()

    def sample():
        return task.generate(
            [3, 4],
            length=25,
            temperature=0.8,
            top_k=5,
            generator=torch.Generator().manual_seed(1),
            banned_ids=(1,),
        )

    out = sample()
    assert len(out) == 25 and all(2 <= i < 20 for i in out)  # never <pad> (0) or <unk> (1)
    again = sample()
    assert out == again


def test_generation_carries_state_instead_of_recomputing_the_prefix():
    task = make_task().eval()
    calls = []
    original = task.backbone.forward

    def spy(x, lengths=None, state=None):
        calls.append(x.shape[1])
        return original(x, lengths, state)

    task.backbone.forward = spy
    task.generate([3, 4, 5, 6], length=10)
    assert calls == [4] + [1] * 9


def test_bidirectional_language_model_is_refused():
    with pytest.raises(ValueError, match="bidirectional"):
        LanguageModelTask(vocab_size=10, model={"bidirectional": True})


def test_fast_dev_run_and_generate_script(make_cfg, text_dir, tmp_path):
    cfg = make_cfg(
        [
            "data=shakespeare",
            f"paths.data_dir={text_dir}",
            "trainer.max_epochs=1",
            "data.batch_size=4",
            "data.bptt=32",
            "model.hidden_size=16",
            "data.estimate_windows=8",
            "data.estimate_window=32",
            "trainer.accelerator=cpu",
        ]
    )
    metrics = train(cfg)
    assert math.isfinite(metrics["val/loss"]) and "val/loss_windows" in metrics
    # the estimator nanoGPT's figures use, also at test (one epoch: the tested weights are the
    # validated ones, and the windows are drawn from a fixed seed)
    assert metrics["test/loss_windows"] == pytest.approx(metrics["val/loss_windows"], rel=1e-5)
    assert metrics["val/bpc"] == pytest.approx(metrics["val/loss"] / math.log(2))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/generate.py",
            f"ckpt_path={ckpt}",
            "prompt=ROMEO:",
            "length=40",
            "temperature=0.8",
            "top_k=5",
            "seed=0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ROMEO:") and len(result.stdout.rstrip("\n")) >= 46
    bad = subprocess.run(
        [sys.executable, "scripts/generate.py", f"ckpt_path={ckpt}", "prompt=ROMEO:\u00e9\u00df"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert bad.returncode != 0 and "not in the model's vocabulary" in bad.stderr
