"""Rows of the README's bad-input table not covered next to their feature's own tests."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rnnlab.data.shakespeare import ShakespeareDataModule
from rnnlab.train import evaluate, train
from tests.conftest import ROOT, TINY_RECALL


@pytest.fixture
def checkpoint(make_cfg, tmp_path):
    train(make_cfg([*TINY_RECALL, "trainer.max_epochs=1", "logger=none"]))
    return tmp_path / "checkpoints" / "last.ckpt"


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupted_checkpoint_is_a_clear_error(make_cfg, checkpoint, tmp_path, damage):
    bad = tmp_path / "bad.ckpt"
    data = checkpoint.read_bytes()
    bad.write_bytes(b"not a checkpoint" if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ValueError, match="ckpt_path=.*bad.ckpt.* is not a readable checkpoint"):
        evaluate(make_cfg([*TINY_RECALL, f"ckpt_path={bad}"], config_name="eval"))
    with pytest.raises(ValueError, match="is not a readable checkpoint"):  # resuming from it
        train(make_cfg([*TINY_RECALL, f"ckpt_path={bad}", "logger=none"]))


def test_empty_text_file_names_the_file(tmp_path):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_text("  \n")
    dm = ShakespeareDataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match=r"input.txt is empty \(data.data_dir\)"):
        dm.setup()


def test_unwritable_output_dir_fails_naming_the_path(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = subprocess.run(
        [sys.executable, "train.py", "debug=fdr", *TINY_RECALL, f"hydra.run.dir={blocker}/run"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert f"{blocker}/run" in result.stderr
    assert "Not a directory" in result.stderr or "NotADirectoryError" in result.stderr


def test_resuming_with_another_model_config_names_the_keys(make_cfg, checkpoint):
    with pytest.raises(ValueError, match=r"another model config \(model.cell: 'lstm' there, 'gru'"):
        train(make_cfg([*TINY_RECALL, f"ckpt_path={checkpoint}", "model=gru", "logger=none"]))


def test_ckpt_path_last_without_a_checkpoint_starts_from_scratch(make_cfg):
    metrics = train(
        make_cfg([*TINY_RECALL, "ckpt_path=last", "trainer.max_epochs=1", "logger=none"])
    )
    assert 0.0 <= metrics["test/acc"] <= 1.0
