"""Optuna sweeps through Hydra: resumable SQLite studies, failures, pruning, summaries, grid."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import re
import runpy
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from rnnlab.sweeper import grid, load_study, search_space
from rnnlab.utils import build
from tests.conftest import ROOT
from tests.integration.test_daily_use import command

TINY = [
    "data.num_train=128",
    "data.num_val=64",
    "data.num_test=64",
    "trainer.max_epochs=2",
    "logger=csv",
    "~callbacks.progress_bar",
]


def sweep(tmp_path, *overrides, check=True):
    return command("train.py", "-m", *TINY, f"paths.log_dir={tmp_path}", *overrides, check=check)


def study(tmp_path, name):
    # a reader beside a running sweep, as summarize_sweep.py is: it may create the tables too
    return load_study(f"sqlite:///{tmp_path}/sweeps/optuna.db", name)


def test_sweep_stores_trials_and_resumes_to_the_requested_count(tmp_path):
    sweep(tmp_path, "hparams_search=tpe", "hydra.sweeper.n_trials=4", "pruner=null")
    assert len(study(tmp_path, "tpe_recall").trials) == 4
    sweep(tmp_path, "hparams_search=tpe", "hydra.sweeper.n_trials=6", "pruner=null")
    trials = study(tmp_path, "tpe_recall").trials
    assert len(trials) == 6
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    # the dashboard names the objective; the study records its data and command
    loaded = study(tmp_path, "tpe_recall")
    assert loaded.metric_names == ["val/acc_best"]
    assert loaded.user_attrs["data"] == "recall"
    assert "hparams_search=tpe" in loaded.user_attrs["command"]
    # without a pruner every trial still reports its learning curve, one value an epoch
    assert all(sorted(t.intermediate_values) == [1, 2] for t in trials)
    # trials are run directories named by their parameters
    runs = next((tmp_path / "train" / "multiruns").iterdir())
    assert any("cell-" in run.name and "lr-" in run.name for run in runs.iterdir())

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
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert "val/acc_best" in header  # the metric by its name, not "value"
    lrs = [line.strip("|").split("|")[header.index("task.optimizer.lr")] for line in table[2:]]
    assert all(lr.strip() == f"{float(lr):.3g}" for lr in lrs), lrs
    assert (summary / "summary.csv").is_file()
    assert {p.name for p in summary.glob("*.png")} >= {
        "history.png",
        "val_acc_best_by_cell.png",  # named by the study's metric
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
    assert (runs / "summary.md").is_file() and (runs / "learning_curves.png").is_file()


def test_the_summary_breaks_ties_by_trial_number_as_optuna_does():
    summarize = runpy.run_path(str(ROOT / "scripts" / "summarize_sweep.py"))
    rows = [
        {"trial": number, "state": "complete", "value": value}
        for number, value in ((3, 0.5), (1, 0.25), (0, 0.5), (2, 0.5))
    ]
    study = optuna.create_study(direction="maximize")
    for row in sorted(rows, key=lambda r: r["trial"]):
        study.add_trial(optuna.trial.create_trial(value=row["value"]))
    ranked = summarize["ranked"](rows, "maximize")
    assert [row["trial"] for row in ranked] == [0, 2, 3, 1]
    assert ranked[0]["trial"] == study.best_trial.number
    assert summarize["rounded"]("0.0031622776601683794") == "0.00316"
    assert summarize["rounded"]("128") == "128" and summarize["rounded"]("gru") == "gru"


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


def test_a_trial_checkpoint_path_pastes_into_ckpt_path(tmp_path):
    result = sweep(
        tmp_path,
        "hparams_search=grid",
        "model.cell=gru",
        "model.num_layers=1",
        "task.optimizer.lr=0.001",
        "model.hidden_size=choice(8, 12)",
        "trainer.max_epochs=1",
    )
    runs = next((tmp_path / "train" / "multiruns").iterdir())
    checkpoints = sorted(runs.glob("*/checkpoints/last.ckpt"))
    names = {c.parent.parent.name for c in checkpoints}
    assert names in (
        {"0_hidden_size-8", "1_hidden_size-12"},
        {"0_hidden_size-12", "1_hidden_size-8"},
    )
    # one line per finished trial with the best so far
    output = result.stdout + result.stderr
    assert re.search(r"trial 1 finished: val/acc_best=\S+ \(best \S+, trial [01]\)", output)
    data = [o for o in TINY if o.startswith("data.")]
    command("eval.py", f"ckpt_path={checkpoints[1]}", f"paths.log_dir={tmp_path}", *data)
    (run,) = (tmp_path / "eval" / "runs").iterdir()
    assert json.loads((run / "eval_metrics.json").read_text())["ckpt_path"] == str(checkpoints[1])


def test_unpromising_trial_is_recorded_as_pruned(tmp_path):
    result = sweep(
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
    # said as a pruning, with the last report, not as Hydra's error for a failed job
    output = result.stdout + result.stderr
    for trial in trials:
        step, value = max(trial.intermediate_values.items())
        assert f"trial {trial.number} pruned at epoch {step - 1} (val/acc={value:.4g})" in output
    assert "Error executing job" not in output


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("hydra.sweeper.params={model.hiden_size:'choice(8, 16)'}", "model.hiden_size"),
        ("hydra.sweeper.params={model.hidden_size:'choice()'}", "hidden_size"),
        ("hydra.sweeper.storage='postgresql://nobody@127.0.0.1:9/none'", "hydra.sweeper.storage"),
        ("hydra.sweeper.grace_period=5", "hydra.sweeper.grace_period=5 must be longer"),
    ],
    ids=["unknown-key", "empty-choice", "bad-storage", "grace-within-heartbeat"],
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


# Small trials whose parameter sets differ in the log-uniform learning rate (and the cells):
# the sizes are fixed on the command line.
SMALL = [
    "hparams_search=tpe",
    "pruner=null",
    "model.hidden_size=8",
    "model.num_layers=1",
    "data.batch_size=32",
]


def start_sweep(tmp_path, *overrides):
    return subprocess.Popen(
        [sys.executable, "train.py", "-m", *TINY, f"paths.log_dir={tmp_path}", *overrides],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def poll(condition, what, tries=1500, sweep=None):
    # up to 5 minutes: a trial's process starts in seconds alone, but takes minutes on two
    # cores shared with training runs (two minutes were not always enough); a sweep that has
    # exited will never get there: say so at once, with what it printed
    for _ in range(tries):
        if condition():
            return
        if sweep is not None and sweep.poll() is not None:
            output = sweep.stdout.read()[-4000:]
            raise AssertionError(f"the sweep exited ({sweep.returncode}) before {what}:\n{output}")
        time.sleep(0.2)
    raise AssertionError(f"gave up waiting for {what}")


def running_trials_with_reports(tmp_path, name, count):
    """Whether `count` trials are RUNNING and have reported an epoch (so are mid-training)."""
    if not (tmp_path / "sweeps" / "optuna.db").exists():
        return False
    try:
        trials = study(tmp_path, name).trials
    except Exception:  # the study is not created yet
        return False
    running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING]
    return sum(bool(t.intermediate_values) for t in running) >= count


def children(pid):
    """Process ids whose parent is `pid` (from /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def alive(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_concurrent_sweeps_share_one_budget_with_distinct_trials(tmp_path):
    # the README's recipe for several machines: the same command, started at once, one study
    processes = [start_sweep(tmp_path, *SMALL, "hydra.sweeper.n_trials=4") for _ in range(2)]
    for process in processes:
        output = process.communicate(timeout=600)[0]
        assert process.returncode == 0, output[-3000:]
    trials = study(tmp_path, "tpe_recall").trials
    assert len(trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_killed_sweep_trial_is_failed_and_requeued_on_rerun(tmp_path):
    heartbeat = ["hydra.sweeper.heartbeat_interval=1", "hydra.sweeper.grace_period=2"]
    process = start_sweep(
        tmp_path, *SMALL, *heartbeat, "hydra.sweeper.n_trials=2", "trainer.max_epochs=200"
    )
    try:
        poll(
            lambda: running_trials_with_reports(tmp_path, "tpe_recall", 1), "a trial", sweep=process
        )
    finally:
        with contextlib.suppress(ProcessLookupError):  # a sweep that exited: poll said why
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    killed = study(tmp_path, "tpe_recall").trials
    assert [t.state.name for t in killed] == ["RUNNING"]
    # past grace_period, so the rerun finds the trial stale at once (train.py starts within
    # it since it imports Lightning lazily; the trial would be requeued later, as trial 2)
    time.sleep(3)

    sweep(
        tmp_path,
        *SMALL,
        *heartbeat,
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.requeue_interrupted=1",
    )
    trials = study(tmp_path, "tpe_recall").trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert trials[1].params == trials[0].params  # the killed trial, run again
    assert trials[2].params != trials[0].params


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_joblib_workers_die_with_a_killed_sweep(tmp_path):
    process = start_sweep(
        tmp_path,
        *SMALL,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
        "trainer.max_epochs=100000",  # the first trial must not end before the second reports
    )
    workers = []
    try:
        poll(
            lambda: running_trials_with_reports(tmp_path, "tpe_recall", 2),
            "two trials",
            sweep=process,
        )
        workers = [pid for pid in children(process.pid) if alive(pid)]
        assert workers
        process.kill()  # the sweep alone, as a crash or an OOM kill would
        process.wait()
        poll(lambda: not any(alive(pid) for pid in workers), "the workers to exit", tries=150)
    finally:
        for pid in [process.pid, *workers]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):  # workers the poll never saw
            os.killpg(process.pid, signal.SIGKILL)


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="reads /proc")
def test_sweep_waits_for_a_database_locked_by_another_process(tmp_path):
    database = tmp_path / "sweeps" / "optuna.db"
    database.parent.mkdir()
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # e.g. another sweep or a dashboard writing
    process = start_sweep(tmp_path, *SMALL, "hydra.sweeper.n_trials=1")

    def opened():
        fds = Path(f"/proc/{process.pid}/fd")
        with contextlib.suppress(OSError):
            return any(os.readlink(fd) == str(database.resolve()) for fd in fds.iterdir())
        return False

    try:
        poll(opened, "the sweep to open the database")
        time.sleep(8)  # longer than SQLite's default busy timeout of 5 s
    finally:
        holder.execute("COMMIT")
        holder.close()
    output = process.communicate(timeout=600)[0]
    assert process.returncode == 0, output[-3000:]
    assert [t.state.name for t in study(tmp_path, "tpe_recall").trials] == ["COMPLETE"]


@pytest.mark.parametrize(
    "at",
    [
        "CREATE TABLE",
        "CREATE TABLE alembic_version",
        "INSERT INTO version_info",
        "INSERT INTO alembic",
    ],
)
@pytest.mark.parametrize("opener", ["sweep", "reader"])
def test_opening_a_new_database_survives_another_process_creating_its_tables(
    tmp_path, monkeypatch, opener, at
):
    """The race that failed a sweep in CI: a reader (summarize_sweep.py, a dashboard, a script
    polling the study) opens the new database outside the sweeps' lock and creates Optuna's
    tables between the sweep's check for them and its own CREATE TABLE, which SQLite refuses
    ("table ... already exists"; Optuna's version rows then clash on their keys). Either side,
    losing at any of those statements, opens the tables the other made."""
    from optuna.storages import RDBStorage
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from rnnlab.sweeper import open_study

    monkeypatch.setattr("rnnlab.sweeper.time.sleep", lambda seconds: None)
    url = f"sqlite:///{tmp_path}/optuna.db"
    raced = []

    def the_other_process_creates_the_tables(connection, cursor, statement, *args):
        if statement.lstrip().startswith(at) and not raced:
            raced.append(statement)
            if opener == "sweep":
                RDBStorage(url)  # the reader: all of Optuna's tables, on its own connection
            else:
                optuna.create_study(study_name="s", storage=url)  # the sweep: tables and study

    event.listen(Engine, "before_cursor_execute", the_other_process_creates_the_tables)
    try:
        if opener == "sweep":
            study_ = open_study(url, "s", None, ["minimize"], None)[0]
        else:  # summarize_sweep.py and the pruning callback
            study_ = load_study(url, "s")
    finally:
        event.remove(Engine, "before_cursor_execute", the_other_process_creates_the_tables)
    assert raced, "the race was not staged"
    study_.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=1)
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == ["s"]
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 1


def test_budget_counts_running_trials_and_a_requeued_trial_once():
    from rnnlab.sweeper import budget_used, failed

    study = optuna.create_study()
    for state in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "FAIL", "WAITING"):
        study.add_trial(
            optuna.trial.create_trial(state=optuna.trial.TrialState[state], value=0.0)
            if state == "COMPLETE"
            else optuna.trial.create_trial(state=optuna.trial.TrialState[state])
        )
    # trial 4 (FAIL) was killed and queued again as trial 6
    study.add_trial(
        optuna.trial.create_trial(
            state=optuna.trial.TrialState.RUNNING,
            system_attrs={"failed_trial": 4, "retry_history": [4]},
        )
    )
    trials = study.get_trials()
    assert budget_used(trials) == 5  # 0, 1, 2, 3 and 6; not the queued 5 nor the retried 4
    assert failed(trials) == 1


def test_sampler_is_reseeded_by_the_first_trial_of_the_process():
    from omegaconf import OmegaConf

    from rnnlab.sweeper import PruningSweeperImpl

    def first_draw(sampler):
        return optuna.create_study(sampler=sampler).ask().suggest_float("x", 0, 1)

    impl = PruningSweeperImpl(None, "minimize", None, None, 1, 1, 0.0, None, None)
    impl.sampler_config = OmegaConf.create({"_target_": "optuna.samplers.RandomSampler", "seed": 5})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=5))
    original = study.sampler
    impl._seed_sampler(study, 0, None)  # a fresh sweep keeps the configured seed
    assert study.sampler is original
    impl._seed_sampler(study, 3, None)  # a process whose first trial is 3: seed 5 + 3
    draw = first_draw(study.sampler)
    assert draw == first_draw(optuna.samplers.RandomSampler(seed=8))
    assert draw != first_draw(optuna.samplers.RandomSampler(seed=5))


def test_the_sampler_is_reseeded_before_the_first_ask():
    """Samplers draw relative parameters inside `ask`: the seed must change before it."""
    from rnnlab.sweeper import PruningSweeperImpl

    impl = PruningSweeperImpl(None, "minimize", None, None, 10, 1, 0.0, None, None)
    study = optuna.create_study()
    for _ in range(3):  # trials of another process
        study.tell(study.ask(), 1.0)
    seen = []

    def seed_sampler(number):
        seen.append((number, len(study.get_trials(deepcopy=False))))

    (trial,) = impl._ask(study, None, seed_sampler)
    assert seen == [(3, 3)]  # called once, before the trial it numbers was asked
    assert trial.number == 3
