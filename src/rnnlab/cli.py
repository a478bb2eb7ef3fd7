"""Console scripts `rnnlab-train` and `rnnlab-eval`: the root train.py / eval.py, installed.

The configs live in the repository's `conf/`. They are found through `RNNLAB_CONFIG_DIR`, else
`./conf` in the working directory, else the checkout this package was installed from (editable).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from rnnlab.errors import report_config_errors
from rnnlab.train import evaluate, run


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
    hydra.main(config_path=config_dir(), config_name="train")(_train)()


def eval_main() -> None:
    hydra.main(config_path=config_dir(), config_name="eval")(_eval)()


@report_config_errors
def _train(cfg: DictConfig) -> float | None:
    return run(cfg)


@report_config_errors
def _eval(cfg: DictConfig) -> None:
    evaluate(cfg)
