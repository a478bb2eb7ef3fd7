"""Run directory names that tell runs apart and paste back into a command line.

A run is named by its time, data and model, then by the command-line overrides that differ from
the defaults (`..._recall_lstm_hidden_size-64_lr-0.01`); a sweep trial by its parameters. Names
use only characters Hydra's override grammar takes unquoted (no `=`, `,`, brackets or quotes),
so `ckpt_path=<a run's checkpoint>` works as pasted. The resolvers are registered by
`rnnlab.cli`, which every entry point imports before Hydra composes the config.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

# longest overrides part of a run's name, and of a trial's (which has only its parameters, all
# wanted); a longer one is cut and ends in a hash of the whole
MAX_LENGTH = 60
MAX_TRIAL_LENGTH = 120
# what Hydra's override grammar does not take unquoted (and '/', which would nest folders)
UNSAFE = re.compile(r"[^A-Za-z0-9_.\-+@%]+")
# overrides that say where a run writes or how it is launched, not what it trains
NOT_NAMED = ("hydra.", "paths.", "optuna_trial.", "overwrite", "tags")


def short_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def safe_name(pairs: Iterable[tuple[str, Any]], max_length: int = MAX_LENGTH) -> str:
    """`hidden_size-64_lr-0.01` from (key, value) pairs: each key's last part, unsafe characters
    replaced by '.', cut to `max_length` with a hash that keeps cut names distinct."""
    items = []
    for key, value in pairs:
        leaf = re.split(r"[./]", key.lstrip("+"))[-1]
        items.append(UNSAFE.sub(".", f"{leaf}-{short_value(value)}").strip("."))
    name = "_".join(items)
    if len(name) > max_length:
        digest = hashlib.sha1(name.encode()).hexdigest()[:6]
        name = f"{name[: max_length - 7]}-{digest}"
    return name


def override_pairs(overrides: Iterable[str], excluded: Iterable[str]) -> list[tuple[str, str]]:
    """(key, value) of the command-line overrides that set a value, sorted, less `excluded`
    keys (and groups) and those in NOT_NAMED; deletions (`~key`) name nothing."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    skip = set(excluded)
    pairs = []
    for override in OverridesParser.create().parse_overrides(list(overrides)):
        key = override.key_or_group
        if override.is_delete() or key in skip or key.startswith(NOT_NAMED):
            continue
        value = override.value()
        pairs.append((key, value if isinstance(value, (int, float, bool)) else str(value)))
    return sorted(pairs)


def overrides_name(*excluded: str, _root_: DictConfig) -> str:
    """Resolver `${rnnlab_overrides:data,model}`: '_' + this job's differing overrides, or ''.

    Also leaves out the keys of `hydra.job.config.override_dirname.exclude_keys`. A trial of
    rnnlab's Optuna sweeper is named by its parameters alone (`optuna_trial.name`).
    """
    trial = OmegaConf.select(_root_, "optuna_trial.name", default=None)
    if trial:
        return f"_{trial}"
    # a job's config has no hydra node once Hydra hands it to the task (logger run names)
    hydra = _root_.hydra if "hydra" in _root_ else HydraConfig.get()
    skip = [*excluded, *hydra.job.config.override_dirname.exclude_keys]
    name = safe_name(override_pairs(OmegaConf.to_container(hydra.overrides.task), skip))
    return f"_{name}" if name else ""


def checkpoint_name(ckpt_path: str | None) -> str:
    """Resolver `${rnnlab_checkpoint:${ckpt_path}}`: the model a checkpoint holds (`bigru`,
    `lstm`), for eval's run directory; `checkpoint` when it cannot be read (eval then says why)."""
    try:
        import torch

        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
        model = checkpoint["hyper_parameters"]["model"]
        return UNSAFE.sub(".", f"{'bi' if model.get('bidirectional') else ''}{model['cell']}")
    except Exception:  # any unreadable file: evaluate() reports it with the key to fix
        return "checkpoint"


def register_resolvers() -> None:
    OmegaConf.register_resolver("rnnlab_overrides", overrides_name, replace=True)
    OmegaConf.register_resolver("rnnlab_checkpoint", checkpoint_name, replace=True)
