"""Training and evaluation as plain functions over a composed Hydra config.

`train(cfg)` returns a dict of metrics, so tests call it directly and a sweeper takes its
objective from `run(cfg)`. Flow: config -> datamodule -> DataSpec -> task -> Trainer.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from rnnlab.allocator import tune_malloc
from rnnlab.callbacks import OptunaPruning
from rnnlab.checkpoints import adopt_data_state, check_data_state, require_task
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import atomic_write_text
from rnnlab.errors import ConfigError
from rnnlab.hardware import resolve_precision
from rnnlab.loggers import TensorBoardLogger
from rnnlab.models import RecurrentBackbone
from rnnlab.naming import register_resolvers
from rnnlab.progress import (
    ValidationLog,
    duration,
    interactive,
    progress_callbacks,
    quiet_lightning,
)
from rnnlab.utils import build, read_checkpoint, trust_targets

log = logging.getLogger(__name__)
register_resolvers()  # for configs composed without the entry points: tests, notebooks

# what a training run writes into its directory (Hydra's .hydra/ and log file are not counted:
# they are written before the run starts)
RUN_OUTPUTS = (
    "checkpoints",
    "tensorboard",
    "csv",
    "metrics.json",
    "run.json",
    "config_resolved.yaml",
    "data_state.json",
)


def plain(cfg: DictConfig | dict | None) -> dict[str, Any]:
    """A resolved config node as plain Python containers (what checkpoints store)."""
    if cfg is None:
        return {}
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def check_model_config(model_cfg: DictConfig) -> None:
    """Fail before any data is loaded when the `model` group holds a bad value or key."""
    try:
        RecurrentBackbone(1, **plain(model_cfg))
    except TypeError as error:
        raise ConfigError(f"bad key in the model config: {error}") from error
    except ValueError as error:
        raise ConfigError(str(error)) from error


def check_run_config(cfg: DictConfig) -> None:
    """Fail before any data is loaded on settings that would waste or mislead a run."""
    optimizer = cfg.task.get("optimizer") or {}
    lr = optimizer.get("lr")
    if lr is not None and not (isinstance(lr, (int, float)) and 0 < lr < math.inf):
        raise ConfigError(f"task.optimizer.lr must be a positive number, got {lr!r}")
    if cfg.get("train", True):
        for key in ("max_epochs", "max_steps"):
            if cfg.trainer.get(key) == 0:
                raise ConfigError(
                    f"trainer.{key}=0 trains nothing, and the test would score untrained "
                    f"weights: pass trainer.{key} >= 1 (or train=false ckpt_path=... to test "
                    "a checkpoint)"
                )
        check_validates(cfg)


def check_validates(cfg: DictConfig) -> None:
    """A training run must validate at least once: early stopping, the best checkpoint, the
    plateau schedule and the sweeper's objective all read `task.monitor`. (A run that
    `max_steps` or `max_time` ends inside an epoch is validated where it stops, but Lightning
    does that only in an epoch it validates anyway: every epoch, unless
    `check_val_every_n_epoch` says otherwise.)"""
    trainer = cfg.trainer
    if trainer.get("fast_dev_run"):
        return
    if trainer.get("limit_val_batches") == 0:
        raise ConfigError(
            f"trainer.limit_val_batches=0 turns validation off, but the run needs "
            f"task.monitor={cfg.task.monitor} (early stopping, the best checkpoint, the "
            "schedule): validate on a few batches, e.g. trainer.limit_val_batches=2"
        )
    every, epochs = trainer.get("check_val_every_n_epoch") or 1, trainer.get("max_epochs") or -1
    if 0 < epochs < every:
        raise ConfigError(
            f"trainer.check_val_every_n_epoch={every} never validates in "
            f"trainer.max_epochs={epochs} epochs: lower it to {epochs} or less"
        )
    if every == 1:
        return
    fix = (
        "use trainer.check_val_every_n_epoch=1, or trainer.check_val_every_n_epoch=null with "
        "trainer.val_check_interval=<batches>"
    )
    if (trainer.get("max_steps") or -1) != -1:
        raise ConfigError(
            f"trainer.max_steps with trainer.check_val_every_n_epoch={every} can end the run "
            f"before its first validation (it may stop inside an epoch that is not validated): "
            f"{fix}"
        )
    # the clock's stop waits for min_epochs, so min_epochs >= every guarantees a validation
    if trainer.get("max_time") and (trainer.get("min_epochs") or 0) < every:
        raise ConfigError(
            f"trainer.max_time with trainer.check_val_every_n_epoch={every} can stop the run "
            f"before its first validation: {fix}, or trainer.min_epochs={every}"
        )


def check_run_dir(cfg: DictConfig) -> None:
    """Never write over an earlier run's outputs: resume it, or replace it when asked to.

    A run directory holding rnnlab outputs is refused unless `ckpt_path` resumes from it
    (`last` or a checkpoint inside it) or `overwrite=true`, which first removes those outputs
    so no checkpoint of another model stays beside the new ones.
    """
    if rank_zero_only.rank != 0:  # other ranks of a run find rank 0's outputs already there
        return
    output_dir = Path(cfg.paths.output_dir)
    found = [name for name in RUN_OUTPUTS if (output_dir / name).exists()]
    if not found:
        return
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last" or (
        ckpt_path and Path(ckpt_path).resolve().is_relative_to(output_dir.resolve())
    ):
        return
    if not cfg.get("overwrite"):
        raise ConfigError(
            f"the run directory {output_dir} already holds a run ({', '.join(found)}): pass "
            "ckpt_path=last to resume it, or overwrite=true to replace it"
        )
    log.warning("overwrite=true: removing %s from %s", ", ".join(found), output_dir)
    for name in found:
        path = output_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def build_task(cfg: DictConfig, spec: DataSpec) -> L.LightningModule:
    """The task named by `cfg.task._target_`, with sizes from the data and the backbone config."""
    task_kwargs = plain(cfg.task)
    task_class = get_class(task_kwargs.pop("_target_"))
    return task_class(model=plain(cfg.model), **spec.task_kwargs(), **task_kwargs)


def choice(group: str, cfg: DictConfig) -> str:
    """The config-group option this run uses (e.g. 'lstm'), or the target's class name."""
    if HydraConfig.initialized():
        chosen = HydraConfig.get().runtime.choices.get(group)
        if chosen:
            return str(chosen)
    node = cfg.get(group)
    return str(node.get("_target_", "?")).rsplit(".", 1)[-1] if node is not None else "?"


def curated_hparams(cfg: DictConfig, task: L.LightningModule) -> dict[str, Any]:
    """The flat hyperparameter set the TensorBoard HPARAMS tab compares runs by."""
    optimizer = cfg.task.get("optimizer") or {}
    return {
        "data": choice("data", cfg),
        "model": choice("model", cfg),
        "cell": cfg.model.cell,
        "hidden_size": cfg.model.hidden_size,
        "num_layers": cfg.model.num_layers,
        "bidirectional": cfg.model.bidirectional,
        "dropout": cfg.model.dropout,
        "lr": optimizer.get("lr", float("nan")),
        "batch_size": cfg.data.get("batch_size", -1),
        "seed": cfg.get("seed") if cfg.get("seed") is not None else -1,
        "precision": str(cfg.trainer.get("precision")),
        "parameters": parameter_count(task),
    }


def parameter_count(task: L.LightningModule) -> int:
    """Every parameter of the task's model (tables compare models of a stated size)."""
    return sum(p.numel() for p in task.parameters())


def instantiate_group(group_cfg: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a callbacks or logger group."""
    if not group_cfg:
        return []
    return [
        build(node)
        for node in group_cfg.values()
        if isinstance(node, DictConfig) and "_target_" in node
    ]


def to_floats(metrics: dict[str, Any]) -> dict[str, float]:
    """Scalar metrics (Lightning's callback_metrics hold tensors) as plain floats."""
    scalars = {}
    for key, value in metrics.items():
        if isinstance(value, (int, float)) or (torch.is_tensor(value) and value.numel() == 1):
            scalars[key] = float(value)
    return scalars


@rank_zero_only
def save_metrics(cfg: DictConfig, metrics: dict[str, Any], name: str) -> None:
    path = Path(cfg.paths.output_dir) / name
    atomic_write_text(path, json.dumps(metrics, indent=2, sort_keys=True) + "\n")


@rank_zero_only
def save_data_state(cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """The datamodule's state (vocabulary, tokeniser) beside the run, as in its checkpoints."""
    state = datamodule.state_dict()
    if state:
        path = Path(cfg.paths.output_dir) / "data_state.json"
        atomic_write_text(path, json.dumps(state, ensure_ascii=False))


@rank_zero_only
def save_resolved_config(cfg: DictConfig) -> None:
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)


def run_seed(cfg: DictConfig) -> int:
    """The config's seed. `seed=null` draws one, which the saved config then records so the run
    can be repeated; DDP ranks started by rank 0 inherit its draw through PL_GLOBAL_SEED."""
    if cfg.get("seed") is not None:
        return int(cfg.seed)
    inherited = os.environ.get("PL_GLOBAL_SEED")
    if inherited and rank_zero_only.rank != 0:
        return int(inherited)
    return random.SystemRandom().randrange(2**31)


def resume_checkpoint(cfg: DictConfig) -> tuple[str | None, dict[str, Any] | None]:
    """The checkpoint `ckpt_path` names, and its contents, checked before any data loads.

    `ckpt_path=last` is the run directory's `checkpoints/last.ckpt` (none yet: start afresh, so
    a requeued job can always pass it). A checkpoint of another task, or trained with another
    `model` config, is an error naming what differs.
    """
    path = cfg.get("ckpt_path")
    if not path:
        return None, None
    if path == "last":
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.info("ckpt_path=last: no %s yet, starting from scratch", last)
            return None, None
        path = str(last)
    checkpoint = read_checkpoint(path)
    require_task(checkpoint, get_class(cfg.task._target_), path)
    stored = checkpoint.get("hyper_parameters", {}).get("model")
    if stored is not None:
        wanted = plain(cfg.model)
        differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        if differ:
            details = ", ".join(
                f"model.{k}: {stored.get(k)!r} there, {wanted.get(k)!r} here" for k in differ
            )
            raise ConfigError(f"ckpt_path={path} was trained with another model config ({details})")
    return path, checkpoint


def run_summary(cfg: DictConfig, trainer: L.Trainer, task: L.LightningModule) -> str:
    """One line on what this run trains: data, cell and sizes, parameters, device, precision."""
    model = cfg.model
    direction = "bidirectional " if model.get("bidirectional") else ""
    sizes = [
        f"{key}={value}"
        for key, value in task.hparams.items()
        if key in DataSpec.__dataclass_fields__ and isinstance(value, int) and key != "pad_id"
    ]
    devices = trainer.num_devices * trainer.num_nodes
    device = str(trainer.strategy.root_device) + (f" x {devices}" if devices > 1 else "")
    parameters = parameter_count(task)
    return (
        f"data={choice('data', cfg)} ({', '.join(sizes)}) | {direction}{model.cell} "
        f"hidden_size={model.hidden_size} num_layers={model.num_layers} | "
        f"{parameters:,} parameters | {device} | precision {trainer.precision}"
    )


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The path of the best checkpoint the run saved, if any."""
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint) and callback.best_model_path:
            return callback.best_model_path
    return None


@rank_zero_only
def report_end(
    cfg: DictConfig, trainer: L.Trainer, metrics: dict[str, float | str], seconds: float
) -> None:
    """The end-of-run line, and `run.json` with the same facts (metrics.json holds numbers
    that are compared across runs; a path and a wall time are not)."""
    record = next((c for c in trainer.callbacks if isinstance(c, ValidationLog)), None)
    best_epoch = record.best_epoch if record else None
    best_path = best_checkpoint(trainer)
    reported = metrics.get("reported_split", "test")
    tests = {k: v for k, v in sorted(metrics.items()) if k.startswith(f"{reported}/")}
    monitor = cfg.task.monitor
    best = metrics.get(f"{monitor}_best", record.best if record else None)
    parts = [f"done in {duration(seconds)}"]
    if best is not None:
        parts.append(f"best {monitor} {best:.4g} at epoch {best_epoch} ({best_path})")
    if tests:
        no_test = "" if reported == "test" else "no test split, best checkpoint's "
        parts.append(no_test + " ".join(f"{k} {v:.4g}" for k, v in tests.items()))
    log.info(" | ".join(parts))
    summary = {
        "run_dir": str(Path(cfg.paths.output_dir).resolve()),
        "best_epoch": best_epoch,
        "best_checkpoint": best_path,
        "best": {monitor: best},
        "test": tests if reported == "test" else {},
        "reported_split": reported,
        "wall_time_s": round(seconds, 3),
    }
    atomic_write_text(Path(cfg.paths.output_dir) / "run.json", json.dumps(summary, indent=2) + "\n")


def score(
    trainer: L.Trainer,
    task: L.LightningModule,
    datamodule: L.LightningDataModule,
    ckpt_path: str | None,
) -> dict[str, float | str]:
    """Test metrics of `task` (of the weights at `ckpt_path`, if given). Data without a labelled
    test split (`data=text` on GLUE, say) is validated instead, and `reported_split` says so."""
    if datamodule.test_set is not None:
        trainer.test(task, datamodule=datamodule, ckpt_path=ckpt_path, verbose=interactive())
        return to_floats(trainer.callback_metrics)
    trainer.validate(task, datamodule=datamodule, ckpt_path=ckpt_path, verbose=interactive())
    return {**to_floats(trainer.callback_metrics), "reported_split": "val"}


def train(cfg: DictConfig) -> dict[str, float | str]:
    """Fit and/or test as the config says; return every logged metric as floats (and, for
    data without a test split, `reported_split`: "val")."""
    started = time.monotonic()
    tune_malloc()
    quiet_lightning()
    trust_targets(cfg.get("trusted_targets"))
    check_model_config(cfg.model)
    check_run_config(cfg)
    # bf16 only where this machine has the kernels; the saved config records what was used
    cfg.trainer.precision = resolve_precision(
        cfg.trainer.get("precision"), cfg.trainer.get("accelerator"), cfg.model.cell
    )
    cfg.seed = L.seed_everything(run_seed(cfg), workers=True)
    save_resolved_config(cfg)

    resume_from, checkpoint = resume_checkpoint(cfg)
    datamodule = build(cfg.data)
    data_state = adopt_data_state(datamodule, checkpoint, resume_from) if checkpoint else None
    datamodule.prepare_data()
    datamodule.setup("fit")
    check_data_state(datamodule, data_state, resume_from)
    task = build_task(cfg, datamodule.spec)
    save_data_state(cfg, datamodule)
    callbacks = instantiate_group(cfg.get("callbacks"))
    trial = cfg.get("optuna_trial") or {}
    if trial.get("storage"):  # a trial of rnnlab's Optuna sweeper
        # every trial reports its learning curve (the dashboard plots it); pruner=null never stops
        pruner = build(cfg.pruner) if cfg.get("pruner") else optuna.pruners.NopPruner()
        callbacks.append(
            OptunaPruning(
                trial.storage, trial.study, trial.trial_id, monitor=cfg.task.monitor, pruner=pruner
            )
        )
    loggers: list[Logger] = instantiate_group(cfg.get("logger"))
    if not loggers:  # Lightning refuses an LR monitor without a logger; logger=none means none
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks, show_bar = progress_callbacks(
        callbacks,
        cfg.trainer.get("enable_progress_bar", True),
        cfg.task.monitor,
        cfg.task.monitor_mode,
    )
    trainer: L.Trainer = build(
        cfg.trainer,
        callbacks=callbacks,
        logger=loggers or False,
        enable_progress_bar=show_bar,
        # plain containers: Lightning takes trainer.max_time={minutes: 5} only as a dict
        _convert_="partial",
    )
    if trainer.is_global_zero:
        log.info("run directory %s", Path(cfg.paths.output_dir).resolve())
        log.info(run_summary(cfg, trainer, task))

    # the model's size with its results: published tables compare models of a stated size
    metrics: dict[str, float | str] = {"parameters": float(parameter_count(task))}
    status = "failed"
    try:
        if cfg.get("train", True):
            trainer.fit(task, datamodule=datamodule, ckpt_path=resume_from)
            log.info(
                "rank %d of %d: %d optimizer steps",
                trainer.global_rank,
                trainer.world_size,
                trainer.global_step,
            )
            metrics.update(to_floats(trainer.callback_metrics))
            # for provenance: epochs begun and ended (a clock or max_steps may end one early),
            # and the optimizer steps, which say how far a run got in its budget
            metrics["epochs"] = float(trainer.current_epoch)
            metrics["steps"] = float(trainer.global_step)
        if cfg.get("test", True):
            best = best_checkpoint(trainer)
            if cfg.get("train", True) and best is None:
                log.warning("no best checkpoint was saved; testing the final weights")
            test_ckpt = best if cfg.get("train", True) else cfg.get("ckpt_path")
            # the table of test metrics in a terminal; the end-of-run line has them everywhere
            metrics.update(score(trainer, task, datamodule, test_ckpt))
        record = next(c for c in trainer.callbacks if isinstance(c, ValidationLog))
        if record.best_epoch is not None:
            metrics["best_epoch"] = float(record.best_epoch)
        log_hparams(loggers, curated_hparams(cfg, task), metrics)
        save_metrics(cfg, metrics, "metrics.json")
        report_end(cfg, trainer, metrics, time.monotonic() - started)
        status = "success"
        return metrics
    finally:
        for logger in loggers:
            logger.finalize(status)


def release_process_group() -> None:
    """At exit from a run over several processes: tear gloo down before the interpreter ends,
    or its threads may abort the finished process ("terminate called without an active
    exception", seen after a two-process eval that had printed its metrics). Lightning does
    this at exit for NCCL only. At exit, not after each run: a failed rank's traceback comes
    first, and a caller's own group or a later run in the process keeps its group."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


atexit.register(release_process_group)


def log_hparams(loggers: list[Logger], hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """Write the curated hparams; HPARAMS compares runs by the `val/*_best` and `test/*` scalars
    they already logged (no copies of them: SCALARS would show each final metric twice)."""
    columns = [
        key
        for key, value in metrics.items()
        if (key.startswith("test/") or (key.startswith("val/") and key.endswith("_best")))
        and math.isfinite(value)
    ]
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, columns)
        else:
            logger.log_hyperparams(hparams)


def objective(cfg: DictConfig, metrics: dict[str, float]) -> float:
    """The configured `optimized_metric`; raises rather than hand NaN to a sweeper."""
    name = cfg.get("optimized_metric")
    if name not in metrics:
        raise KeyError(f"optimized_metric={name!r} was not logged; logged: {sorted(metrics)}")
    value = metrics[name]
    if not math.isfinite(value):
        raise ValueError(f"optimized_metric {name!r} is not finite ({value})")
    return value


def run(cfg: DictConfig) -> float | None:
    """Entry point behind `train.py`: train, then return the sweeper's objective."""
    check_run_dir(cfg)
    metrics = train(cfg)  # the end-of-run line has logged the test metrics
    return objective(cfg, metrics) if cfg.get("optimized_metric") else None


def evaluate(cfg: DictConfig) -> dict[str, float | str]:
    """Test the checkpoint at `cfg.ckpt_path` on the data config's test split (validate it when
    the data has no labelled test split)."""
    if not cfg.get("ckpt_path"):
        raise ConfigError("ckpt_path is required: python eval.py ckpt_path=/path/to/run/last.ckpt")
    tune_malloc()
    quiet_lightning()
    trust_targets(cfg.get("trusted_targets"))
    ckpt_path = Path(cfg.ckpt_path)
    checkpoint = read_checkpoint(ckpt_path)
    task_class = get_class(cfg.task._target_)
    require_task(checkpoint, task_class, ckpt_path)
    datamodule = build(cfg.data)
    data_state = adopt_data_state(datamodule, checkpoint, ckpt_path)
    datamodule.prepare_data()
    datamodule.setup("test")
    check_data_state(datamodule, data_state, ckpt_path)
    task = task_class.load_from_checkpoint(ckpt_path, map_location="cpu")
    check_spec_matches(task, datamodule.spec, ckpt_path)
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = build(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[],
        enable_progress_bar=bool(cfg.trainer.get("enable_progress_bar", True)) and interactive(),
        _convert_="partial",
    )
    try:
        metrics = score(trainer, task, datamodule, None)
        if trainer.is_global_zero:
            log.info(
                "%s: %s",
                ckpt_path,
                " ".join(
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                    for k, v in sorted(metrics.items())
                ),
            )
        Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
        # which checkpoint these numbers belong to travels with them
        save_metrics(cfg, {**metrics, "ckpt_path": str(ckpt_path.resolve())}, "eval_metrics.json")
        return metrics
    finally:
        for logger in loggers:
            logger.finalize("success")


def check_spec_matches(task: L.LightningModule, spec: DataSpec, ckpt_path: Path) -> None:
    """A checkpoint must be evaluated on data of the sizes it was trained on."""
    for key, value in spec.task_kwargs().items():
        stored = task.hparams.get(key)
        if stored is not None and stored != value:
            raise ConfigError(
                f"checkpoint {ckpt_path.name} was trained with {key}={stored!r}, but the data "
                f"config gives {key}={value!r}: pass the data=... options used for training"
            )
