"""Training and evaluation as plain functions over a composed Hydra config.

`train(cfg)` returns a dict of metrics, so tests call it directly and a sweeper takes its
objective from `run(cfg)`. Flow: config -> datamodule -> DataSpec -> task -> Trainer.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from rnnlab.allocator import tune_malloc
from rnnlab.callbacks import OptunaPruning
from rnnlab.data.spec import DataSpec
from rnnlab.models import RecurrentBackbone
from rnnlab.utils import build, read_checkpoint

log = logging.getLogger(__name__)


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
        raise ValueError(f"bad key in the model config: {error}") from error


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
        "parameters": sum(p.numel() for p in task.parameters()),
    }


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
def save_metrics(cfg: DictConfig, metrics: dict[str, float], name: str) -> None:
    path = Path(cfg.paths.output_dir) / name
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


@rank_zero_only
def save_data_state(cfg: DictConfig, datamodule: L.LightningDataModule) -> None:
    """The datamodule's state (vocabulary, tokeniser) beside the run, as in its checkpoints."""
    state = datamodule.state_dict()
    if state:
        path = Path(cfg.paths.output_dir) / "data_state.json"
        path.write_text(json.dumps(state, ensure_ascii=False))


@rank_zero_only
def save_resolved_config(cfg: DictConfig) -> None:
    output_dir = Path(cfg.paths.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, output_dir / "config_resolved.yaml", resolve=True)


def resume_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint `ckpt_path` names, checked before any data loads.

    `ckpt_path=last` is the run directory's `checkpoints/last.ckpt` (none yet: start afresh, so
    a requeued job can always pass it). A checkpoint trained with another `model` config is an
    error naming the keys that differ.
    """
    path = cfg.get("ckpt_path")
    if not path:
        return None
    if path == "last":
        last = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            log.info("ckpt_path=last: no %s yet, starting from scratch", last)
            return None
        path = str(last)
    stored = read_checkpoint(path).get("hyper_parameters", {}).get("model")
    if stored is not None:
        wanted = plain(cfg.model)
        differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
        if differ:
            details = ", ".join(
                f"model.{k}: {stored.get(k)!r} there, {wanted.get(k)!r} here" for k in differ
            )
            raise ValueError(f"ckpt_path={path} was trained with another model config ({details})")
    return path


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit and/or test as the config says; return every logged metric as floats."""
    tune_malloc()
    check_model_config(cfg.model)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    save_resolved_config(cfg)

    resume_from = resume_checkpoint(cfg)
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
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
    trainer: L.Trainer = build(cfg.trainer, callbacks=callbacks, logger=loggers or False)

    metrics: dict[str, float] = {}
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
        if cfg.get("test", True):
            checkpoint = next(
                (
                    c
                    for c in trainer.checkpoint_callbacks
                    if isinstance(c, ModelCheckpoint) and c.best_model_path
                ),
                None,
            )
            best = checkpoint.best_model_path if checkpoint else None
            if cfg.get("train", True) and best is None:
                log.warning("no best checkpoint was saved; testing the final weights")
            test_ckpt = best if cfg.get("train", True) else cfg.get("ckpt_path")
            trainer.test(task, datamodule=datamodule, ckpt_path=test_ckpt)
            metrics.update(to_floats(trainer.callback_metrics))
        log_hparams(loggers, curated_hparams(cfg, task), metrics)
        save_metrics(cfg, metrics, "metrics.json")
        status = "success"
        return metrics
    finally:
        for logger in loggers:
            logger.finalize(status)


def log_hparams(loggers: list[Logger], hparams: dict[str, Any], metrics: dict[str, float]) -> None:
    """Write the curated hparams with the run's real results as `hp/*` metrics."""
    hp_metrics = {
        f"hp/{key.replace('/', '_')}": value
        for key, value in metrics.items()
        if key.startswith(("val/", "test/")) and math.isfinite(value)
    }
    best = next((k for k in metrics if k.startswith("val/") and k.endswith("_best")), None)
    if best is not None and math.isfinite(metrics[best]):
        hp_metrics["hp/val_best"] = metrics[best]  # the monitored metric's best, any task
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.log_hyperparams(hparams, hp_metrics)
        else:
            logger.log_hyperparams(hparams)
            logger.log_metrics(hp_metrics)


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
    metrics = train(cfg)
    for key in sorted(metrics):
        if key.startswith("test/"):
            log.info("%s = %.4f", key, metrics[key])
    return objective(cfg, metrics) if cfg.get("optimized_metric") else None


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test the checkpoint at `cfg.ckpt_path` on the data config's test split."""
    if not cfg.get("ckpt_path"):
        raise ValueError("ckpt_path is required: python eval.py ckpt_path=/path/to/run/last.ckpt")
    tune_malloc()
    ckpt_path = Path(cfg.ckpt_path)
    read_checkpoint(ckpt_path)
    datamodule = build(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("test")
    task_class = get_class(cfg.task._target_)
    task = task_class.load_from_checkpoint(ckpt_path, map_location="cpu")
    check_spec_matches(task, datamodule.spec, ckpt_path)
    loggers = instantiate_group(cfg.get("logger"))
    trainer: L.Trainer = build(cfg.trainer, logger=loggers or False, callbacks=[])
    try:
        trainer.test(task, datamodule=datamodule)
        metrics = to_floats(trainer.callback_metrics)
        Path(cfg.paths.output_dir).mkdir(parents=True, exist_ok=True)
        save_metrics(cfg, metrics, "eval_metrics.json")
        return metrics
    finally:
        for logger in loggers:
            logger.finalize("success")


def check_spec_matches(task: L.LightningModule, spec: DataSpec, ckpt_path: Path) -> None:
    """A checkpoint must be evaluated on data of the sizes it was trained on."""
    for key, value in spec.task_kwargs().items():
        stored = task.hparams.get(key)
        if stored is not None and stored != value:
            raise ValueError(
                f"checkpoint {ckpt_path.name} was trained with {key}={stored!r}, but the data "
                f"config gives {key}={value!r}: pass the data=... options used for training"
            )
