"""Instantiating config nodes with Hydra's execution whitelist.

Hydra 1.4 warns (and 1.5 will refuse) when a config's `_target_` is instantiated without a
whitelist, since a config could name any callable. These are the packages rnnlab configs name;
a config that targets anything else fails with Hydra's error naming the target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

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
    """A checkpoint file loaded with `weights_only=True`; a missing, truncated or foreign file
    is an error that names the config key to fix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={str(path)!r} is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and weights-only errors have no common base
        raise ValueError(
            f"{key}={str(path)!r} is not a readable checkpoint ({type(error).__name__}: "
            f"{str(error)[:200]}); pass another checkpoint of the run (last.ckpt or epoch_*.ckpt)"
        ) from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(f"{key}={str(path)!r} is not a Lightning checkpoint (no state_dict)")
    return checkpoint
