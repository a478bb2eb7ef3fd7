"""Hydra's Optuna sweeper with what long sweeps need: resumable studies, pruning, failure budget,
and studies shared by concurrent or killed sweeps.

Registered as a Hydra plugin through the `hydra.plugins` entry point, with its config at
`hydra/sweeper=rnnlab_optuna` (conf/hparams_search/* select it). On top of the stock sweeper
(hydra-optuna-sweeper 1.4):

- Budget: `n_trials` is study-wide. It counts the study's trials that are finished (complete,
  pruned or failed) or running, in this process or any other, so the same command run again
  continues the stored study up to `n_trials`, and several processes on one study (one per
  machine, or started together) share that budget. On one SQLite file, creating the study and
  asking for trials is serialised by a file lock beside the database.
- Sampler seeds: a seeded sampler is re-seeded with seed + the number of the first trial this
  process asks for. A fresh single sweep starts at trial 0 and so keeps the configured seed
  (reproducible); a resumed sweep or a second process starts at another number and so draws
  other trials instead of replaying the first process's.
- Kills: while trials run, the sweep process records a heartbeat for them in the storage every
  `heartbeat_interval` seconds. A RUNNING trial whose heartbeat is older than `grace_period`
  belongs to a dead sweep: the next sweep on the study marks it FAIL (and queues it again with
  the same parameters up to `requeue_interrupted` times), waiting for trials that other
  processes still run before it stops. A trial interrupted by an exception in the sweep process
  (Ctrl-C, Lightning's SIGTERM handling) is failed or requeued at once. Jobs in worker processes
  (`hydra/launcher=joblib`) exit when the sweep process is gone (`DieWithMultirun`).
- Storage: SQLite waits up to a minute for a lock held by another process instead of SQLite's
  default 5 s; its rollback journal (not WAL, which needs one host and no network file system)
  keeps the file consistent across a crash.
- Pruning: the primary config's `pruner` (an `optuna.pruners.*` node, or null) is the study's
  pruner. Each trial gets `optuna_trial` (storage, study, trial id) in its config; the
  `rnnlab.callbacks.OptunaPruning` callback reports the monitored metric every validation
  epoch (also with pruner=null, so every learning curve is stored) and stops an unpromising
  trial, which is recorded as PRUNED.
- Failures: a failed trial is recorded as FAIL and the sweep goes on until more than
  `max_failure_rate` x `n_trials` trials of the study have failed.
- Bad input fails before any trial: a search-space key that is not in the config, an empty
  choice list, a storage URL that cannot be opened, pruning without a storage, a grace period
  not longer than the heartbeat interval.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from hydra.utils import get_method, instantiate
from hydra_plugins.hydra_optuna_sweeper._impl import (
    OptunaSweeperImpl,
    create_params_from_overrides,
)
from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.exceptions import ExperimentalWarning
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState

from rnnlab.naming import MAX_TRIAL_LENGTH, safe_name

log = logging.getLogger(__name__)
T = TypeVar("T")

# trials that spend the budget n_trials; WAITING (queued) ones are asked for from it
COUNTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
# seconds a process waits for another's SQLite write lock (SQLite's own default is 5)
SQLITE_BUSY_TIMEOUT_S = 60
# how often a sweep opens a server database whose tables another sweep is creating
SCHEMA_RACE_TRIES = 4
# what a sampler config may instantiate
SAMPLERS = ("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*")


@dataclass
class RnnlabOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "rnnlab.sweeper.OptunaSweeper"
    n_jobs: int = 1
    # seconds between the heartbeats a sweep records for its running trials (null: none)
    heartbeat_interval: int | None = 20
    # a RUNNING trial without a heartbeat for this long is failed by the next sweep on the study
    grace_period: int | None = 60
    # how many times a killed or interrupted trial is queued again with its parameters
    requeue_interrupted: int = 0


ConfigStore.instance().store(
    group="hydra/sweeper", name="rnnlab_optuna", node=RnnlabOptunaSweeperConf, provider="rnnlab"
)


def search_space(
    params: dict[str, str] | DictConfig | None, arguments: list[str] | tuple[str, ...] = ()
) -> tuple[dict[str, BaseDistribution], dict[str, Any], list[str]]:
    """(distributions, fixed values, fixed overrides) of `hydra.sweeper.params` + CLI arguments."""
    lines = [f"{key}={value}" for key, value in (params or {}).items()] + list(arguments)
    distributions, fixed, overrides = create_params_from_overrides(lines)
    for name, distribution in distributions.items():
        if isinstance(distribution, CategoricalDistribution) and not distribution.choices:
            raise ValueError(f"hydra.sweeper.params.{name}: the choice list is empty")
    return distributions, fixed, overrides


def grid(distributions: dict[str, BaseDistribution]) -> dict[str, list[Any]]:
    """The grid a GridSampler enumerates over discrete distributions."""
    return {
        name: list(OptunaSweeperImpl._to_grid_sampler_choices(distribution))
        for name, distribution in distributions.items()
    }


def check_keys(config: DictConfig, names: list[str]) -> None:
    """Every swept key must exist in the composed config, or name a config group."""
    choices = config.hydra.runtime.choices
    parser = OverridesParser.create()
    for name in names:
        key = parser.parse_override(f"{name}=0").key_or_group
        if name.startswith("+") or key in choices:
            continue
        if OmegaConf.select(config, key, default=_MISSING) is _MISSING:
            raise KeyError(
                f"hydra.sweeper.params has {key!r}, which is not a key of the config; "
                "fix the name or add it with a '+' prefix"
            )


_MISSING = object()


def sqlite_path(url: str | None) -> Path | None:
    """The database file of a `sqlite:///` URL (None for other storages and in-memory SQLite)."""
    if not url or not url.startswith("sqlite:///") or url.endswith(":memory:"):
        return None
    return Path(url.removeprefix("sqlite:///"))


def rdb_storage(
    url: str,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    requeue: int = 0,
) -> RDBStorage:
    """Optuna's RDB storage with a long SQLite busy timeout and, if asked, heartbeats; stale
    trials are queued again up to `requeue` times."""
    path = sqlite_path(url)
    engine_kwargs = {}
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    retry = RetryHeartbeatStaleTrialCallback(max_retry=requeue) if requeue > 0 else None
    with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.9
        warnings.simplefilter("ignore", ExperimentalWarning)
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period if heartbeat_interval else None,
            heartbeat_stale_trial_callback=retry if heartbeat_interval else None,
        )


@contextlib.contextmanager
def storage_lock(url: str | None) -> Iterator[None]:
    """Serialise creating the study and asking for trials among the processes sharing one SQLite
    file (a file lock beside it, released by the OS when its holder dies): SQLite's table
    creation races, and a count of the budget and the ask that spends it must not interleave."""
    path = sqlite_path(url)
    if path is None:  # a server database: no common file system to lock on
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def schema_race(error: Exception) -> bool:
    """Whether `error` is what losing the race to create Optuna's tables in a new database
    raises: two processes open it at once (a sweep and a reader such as summarize_sweep.py or a
    dashboard, which do not take the sweeps' lock) and both create the tables.
    PostgreSQL: "duplicate key ... pg_type" (IntegrityError); SQLite: "UNIQUE constraint failed:
    alembic_version" (IntegrityError) or "table ... already exists" (OperationalError)."""
    from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

    if isinstance(error, (IntegrityError, ProgrammingError)):
        return True
    return isinstance(error, OperationalError) and "already exists" in str(error)


def retry_schema_race(open_: Callable[[], T]) -> T:
    """`open_()`, again while it loses the race to create a new database's tables (the loser
    finds them made next time); other failures, and the last try's, are raised."""
    for attempt in range(1, SCHEMA_RACE_TRIES):
        try:
            return open_()
        except Exception as error:  # SQLAlchemy and driver errors have no common base
            if not schema_race(error):
                raise
            log.info("another process is creating the study's tables; retrying")
            time.sleep(attempt)
    return open_()


def open_study(
    url: str | None,
    study_name: str | None,
    sampler: Any,
    directions: list[str],
    pruner: Any,
    **storage_options: Any,
) -> tuple[optuna.Study, RDBStorage | None]:
    """Create or load the study and its storage (`rdb_storage` options); a storage that cannot
    be opened is an error naming the key."""

    def open_() -> tuple[optuna.Study, RDBStorage | None]:
        storage = rdb_storage(url, **storage_options) if url else None
        study = optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions,
            load_if_exists=True,
        )
        return study, storage

    try:
        return retry_schema_race(open_)
    except Exception as failure:
        raise ValueError(f"hydra.sweeper.storage={url!r} cannot be opened: {failure}") from failure


def load_study(url: str, study_name: str, pruner: Any = None) -> optuna.Study:
    """An existing study, opened as a sweep opens it (busy timeout, the table race retried)."""
    return retry_schema_race(
        lambda: optuna.load_study(study_name=study_name, storage=rdb_storage(url), pruner=pruner)
    )


def retried(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of the trials that were queued again (their retry stands in for them)."""
    return {number for t in trials for number in t.system_attrs.get("retry_history", [])}


def budget_used(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Trials that count against `n_trials`: finished or running, less those queued again."""
    again = retried(trials)
    return sum(t.state in COUNTED and t.number not in again for t in trials)


def failed(trials: list[optuna.trial.FrozenTrial]) -> int:
    """Failed trials of the study, less those queued again."""
    again = retried(trials)
    return sum(t.state == TrialState.FAIL and t.number not in again for t in trials)


def fail_stale(study: optuna.Study) -> None:
    """Fail (and requeue, if the storage says so) running trials whose heartbeat stopped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        fail_stale_trials(study)


class Heartbeat:
    """Records a heartbeat for the trials in flight every `interval` seconds from a thread of
    the sweep process: when that process dies the beats stop and its trials go stale."""

    def __init__(self, storage: RDBStorage | None, trial_ids: list[int]) -> None:
        self.storage = storage
        self.trial_ids = trial_ids
        self.interval = storage.get_heartbeat_interval() if storage else None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def beat(self) -> None:
        if self.interval:
            for trial_id in self.trial_ids:
                self.storage.record_heartbeat(trial_id)

    def _beat(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.beat()
            except Exception as error:  # a lost beat is retried; the trial must go on
                log.warning("heartbeat not recorded: %s", error)

    def __enter__(self) -> Heartbeat:
        if self.interval:
            self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def trial_name(params: dict[str, Any]) -> str:
    """A run name from a trial's parameters, `cell-gru_hidden_size-128_lr-0.00316`, that pastes
    into `ckpt_path=` unquoted."""
    return safe_name(params.items(), MAX_TRIAL_LENGTH)


def trial_identity(trial: optuna.Trial, storage: str | None, study: str) -> list[str]:
    """Overrides that tell a job its run name and, with a storage, its trial (for pruning)."""
    overrides = [f"++optuna_trial.name='{trial_name(trial.params)}'"]
    if storage:
        overrides += [
            f"++optuna_trial.storage='{storage}'",
            f"++optuna_trial.study='{study}'",
            f"++optuna_trial.trial_id={trial._trial_id}",
        ]
    return overrides


def describe_study(study: optuna.Study, config: DictConfig, objectives: int) -> None:
    """Name the objective (optuna-dashboard shows "Objective 0" otherwise) and record the data
    and the command of the sweep as study attributes."""
    metric = config.get("optimized_metric")
    if metric and objectives == 1:
        with warnings.catch_warnings():  # "experimental" since Optuna 3.2
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names([str(metric)])
    study.set_user_attr("data", str(config.hydra.runtime.choices.get("data")))
    study.set_user_attr("command", " ".join(["python", *sys.argv]))


def pruned(result: JobReturn) -> bool:
    return result.status == JobStatus.FAILED and isinstance(
        result._return_value, optuna.TrialPruned
    )


def pruned_line(study: optuna.Study, number: int, config: DictConfig) -> str:
    """`trial 3 pruned at epoch 1 (val/acc=0.4219)`: the trial's last report. Reports are
    numbered by validation from 1 (OptunaPruning); epochs from 0, as in the log lines and
    checkpoint names (the same with one validation an epoch)."""
    reports = study.get_trials(deepcopy=False)[number].intermediate_values
    if not reports:
        return f"trial {number} pruned"
    step = max(reports)
    monitor = OmegaConf.select(config, "task.monitor", default="value")
    return f"trial {number} pruned at epoch {step - 1} ({monitor}={reports[step]:.4g})"


def finished_line(study: optuna.Study, number: int, value: float, config: DictConfig) -> str:
    """`trial 4 finished: val/acc_best=0.81 (best 0.83, trial 2)`, best over the whole study."""
    best = study.best_trial
    metric = config.get("optimized_metric") or "value"
    return (
        f"trial {number} finished: {metric}={value:.4g} (best {best.value:.4g}, "
        f"trial {best.number})"
    )


class PruningSweeperImpl(OptunaSweeperImpl):
    sampler_config: DictConfig | None = None
    heartbeat_interval: int | None = None
    grace_period: int | None = None
    requeue_interrupted: int = 0

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        distributions, fixed_params, fixed_overrides = search_space(self.params, arguments)
        check_keys(self.config, [*distributions, *fixed_params])
        pruner_config = self.config.get("pruner")
        pruner = (
            instantiate(pruner_config, _execution_whitelist_=("optuna.pruners.*",))
            if pruner_config
            else optuna.pruners.NopPruner()
        )
        if pruner_config and not self.storage:
            raise ValueError("pruning needs a study storage: set hydra.sweeper.storage")
        if self.heartbeat_interval and (self.grace_period or 0) <= self.heartbeat_interval:
            raise ValueError(
                f"hydra.sweeper.grace_period={self.grace_period} must be longer than "
                f"hydra.sweeper.heartbeat_interval={self.heartbeat_interval}, or live trials "
                "would be failed between two heartbeats"
            )
        for name in fixed_params:  # a value given on the command line fixes a swept key
            distributions.pop(name, None)
        is_grid = (
            isinstance(self.sampler, functools.partial)
            and self.sampler.func == optuna.samplers.GridSampler
        )
        space = grid(distributions) if is_grid else {}
        if is_grid:
            self.sampler = self.sampler(space)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in space.values()))
        directions = self._get_directions()
        with storage_lock(self.storage):
            study, storage = open_study(
                self.storage,
                self.study_name,
                self.sampler,
                directions,
                pruner,
                heartbeat_interval=self.heartbeat_interval,
                grace_period=self.grace_period,
                requeue=self.requeue_interrupted,
            )
            describe_study(study, self.config, len(directions))
            fail_stale(study)
            # running trials get a first heartbeat, so that those of a sweep killed before
            # heartbeats existed go stale too; live ones lose nothing
            running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            Heartbeat(storage, [t._trial_id for t in running]).beat()
            used = budget_used(study.get_trials(deepcopy=False))
        log.info(
            "study %s in %s: %d trials finished or running, budget n_trials=%d",
            study.study_name,
            self.storage,
            used,
            self.n_trials,
        )
        failures_allowed = math.floor(self.max_failure_rate * self.n_trials)

        def tell(trial: optuna.Trial, **outcome: Any) -> None:
            try:
                # skip a trial another sweep has failed meanwhile (this one was stopped, e.g.
                # suspended, for longer than grace_period): Optuna logs that it was skipped
                study.tell(trial, skip_if_finished=True, **outcome)
            except RuntimeError:  # GridSampler stops the study once the grid is covered
                if not is_grid:
                    raise

        def seed_sampler(number: int) -> None:
            self._seed_sampler(study, number, space if is_grid else None)

        first = True
        while True:
            trials = self._ask(study, storage, seed_sampler if first else None)
            first = False
            if not trials:
                if not self._wait_for_others(study):
                    break
                continue
            overrides = self._configure_trials(trials, distributions, fixed_params, fixed_overrides)
            # each job learns its trial (for pruning) and a name for its run directory
            overrides = [
                (*trial_overrides, *trial_identity(trial, self.storage, study.study_name))
                for trial, trial_overrides in zip(trials, overrides, strict=True)
            ]
            try:
                with Heartbeat(storage, [trial._trial_id for trial in trials]):
                    returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            except BaseException:  # Ctrl-C, SystemExit (Lightning's SIGTERM handling), a crash
                for trial in trials:
                    self._interrupted(study, storage, trial)
                raise
            self.job_idx += len(returns)
            for trial, result in zip(trials, returns, strict=True):
                if pruned(result):  # before `return_value`, which reports it as an error
                    tell(trial, state=TrialState.PRUNED)
                    log.info(pruned_line(study, trial.number, self.config))
                    continue
                error: BaseException | None = None
                try:
                    value = float(result.return_value)
                    if not math.isfinite(value):
                        raise ValueError(f"the objective is {value}")
                except Exception as caught:  # the job's own exception, re-raised by JobReturn
                    error = caught
                if error is None:
                    tell(trial, values=[value])
                    if len(directions) == 1:
                        log.info(finished_line(study, trial.number, value, self.config))
                    continue
                tell(trial, state=TrialState.FAIL)
                log.warning("trial %d failed: %s", trial.number, error)
                # failures of every process and earlier run of the study count
                failures = failed(study.get_trials(deepcopy=False))
                if failures > failures_allowed:
                    raise RuntimeError(
                        f"{failures} trials of the study failed, more than hydra.sweeper."
                        f"max_failure_rate={self.max_failure_rate} x n_trials allows"
                    ) from error
        self._write_results(study, directions)

    def _ask(
        self,
        study: optuna.Study,
        storage: RDBStorage | None,
        seed_sampler: Callable[[int], None] | None = None,
    ) -> list[optuna.Trial]:
        """Up to n_jobs new trials, as many as the study-wide budget has left.

        `seed_sampler(number)`, on a process's first call, re-seeds the sampler with the number
        the next trial gets, before any `ask`: samplers draw relative parameters inside `ask`.
        """
        with storage_lock(self.storage):
            fail_stale(study)
            if seed_sampler is not None:
                seed_sampler(len(study.get_trials(deepcopy=False)))
            to_go = self.n_trials - budget_used(study.get_trials(deepcopy=False))
            trials = [study.ask() for _ in range(min(to_go, self.n_jobs))]
            Heartbeat(storage, [trial._trial_id for trial in trials]).beat()
        return trials

    def _wait_for_others(self, study: optuna.Study) -> bool:
        """With the budget spent: wait while other processes run trials (one of them may die and
        its trial be failed and requeued); False once none is running."""
        if not self.heartbeat_interval:
            return False
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not running:
            return False
        log.info(
            "the budget is spent; waiting for trials %s, running in other processes",
            [t.number for t in running],
        )
        time.sleep(self.heartbeat_interval)
        return True

    def _seed_sampler(self, study: optuna.Study, number: int, space: dict | None) -> None:
        """Re-seed a seeded sampler with seed + the number of this process's first trial."""
        seed = self.sampler_config.get("seed") if self.sampler_config else None
        if seed is None or number == 0:
            return
        sampler = instantiate(
            self.sampler_config,
            seed=seed + number,
            _execution_whitelist_=SAMPLERS,
        )
        study.sampler = sampler(space) if space is not None else sampler
        log.info("sampler seed %d (seed %d + first trial %d)", seed + number, seed, number)

    def _interrupted(
        self, study: optuna.Study, storage: RDBStorage | None, trial: optuna.Trial
    ) -> None:
        """Record a trial whose run was interrupted as FAIL, queued again if asked."""
        # a storage out of reach must not hide the interruption; the heartbeat covers it then
        with contextlib.suppress(Exception):
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            log.warning("trial %d interrupted: recorded as FAIL", trial.number)
            if storage and self.requeue_interrupted > 0:
                retry = RetryHeartbeatStaleTrialCallback(max_retry=self.requeue_interrupted)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    retry(study, storage.get_trial(trial._trial_id))

    def _write_results(self, study: optuna.Study, directions: list[str]) -> None:
        completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        results: dict[str, Any] = {"name": "optuna", "study": study.study_name}
        if completed and len(directions) == 1:
            best = study.best_trial
            results |= {"best_params": best.params, "best_value": best.value}
            log.info("best value %s with %s", best.value, best.params)
        Path(self.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(
            OmegaConf.create(results),
            f"{self.config.hydra.sweep.dir}/optimization_results.yaml",
        )


class OptunaSweeper(Sweeper):
    """`hydra/sweeper=rnnlab_optuna`: the stock Optuna sweeper's options, resumable and pruned."""

    def __init__(
        self,
        sampler: Any,
        direction: Any,
        storage: str | None,
        study_name: str | None,
        n_trials: int,
        n_jobs: int,
        max_failure_rate: float,
        custom_search_space: str | None,
        params: DictConfig | None,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        requeue_interrupted: int = 0,
    ) -> None:
        self.sweeper = PruningSweeperImpl(
            instantiate(sampler, _execution_whitelist_=SAMPLERS),
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            None,
            params,
        )
        # kept to re-seed the sampler per process
        self.sweeper.sampler_config = sampler
        self.sweeper.heartbeat_interval = heartbeat_interval
        self.sweeper.grace_period = grace_period
        self.sweeper.requeue_interrupted = requeue_interrupted
        if custom_search_space:
            self.sweeper.custom_search_space_extender = get_method(custom_search_space)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)


# the multirun's process id, inherited by its joblib workers
MULTIRUN_PID = "RNNLAB_MULTIRUN_PID"
_watched: list[int] = []


class DieWithMultirun(Callback):
    """Hydra callback (conf/hydra/default.yaml): a job in a worker process of the multirun
    (`hydra/launcher=joblib`) exits once the multirun's process is gone, instead of finishing
    a trial nobody will record. Jobs run in the multirun's own process (the basic launcher) or
    elsewhere (SLURM) are not children of it and are left alone."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        os.environ[MULTIRUN_PID] = str(os.getpid())

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        parent = int(os.environ.get(MULTIRUN_PID, "0"))
        if parent and parent == os.getppid() and not _watched:
            _watched.append(parent)  # one watcher per worker process, which runs many jobs
            threading.Thread(target=exit_when_orphaned, args=(parent,), daemon=True).start()


def exit_when_orphaned(parent: int, interval: float = 1.0) -> None:
    """Exit this process once its parent is no longer `parent` (it died; we were re-parented).
    A thread polling the parent id, rather than PR_SET_PDEATHSIG, which fires when the parent
    *thread* that started the worker ends and is Linux-only."""
    while os.getppid() == parent:
        time.sleep(interval)
    log.error("the multirun process %d is gone: this worker (%d) exits", parent, os.getpid())
    logging.shutdown()
    os._exit(1)


def conditional_space(cfg: DictConfig, trial: optuna.Trial) -> None:
    """Parameters that exist only for some choices (`custom_search_space` of the tpe preset):
    the nonlinearity only for cell=rnn, dropout between layers only when num_layers > 1."""

    def value(key: str) -> Any:  # swept, else fixed on the command line, else the config's
        if key in trial.params:
            return trial.params[key]
        if key in trial.user_attrs:
            return trial.user_attrs[key]
        return OmegaConf.select(cfg, key)

    if value("model.cell") == "rnn":
        trial.suggest_categorical("model.nonlinearity", ["tanh", "relu"])
    if int(value("model.num_layers") or 1) > 1:
        trial.suggest_float("model.dropout", 0.0, 0.5, step=0.1)
