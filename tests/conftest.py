"""Shared fixtures: configs composed exactly as `train.py` composes them, writing to tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = str(ROOT / "conf")
SHARED_DATA = ROOT.parent / "shared" / "data"

# A small delayed-recall problem: seconds per run on 2 cores.
TINY_RECALL = [
    "data.num_train=256",
    "data.num_val=64",
    "data.num_test=64",
    "data.batch_size=32",
    "model.hidden_size=16",
    "trainer.accelerator=cpu",
]


def compose_config(
    overrides: list[str], output_dir: Path, config_name: str = "train"
) -> DictConfig:
    """Compose like @hydra.main does, with the hydra node set, so ${hydra:...} resolves."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONFIG_DIR):
        cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        cfg.paths.log_dir = str(output_dir)
        del cfg.hydra
    return cfg


@pytest.fixture
def make_cfg(tmp_path):
    """make_cfg(overrides, config_name='train') -> a composed config writing into tmp_path."""

    def make(overrides: list[str] | None = None, config_name: str = "train") -> DictConfig:
        return compose_config(list(overrides or []), tmp_path, config_name)

    yield make
    GlobalHydra.instance().clear()


def shared_data(name: str) -> Path:
    """The full data set folder, or skip the test with the reason."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"full data not found at ../shared/data/{name}")
    return path
