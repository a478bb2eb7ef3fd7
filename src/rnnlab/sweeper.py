"""Hydra's Optuna sweeper with what long sweeps need: resumable studies, pruning, failure budget.

Registered as a Hydra plugin through the `hydra.plugins` entry point, with its config at
`hydra/sweeper=rnnlab_optuna` (conf/hparams_search/* select it). On top of the stock sweeper
(hydra-optuna-sweeper 1.4):

- Resume: `n_trials` counts the study's finished trials (complete, pruned or failed), so the
  same command run again continues the stored study up to `n_trials` instead of starting over.
- Pruning: the primary config's `pruner` (an `optuna.pruners.*` node, or null) is the study's
  pruner. Each trial gets `optuna_trial` (storage, study, trial id) in its config; the
  `rnnlab.callbacks.OptunaPruning` callback reports the monitored metric every validation
  epoch (also with pruner=null, so every learning curve is stored) and stops an unpromising
  trial, which is recorded as PRUNED.
- Failures: a failed trial is recorded as FAIL and the sweep goes on until more than
  `max_failure_rate` x `n_trials` trials have failed.
- Bad input fails before any trial: a search-space key that is not in the config, an empty
  choice list, a storage URL that cannot be opened, pruning without a storage.
"""

from __future__ import annotations

import functools
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
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
from optuna.trial import TrialState

log = logging.getLogger(__name__)

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass
class RnnlabOptunaSweeperConf(OptunaSweeperConf):
    _target_: str = "rnnlab.sweeper.OptunaSweeper"
    n_jobs: int = 1


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


def open_study(
    storage: str | None, study_name: str | None, sampler: Any, directions: list[str], pruner: Any
) -> optuna.Study:
    """Create or load the study; a storage that cannot be opened is an error naming the key."""
    if storage and storage.startswith("sqlite:///"):
        path = Path(storage.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return optuna.create_study(
            study_name=study_name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=directions,
            load_if_exists=True,
        )
    except Exception as error:  # SQLAlchemy and driver errors have no common base
        raise ValueError(f"hydra.sweeper.storage={storage!r} cannot be opened: {error}") from error


def trial_name(params: dict[str, Any]) -> str:
    """A path-safe run name from a trial's parameters: `cell=gru,hidden_size=128,lr=0.00316`."""

    def short(value: Any) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    return ",".join(f"{key.rsplit('.', 1)[-1]}={short(v)}" for key, v in params.items()).replace(
        "/", "_"
    )


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


class PruningSweeperImpl(OptunaSweeperImpl):
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
        for name in fixed_params:  # a value given on the command line fixes a swept key
            distributions.pop(name, None)
        is_grid = (
            isinstance(self.sampler, functools.partial)
            and self.sampler.func == optuna.samplers.GridSampler
        )
        if is_grid:
            space = grid(distributions)
            self.sampler = self.sampler(space)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in space.values()))
        directions = self._get_directions()
        study = open_study(self.storage, self.study_name, self.sampler, directions, pruner)
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        if done and not is_grid:
            # a seeded sampler would otherwise replay the random start-up draws of the first run
            self.sampler.reseed_rng()
        log.info(
            "study %s in %s: %d finished trials, running %d more (n_trials=%d)",
            study.study_name,
            self.storage,
            done,
            max(0, self.n_trials - done),
            self.n_trials,
        )
        failures_allowed = math.floor(self.max_failure_rate * self.n_trials)
        # failed trials of earlier runs of this study count against the budget too
        failures = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))

        def tell(trial: optuna.Trial, **outcome: Any) -> None:
            try:
                study.tell(trial, **outcome)
            except RuntimeError:  # GridSampler stops the study once the grid is covered
                if not is_grid:
                    raise

        to_go = self.n_trials - done
        while to_go > 0:
            batch = min(to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, distributions, fixed_params, fixed_overrides)
            # each job learns its trial (for pruning) and a name for its run directory
            overrides = [
                (*trial_overrides, *trial_identity(trial, self.storage, study.study_name))
                for trial, trial_overrides in zip(trials, overrides, strict=True)
            ]
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, result in zip(trials, returns, strict=True):
                error: BaseException | None = None
                try:
                    value = float(result.return_value)
                    if not math.isfinite(value):
                        raise ValueError(f"the objective is {value}")
                except optuna.TrialPruned:
                    tell(trial, state=TrialState.PRUNED)
                    log.info("trial %d pruned", trial.number)
                    continue
                except Exception as caught:  # the job's own exception, re-raised by JobReturn
                    error = caught
                if error is None:
                    tell(trial, values=[value])
                    continue
                tell(trial, state=TrialState.FAIL)
                failures += 1
                log.warning("trial %d failed: %s", trial.number, error)
                if failures > failures_allowed:
                    raise RuntimeError(
                        f"{failures} trials of the study failed, more than hydra.sweeper."
                        f"max_failure_rate={self.max_failure_rate} x n_trials allows"
                    ) from error
            to_go -= batch
        self._write_results(study, directions)

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
    ) -> None:
        sampler = instantiate(
            sampler,
            _execution_whitelist_=("hydra_plugins.hydra_optuna_sweeper.*", "optuna.samplers.*"),
        )
        self.sweeper = PruningSweeperImpl(
            sampler,
            direction,
            storage,
            study_name,
            n_trials,
            n_jobs,
            max_failure_rate,
            None,
            params,
        )
        if custom_search_space:
            self.sweeper.custom_search_space_extender = get_method(custom_search_space)

    def setup(
        self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig
    ) -> None:
        self.sweeper.setup(hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> None:
        return self.sweeper.sweep(arguments)


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
