"""Instantiating config nodes with Hydra's execution whitelist, and reading checkpoints safely.

Hydra 1.4 warns (and 1.5 will refuse) when a config's `_target_` is instantiated without a
whitelist, since a config could name any callable. These are the packages rnnlab configs name;
a config that targets anything else fails with Hydra's error naming the target.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from rnnlab.errors import ConfigError, MissingFileError

TRUSTED_TARGETS = [
    "rnnlab.*",
    "lightning.pytorch.*",
    "torch.optim.*",
    "optuna.*",
]


def build(config: Any, *args: Any, **kwargs: Any) -> Any:
    """`hydra.utils.instantiate` limited to TRUSTED_TARGETS."""
    return instantiate(config, *args, _execution_whitelist_=TRUSTED_TARGETS, **kwargs)


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
