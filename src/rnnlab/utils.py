"""Instantiating config nodes with Hydra's execution whitelist.

Hydra 1.4 warns (and 1.5 will refuse) when a config's `_target_` is instantiated without a
whitelist, since a config could name any callable. These are the packages rnnlab configs name;
a config that targets anything else fails with Hydra's error naming the target.
"""

from __future__ import annotations

from typing import Any

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
