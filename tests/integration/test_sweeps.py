"""Optuna sweeps through Hydra: resumable SQLite studies, failures, pruning, summaries, grid."""

from __future__ import annotations

import itertools
import subprocess
import sys

import optuna
import pytest

from rnnlab.sweeper import grid, search_space
from rnnlab.utils import build
from tests.conftest import ROOT

TINY = [
    "data.num_train=128",
    "data.num_val=64",
    "data.num_test=64",
    "trainer.max_epochs=2",
    "logger=csv",
    "~callbacks.progress_bar",
]


def sweep(tmp_path, *overrides, check=True):
    result = subprocess.run(
        [sys.executable, "train.py", "-m", *TINY, f"paths.log_dir={tmp_path}", *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def study(tmp_path, name):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/sweeps/optuna.db")


def test_sweep_stores_trials_and_resumes_to_the_requested_count(tmp_path):
    sweep(tmp_path, "hparams_search=tpe", "hydra.sweeper.n_trials=4", "pruner=null")
    assert len(study(tmp_path, "tpe_recall").trials) == 4
    sweep(tmp_path, "hparams_search=tpe", "hydra.sweeper.n_trials=6", "pruner=null")
    trials = study(tmp_path, "tpe_recall").trials
    assert len(trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # without a pruner every trial still reports its learning curve, one value an epoch
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    # trials are run directories named by their parameters
    runs = next((tmp_path / "train" / "multiruns").iterdir())
    assert any("cell=" in run.name and "lr=" in run.name for run in runs.iterdir())

    summary = tmp_path / "summary"
    result = subprocess.run(
        [
            sys.executable,
            "scripts/summarize_sweep.py",
            "--storage",
            f"sqlite:///{tmp_path}/sweeps/optuna.db",
            "--study",
            "tpe_recall",
            "--out",
            str(summary),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = (summary / "summary.md").read_text().splitlines()
    assert len(table) == 2 + 6 and "| 1 |" in table[2]
    assert (summary / "summary.csv").is_file()
    assert {p.name for p in summary.glob("*.png")} >= {
        "history.png",
        "value_by_cell.png",
        "learning_curves.png",
    }
    result = subprocess.run(
        [sys.executable, "scripts/summarize_sweep.py", str(runs)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (runs / "summary.md").is_file() and list(runs.glob("*.png"))


def test_failed_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    sweep(
        tmp_path,
        "hparams_search=grid",
        # values given on the command line fix three of the grid's keys: a grid of 3 sizes
        "model.cell=gru",
        "model.num_layers=1",
        "task.optimizer.lr=0.001",
        "model.hidden_size=choice(8, -1, 12)",  # -1 fails
        "hydra.sweeper.max_failure_rate=0.5",
    )
    states = sorted(t.state.name for t in study(tmp_path, "grid_recall").trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]


def test_unpromising_trial_is_recorded_as_pruned(tmp_path):
    sweep(
        tmp_path,
        "hparams_search=tpe",
        "hydra.sweeper.n_trials=2",
        # a threshold pruner (accuracy never reaches 2), pruning from the second epoch
        "pruner._target_=optuna.pruners.ThresholdPruner",
        "~pruner.min_resource",
        "~pruner.reduction_factor",
        "+pruner.lower=2.0",
        "+pruner.n_warmup_steps=1",
    )
    trials = study(tmp_path, "tpe_recall").trials
    assert [t.state.name for t in trials] == ["PRUNED", "PRUNED"]
    assert all(t.intermediate_values for t in trials)  # reported before being stopped


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.sweeper.params={model.hiden_size:'choice(8, 16)'}", "model.hiden_size"),
        ("hydra.sweeper.params={model.hidden_size:'choice()'}", "hidden_size"),
        ("hydra.sweeper.storage='postgresql://nobody@127.0.0.1:9/none'", "hydra.sweeper.storage"),
    ],
    ids=["unknown-key", "empty-choice", "bad-storage"],
)
def test_bad_sweep_input_fails_before_any_trial(tmp_path, override, message):
    result = sweep(tmp_path, "hparams_search=grid", override, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Launching" not in result.stderr + result.stdout


def test_grid_preset_enumerates_the_54_tutorial_configurations(make_cfg):
    make_cfg(["hparams_search=grid"])
    from hydra.core.hydra_config import HydraConfig

    params = HydraConfig.get().sweeper.params
    distributions, fixed, _ = search_space(params)
    space = grid(distributions)
    assert space == {
        "model.hidden_size": [64, 128, 256],
        "model.num_layers": [1, 2, 3],
        "task.optimizer.lr": [0.001, 0.0001],
        "model.cell": ["rnn", "lstm", "gru"],
    }
    combinations = set(itertools.product(*space.values()))
    assert len(combinations) == 54 and not fixed


def test_conditional_space_sees_values_fixed_on_the_command_line():
    from omegaconf import OmegaConf

    from rnnlab.sweeper import conditional_space

    cfg = OmegaConf.create({"model": {"cell": "lstm", "num_layers": 1}})
    trial = optuna.create_study().ask()
    trial.set_user_attr("model.num_layers", 3)  # how the sweeper records a fixed value
    trial.set_user_attr("model.cell", "rnn")
    conditional_space(cfg, trial)
    assert set(trial.params) == {"model.nonlinearity", "model.dropout"}
    plain = optuna.create_study().ask()
    conditional_space(cfg, plain)  # the config's lstm with one layer: nothing conditional
    assert plain.params == {}


def test_tpe_preset_prunes_by_successive_halving(make_cfg):
    pruner = build(make_cfg(["hparams_search=tpe"]).pruner)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    # the first trial at a rung goes on; a later, worse one at the first rung is stopped
    for value, pruned in ((0.9, False), (0.5, True)):
        trial = study.ask()
        trial.report(value, step=1)
        assert trial.should_prune() is pruned
        study.tell(trial, value)
