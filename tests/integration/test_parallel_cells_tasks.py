"""Every task kind runs with the parallel-scan cells: a fast_dev_run each with model=mingru."""

from __future__ import annotations

import math

import pytest

from rnnlab.train import train
from tests.integration.test_forecasting import write_csv
from tests.integration.test_language_model import TEXT
from tests.integration.test_music import write_mat
from tests.integration.test_speech import CONNECTED, write_fsdd
from tests.integration.test_text_data import write_imdb, write_names
from tests.integration.test_translation import write_multi30k


def data_folder(tmp_path, data):
    """The tiny copy each data config reads, and its overrides."""
    root = tmp_path / "data"
    if data == "imdb":
        write_imdb(root / "imdb")
    elif data in ("names", "names_gen"):
        write_names(root / "names")
    elif data == "shakespeare":
        (root / "tinyshakespeare").mkdir(parents=True)
        (root / "tinyshakespeare" / "input.txt").write_text(TEXT, encoding="utf-8")
        return [f"paths.data_dir={root}", "data.batch_size=4", "data.bptt=16"]
    elif data == "ett":
        write_csv(root / "ett")
        return [
            f"data.data_dir={root}",
            "data.split_months=[6,2,2]",
            "data.lookback=24",
            "data.horizon=12",
            "task.segment_len=6",
        ]
    elif data == "multi30k":
        write_multi30k(root / "multi30k")
        return [f"paths.data_dir={root}", "data.min_freq=1", "data.batch_size=4"]
    elif data == "sine":
        return ["data.lookback=24", "data.horizon=12", "task.segment_len=6"]
    elif data == "recall":
        return ["data.num_train=64", "data.num_val=32", "data.num_test=32"]
    elif data in ("adding", "copy"):
        length = "data.seq_len=16" if data == "adding" else "data.blanks=16"
        return [length, "data.num_train=64", "data.num_val=32", "data.num_test=32"]
    elif data == "text":  # IMDb's parquet files read as local files of the parquet builder
        files = {s: str(write_imdb(root / "text") / f"{s}.parquet") for s in ("train", "test")}
        listed = ",".join(f"{split}:'{path}'" for split, path in files.items())
        return ["data.path=parquet", f"data.data_files={{{listed}}}", "data.batch_size=4"]
    elif data == "music":
        write_mat(root / "music")
        return [f"data.data_dir={root}", "data.batch_size=4"]
    elif data == "series":  # the ETT fixture read as any CSV, split by ratios
        write_csv(root / "series")
        path = root / "series" / "ETTh1.csv"
        return [f"data.path={path}", "data.lookback=24", "data.horizon=12", "task.segment_len=6"]
    elif data == "corpus":
        (root / "corpus").mkdir(parents=True)
        (root / "corpus" / "input.txt").write_text(TEXT, encoding="utf-8")
        return [f"data.path={root / 'corpus' / 'input.txt'}", "data.batch_size=4", "data.bptt=16"]
    elif data in ("fsdd", "fsdd_connected"):
        write_fsdd(root)
        sizes = [f"data.{k}={v}" for k, v in CONNECTED.items()] if data == "fsdd_connected" else []
        return [f"data.data_dir={root}", "data.batch_size=8", *sizes]
    return [f"paths.data_dir={root}", "data.batch_size=8"]


@pytest.mark.parametrize(
    "data",
    [
        "recall",
        "imdb",
        "names",
        "names_gen",
        "shakespeare",
        "ett",
        "sine",
        "multi30k",
        "adding",
        "copy",
        "music",
        "fsdd",
        "fsdd_connected",
    ],
)
@pytest.mark.parametrize("model", ["mingru", "minlstm"])
def test_fast_dev_run_with_a_parallel_scan_cell(make_cfg, tmp_path, data, model):
    overrides = [f"data={data}", f"model={model}", "model.hidden_size=8", "debug=fdr"]
    overrides += [f"paths.cache_dir={tmp_path / 'cache'}", *data_folder(tmp_path, data)]
    metrics = train(make_cfg(overrides))
    tested = {k: v for k, v in metrics.items() if k.startswith("test/")}
    assert tested and all(math.isfinite(v) for v in tested.values()), metrics


@pytest.mark.parametrize("model", ["mingru", "lstm"])
def test_fast_dev_run_with_a_residual_stack(make_cfg, tmp_path, model):
    overrides = [
        "data=shakespeare",
        f"model={model}",
        "model.hidden_size=8",
        "model.num_layers=3",
        "model.residual=true",
        "debug=fdr",
        f"paths.cache_dir={tmp_path / 'cache'}",
        *data_folder(tmp_path, "shakespeare"),
    ]
    metrics = train(make_cfg(overrides))
    assert math.isfinite(metrics["test/loss"]), metrics
