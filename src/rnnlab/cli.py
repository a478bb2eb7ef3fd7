"""The task functions behind `train.py` / `eval.py`, and the console scripts `rnnlab-train` and
`rnnlab-eval` (the same, installed).

Lightning and torch are imported when a run starts, not when this module is: `--help`,
`--cfg job` and shell completion then answer without loading them (seconds on a small CPU).

The configs live in the repository's `conf/`. The console scripts find them through
`RNNLAB_CONFIG_DIR`, else `./conf` in the working directory, else the checkout this package was
installed from (editable).
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnlab.errors import report_config_errors
from rnnlab.naming import register_resolvers

register_resolvers()  # before Hydra composes: run directory names use them

# Hydra instantiates its own callbacks (conf/hydra/default.yaml) without an execution whitelist
# and warns about it on every run; rnnlab's is the only one configured
warnings.filterwarnings(
    "ignore",
    message=r".*_target_='rnnlab\.sweeper\.DieWithMultirun' with no",
    category=UserWarning,
)


@report_config_errors
def train_task(cfg: DictConfig) -> float | None:
    """Train as `cfg` says; the sweeper's objective."""
    from rnnlab.train import run

    return run(cfg)


@report_config_errors
def eval_task(cfg: DictConfig) -> None:
    """Test the checkpoint `cfg.ckpt_path`."""
    from rnnlab.train import evaluate

    evaluate(cfg)


def config_dir() -> str:
    candidates = [
        os.environ.get("RNNLAB_CONFIG_DIR"),
        Path.cwd() / "conf",
        Path(__file__).resolve().parents[2] / "conf",
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / "train.yaml").is_file():
            return str(Path(candidate).resolve())
    sys.exit("rnnlab: no conf/ found; run from the repository root or set RNNLAB_CONFIG_DIR")


def train_main() -> None:
    hydra.main(config_path=config_dir(), config_name="train")(train_task)()


def eval_main() -> None:
    hydra.main(config_path=config_dir(), config_name="eval")(eval_task)()
