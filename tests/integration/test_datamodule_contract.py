"""Every data config builds a datamodule that follows `rnnlab.data.base.DataModule`'s contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from rnnlab.data.base import DataModule, ResumableDataLoader
from rnnlab.utils import build
from tests.integration.test_parallel_cells_tasks import data_folder

DATA = sorted(path.stem for path in (Path(__file__).parents[2] / "conf" / "data").glob("*.yaml"))


def data_overrides(tmp_path: Path, data: str) -> list[str]:
    """The tiny copy's overrides that configure the datamodule (not the task)."""
    return [o for o in data_folder(tmp_path, data) if not o.startswith("task.")]


@pytest.mark.parametrize("data", DATA)
def test_every_datamodule_follows_the_one_contract(make_cfg, tmp_path, data):
    overrides = data_overrides(tmp_path, data)
    cfg = make_cfg([f"data={data}", f"paths.cache_dir={tmp_path / 'c'}", "seed=3", *overrides])
    dm = build(cfg.data)
    assert isinstance(dm, DataModule)
    with pytest.raises(RuntimeError, match=r"setup\(\) must run before .spec"):
        _ = dm.spec
    with pytest.raises(RuntimeError, match=r"setup\(\) must run before its dataloaders"):
        dm.train_dataloader()
    dm.load_state_dict({"seed": 7})  # a checkpoint's seed, before setup: adopted
    dm.prepare_data()
    dm.setup("fit")
    dm.load_state_dict({"seed": 8})  # Lightning's second call when resuming: the data stays
    state = dm.state_dict()
    assert state["seed"] == 7 and json.loads(json.dumps(state)) == state
    assert dm.spec is dm.spec  # built once
    assert type(dm.train_dataloader()) is ResumableDataLoader
    for loaders in (dm.val_dataloader(), dm.test_dataloader()):
        for loader in loaders if isinstance(loaders, list) else [loaders]:
            assert type(loader) is DataLoader
            assert isinstance(next(iter(loader)), dict)
