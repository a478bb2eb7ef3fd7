"""Rows of the README's bad-input table not covered next to their feature's own tests."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra

from rnnlab.data.shakespeare import ShakespeareDataModule
from rnnlab.data.synthetic import RecallDataModule
from rnnlab.errors import ConfigError
from rnnlab.train import check_validates, evaluate, run, train
from tests.conftest import ROOT, TINY_RECALL, compose_config
from tests.integration.test_text_data import write_names


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


def run_script(monkeypatch, script: str, *arguments: str) -> str:
    """Run scripts/<script> in this process; the message it exits with (it must exit)."""
    monkeypatch.setattr(sys, "argv", [script, *arguments])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(ROOT / "scripts" / script), run_name="__main__")
    return str(exit_info.value.code)


@pytest.fixture(scope="module")
def names_checkpoints(tmp_path_factory):
    """A names classifier's and a names generator's last.ckpt, trained on a tiny fixture."""
    root = tmp_path_factory.mktemp("names")
    write_names(root / "data" / "names")
    checkpoints = {}
    for data in ("names", "names_gen"):
        overrides = [f"data={data}", f"paths.data_dir={root / 'data'}", "model.hidden_size=8"]
        overrides += ["data.batch_size=8", "trainer.max_epochs=1", "logger=none"]
        overrides += [f"paths.cache_dir={root / 'cache'}", "~callbacks.progress_bar"]
        train(compose_config(overrides, root / data))
        checkpoints[data] = root / data / "checkpoints" / "last.ckpt"
    GlobalHydra.instance().clear()
    return checkpoints


WRONG_TASK = r"is a {} checkpoint, not a {} one; use it with {}"


def test_eval_and_resume_of_another_task_say_which_task_it_is(make_cfg, checkpoint):
    message = WRONG_TASK.format("classification", "forecasting", "data=recall, imdb or names")
    overrides = ["data=sine", "data.lookback=24", "data.horizon=12", "task.segment_len=6"]
    with pytest.raises(ConfigError, match=message):
        evaluate(make_cfg([*overrides, f"ckpt_path={checkpoint}"], config_name="eval"))
    with pytest.raises(ConfigError, match=message):
        train(make_cfg([*overrides, f"ckpt_path={checkpoint}", "logger=none"]))


def test_scripts_given_another_task_say_which_task_it_is(monkeypatch, names_checkpoints):
    message = run_script(monkeypatch, "generate.py", f"ckpt_path={names_checkpoints['names']}")
    assert "is a classification checkpoint, not a language model or name generation one" in message
    assert "scripts/predict.py" in message
    message = run_script(
        monkeypatch, "predict.py", f"ckpt_path={names_checkpoints['names_gen']}", "text=Abel"
    )
    assert "is a name generation checkpoint, not a classification one" in message
    assert "scripts/generate.py" in message
    message = run_script(
        monkeypatch, "generate.py", f"ckpt_path={names_checkpoints['names_gen']}", "midi=x.mid"
    )
    assert message == (
        "error: midi is for a music checkpoint; ckpt_path is a text one, which takes prompt=, "
        "top_k=, language="
    )


def test_eval_of_a_generator_as_a_classifier_says_which_task_it_is(make_cfg, names_checkpoints):
    cfg = make_cfg(["data=names", f"ckpt_path={names_checkpoints['names_gen']}"], "eval")
    message = WRONG_TASK.format("name generation", "classification", "data=names_gen")
    with pytest.raises(ConfigError, match=message):
        evaluate(cfg)


class Payload:
    """Unpickling this would run a command."""

    def __reduce__(self):
        return (os.system, ("echo unpickled",))


def test_a_malicious_pickle_is_refused_without_advice_to_lower_the_protection(
    make_cfg, tmp_path, monkeypatch
):
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, bad)
    expected = f"ckpt_path={str(bad)!r} is not a trusted checkpoint"
    with pytest.raises(ConfigError) as error:
        evaluate(make_cfg([*TINY_RECALL, f"ckpt_path={bad}"], config_name="eval"))
    assert str(error.value) == expected
    message = run_script(monkeypatch, "predict.py", f"ckpt_path={bad}", "text=x")
    assert message == f"error: {expected}"


def test_rerunning_into_a_run_directory_is_refused_unless_resumed_or_overwritten(
    make_cfg, tmp_path
):
    overrides = [*TINY_RECALL, "trainer.max_epochs=1", "logger=none"]
    (tmp_path / ".hydra").mkdir()  # Hydra writes these before the run: they do not count
    (tmp_path / "train.log").write_text("")
    run(make_cfg(overrides))
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with pytest.raises(ConfigError, match="already holds a run .*ckpt_path=last.*overwrite=true"):
        run(make_cfg([*overrides, "model.hidden_size=12"]))
    assert last.read_bytes() == before  # nothing was overwritten
    run(make_cfg([*overrides, "ckpt_path=last", "trainer.max_epochs=2"]))  # resumes
    stray = tmp_path / "checkpoints" / "stray.ckpt"
    stray.write_bytes(b"")
    run(make_cfg([*overrides, "model.hidden_size=12", "overwrite=true"]))
    assert not stray.exists()  # no checkpoint of the earlier model stays beside the new ones
    saved = yaml.safe_load((tmp_path / "config_resolved.yaml").read_text())
    assert saved["model"]["hidden_size"] == 12


@pytest.mark.parametrize("key", ["trainer.max_epochs", "trainer.max_steps"])
def test_zero_epochs_or_steps_are_refused_before_training(make_cfg, key):
    with pytest.raises(ConfigError, match=f"{key.lstrip('+')}=0 trains nothing"):
        train(make_cfg([*TINY_RECALL, f"{key}=0", "logger=none"]))


def test_a_negative_learning_rate_is_refused_before_the_data_loads(make_cfg, monkeypatch):
    def data_loaded(self):
        raise AssertionError("the data loaded before the learning rate was checked")

    monkeypatch.setattr(RecallDataModule, "prepare_data", data_loaded)
    with pytest.raises(ConfigError, match=r"task.optimizer.lr must be a positive number, got -0.1"):
        train(make_cfg([*TINY_RECALL, "task.optimizer.lr=-0.1", "logger=none"]))


def test_a_run_without_a_seed_draws_one_and_records_it(make_cfg, tmp_path):
    metrics = train(make_cfg([*TINY_RECALL, "seed=null", "trainer.max_epochs=1", "logger=none"]))
    assert 0.0 <= metrics["test/acc"] <= 1.0
    saved = yaml.safe_load((tmp_path / "config_resolved.yaml").read_text())
    assert isinstance(saved["seed"], int) and saved["data"]["seed"] == saved["seed"]


@pytest.mark.parametrize(
    ("argument", "message"),
    [
        ("top_k=0", "top_k must be greater than 0, got 0"),
        ("top_k=-3", "top_k must be greater than 0, got -3"),
        ("length=-5", "length must be greater than 0, got -5"),
        ("length=abc", "length='abc' is not an integer"),
        ("temperature=0", "temperature must be greater than 0, got 0"),
    ],
)
def test_generate_arguments_are_checked_naming_the_argument(monkeypatch, argument, message):
    # checked before the checkpoint is read: this one does not exist
    assert run_script(monkeypatch, "generate.py", "ckpt_path=none.ckpt", argument) == (
        f"error: {message}"
    )


@pytest.mark.parametrize("entry", ["train.py", "eval.py"])
def test_entry_points_print_one_line_and_the_traceback_only_when_asked(tmp_path, entry):
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, bad)
    command = [sys.executable, entry, *TINY_RECALL, f"hydra.run.dir={tmp_path / 'run'}"]
    command += ["trainer.max_epochs=0"] if entry == "train.py" else [f"ckpt_path={bad}"]
    expected = "trainer.max_epochs=0 trains nothing" if entry == "train.py" else "not a trusted"
    environment = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    results = [
        subprocess.run(
            command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment | extra
        )
        for extra in ({}, {"HYDRA_FULL_ERROR": "1"})
    ]
    short, full = results
    assert short.returncode != 0 and full.returncode != 0
    assert expected in short.stderr and "Traceback" not in short.stderr, short.stderr
    last_line = short.stderr.strip().splitlines()[-1]  # after any library's warnings
    assert last_line.startswith("Error: ") and expected in last_line
    assert "Traceback" in full.stderr and expected in full.stderr


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.hidden_size=0", "model.hidden_size must be a positive integer"),
        ("data.min_len=50", "data.min_len <= data.max_len"),
        ("task.pooling=median", "task.pooling='median'"),
    ],
)
def test_errors_of_the_model_data_and_task_are_one_line_too(tmp_path, override, expected):
    environment = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    command = [sys.executable, "train.py", *TINY_RECALL, override]
    command += [f"hydra.run.dir={tmp_path / 'run'}", "logger=none"]
    result = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=environment
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert expected in result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["trainer.limit_val_batches=0"], "trainer.limit_val_batches=0"),
        (
            ["trainer.check_val_every_n_epoch=3", "trainer.max_epochs=2"],
            "check_val_every_n_epoch=3",
        ),
        (
            ["trainer.check_val_every_n_epoch=2", "++trainer.max_time=00:00:01:00"],
            "max_time with trainer.check_val_every_n_epoch=2",
        ),
        (
            ["trainer.check_val_every_n_epoch=2", "++trainer.max_time={seconds: 30}"],
            "max_time with trainer.check_val_every_n_epoch=2",
        ),
        # the task validates the last step of a max_steps run, but Lightning only in an epoch
        # it validates: epoch 0 is not one of them here
        (
            ["trainer.check_val_every_n_epoch=2", "trainer.max_steps=5"],
            "max_steps with trainer.check_val_every_n_epoch=2",
        ),
        (
            ["trainer.check_val_every_n_epoch=3", "trainer.max_epochs=2", "trainer.max_steps=5"],
            "check_val_every_n_epoch=3 never validates",
        ),
    ],
)
def test_a_run_that_would_never_validate_is_refused_before_training(make_cfg, overrides, key):
    """Lightning failed after training: early stopping or the plateau schedule found no val/acc."""
    with pytest.raises(ConfigError, match=key):
        train(make_cfg([*TINY_RECALL, *overrides, "logger=none"]))


@pytest.mark.parametrize(
    "overrides",
    [
        # the clock's stop waits for min_epochs: the second epoch, validated, always ends
        [
            "trainer.check_val_every_n_epoch=2",
            "trainer.min_epochs=2",
            "++trainer.max_time=00:00:01:00",
        ],
        # validation by batches, not epochs
        [
            "trainer.check_val_every_n_epoch=null",
            "++trainer.val_check_interval=4",
            "trainer.max_steps=9",
        ],
        ["trainer.max_steps=5", "++trainer.max_time={seconds: 30}"],
    ],
)
def test_a_run_that_validates_is_not_refused(make_cfg, overrides):
    check_validates(make_cfg([*TINY_RECALL, *overrides, "logger=none"]))


def test_a_target_outside_the_trusted_packages_names_trusted_targets(make_cfg, tmp_path):
    """Your own callback runs once trusted_targets names it; a run after it does not inherit
    the trust, and a malformed trusted_targets names the key."""
    marker = tmp_path / "paused"
    own = [
        "+callbacks.mine._target_=tests.pause.PauseAt",
        "+callbacks.mine.step=0",
        f"+callbacks.mine.marker={marker}",
        "+callbacks.mine.limit=0",
    ]
    message = (
        r"_target_=tests.pause.PauseAt is not a package rnnlab trusts to run; if it is your own "
        r"code, add trusted_targets=\[tests.pause.\*\]"
    )
    with pytest.raises(ConfigError, match=message):
        train(make_cfg([*TINY_RECALL, *own, "debug=fdr"]))
    assert not marker.exists()
    train(make_cfg([*TINY_RECALL, *own, "debug=fdr", "trusted_targets=[tests.*]"]))
    assert marker.read_text() == "0"  # it ran
    with pytest.raises(ConfigError, match=message):
        train(make_cfg([*TINY_RECALL, *own, "debug=fdr"]))
    for bad in ("tests.*", "[.*]"):
        with pytest.raises(ConfigError, match="trusted_targets must be a list of _target_"):
            train(make_cfg([*TINY_RECALL, *own, "debug=fdr", f"trusted_targets={bad}"]))
