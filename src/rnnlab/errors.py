"""Errors about the user's input, and how the command-line entry points show them.

A `ConfigError` says which config key, file or checkpoint to fix. The entry points (`train.py`,
`eval.py`, `rnnlab-train`, `rnnlab-eval`) print its message as one line on stderr and exit 1;
`HYDRA_FULL_ERROR=1` shows the traceback, as Hydra does for its own errors. In a multirun the
error propagates, so the launcher or sweeper records the failing trial.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """Bad input the user can fix; the message names the config key, file or checkpoint."""


class MissingFileError(ConfigError, FileNotFoundError):
    """A file the config names does not exist."""


def full_traceback_wanted() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def single_run() -> bool:
    """True in a plain run (not a multirun, whose launcher records each job's failure)."""
    # imported here: models and data import this module, and need no Hydra to run
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN


def report_config_errors(task_function: Callable[..., T]) -> Callable[..., T]:
    """Wrap a Hydra task function: a ConfigError becomes one line on stderr and exit status 1."""

    @functools.wraps(task_function)
    def wrapper(*args, **kwargs) -> T:
        try:
            return task_function(*args, **kwargs)
        except ConfigError as error:
            if full_traceback_wanted() or not single_run():
                raise
            print(f"Error: {error}", file=sys.stderr)
            sys.exit(1)

    return wrapper
