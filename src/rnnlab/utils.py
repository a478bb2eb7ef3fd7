"""Instantiating config nodes with Hydra's execution whitelist, and reading checkpoints safely.

Hydra 1.4 warns (and 1.5 will refuse) when a config's `_target_` is instantiated without a
whitelist, since a config could name any callable. These are the packages rnnlab configs name;
the run config's `trusted_targets` adds the user's own (their callbacks, loggers, optimizers,
data modules); a config that targets anything else fails naming the target and that key.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from rnnlab.errors import ConfigError, MissingFileError

TRUSTED_TARGETS = [
    "rnnlab.*",
    "lightning.pytorch.*",
    "torch.optim.*",
    "optuna.*",
]


# the run config's trusted_targets, for the rest of the process (set by trust_targets)
USER_TARGETS: list[str] = []


def trust_targets(patterns: Any) -> None:
    """Trust the run config's `trusted_targets` too: Hydra's patterns, `package.*` (anything
    under it) or one exact `package.module.Name`."""
    patterns = [] if patterns is None else patterns
    if isinstance(patterns, str) or not all(
        isinstance(pattern, str) and pattern.strip(".*") for pattern in patterns
    ):
        raise ConfigError(
            f"trusted_targets must be a list of _target_ patterns such as [mypackage.*], "
            f"got {patterns!r}"
        )
    USER_TARGETS[:] = list(patterns)


def build(config: Any, *args: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate` limited to TRUSTED_TARGETS and the run's trusted_targets."""
    try:
        return instantiate(
            config, *args, _execution_whitelist_=[*TRUSTED_TARGETS, *USER_TARGETS], **kwargs
        )
    except InstantiationException as error:
        refused = re.search(r"Target '([^']+)' is not in the Hydra execution whitelist", str(error))
        if refused is None:
            raise
        target = refused.group(1)
        raise ConfigError(
            f"_target_={target} is not a package rnnlab trusts to run; if it is your own code, "
            f"add trusted_targets=[{target.rsplit('.', 1)[0]}.*] (or a list naming it)"
        ) from error


def read_checkpoint(path: str | Path, key: str = "ckpt_path") -> dict[str, Any]:
    """A checkpoint file loaded with `weights_only=True`; a missing, truncated, foreign or
    untrusted file is an error that names the config key to fix."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{key}={str(path)!r} is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # torch's message goes on to suggest weights_only=False: never pass that advice on
        if "GLOBAL" in str(error):
            raise ConfigError(f"{key}={str(path)!r} is not a trusted checkpoint") from error
        raise ConfigError(
            f"{key}={str(path)!r} is not a readable checkpoint (not a file torch.save wrote); "
            "pass another checkpoint of the run (last.ckpt or epoch_*.ckpt)"
        ) from error
    except Exception as error:  # zip and I/O errors have no common base
        raise ConfigError(
            f"{key}={str(path)!r} is not a readable checkpoint ({type(error).__name__}: "
            f"{str(error)[:200]}); pass another checkpoint of the run (last.ckpt or epoch_*.ckpt)"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ConfigError(f"{key}={str(path)!r} is not a Lightning checkpoint (no state_dict)")
    return checkpoint
