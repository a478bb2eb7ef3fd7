"""data=series: any CSV of time series by config alone; ETT as its preset; bad inputs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.errors import ConfigError
from rnnlab.train import train
from rnnlab.utils import build
from tests.integration.test_forecasting import write_csv

STATION = ["pressure", "humidity", "wind speed", "OT"]


def write_station(folder, rows=300, seed=0):
    """A Weather-style file: another name, another date column and other value columns."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(STATION))).cumsum(0), columns=STATION)
    frame.insert(0, "timestamp", pd.date_range("2020-01-01", periods=rows, freq="10min"))
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "station_weather.csv", index=False)
    return folder / "station_weather.csv", frame


def series_overrides(path, *extra):
    return [
        "data=series",
        f"data.path={path}",
        "data.date_column=timestamp",
        "data.lookback=24",
        "data.horizon=12",
        "task.segment_len=6",
        *extra,
    ]


def datamodule(make_cfg, overrides):
    """The data config of `overrides`, instantiated and set up."""
    dm = build(make_cfg(overrides).data)
    dm.setup()
    return dm


def dataset_custom_windows(rows, ratios, seq_len, pred_len):
    """Autoformer's `Dataset_Custom` borders and window counts, written out as it computes them."""
    num_train = int(rows * ratios[0])
    num_test = int(rows * ratios[2])
    num_vali = rows - num_train - num_test
    border1s = [0, num_train - seq_len, rows - num_test - seq_len]
    border2s = [num_train, num_train + num_vali, rows]
    counts = [b2 - b1 - seq_len - pred_len + 1 for b1, b2 in zip(border1s, border2s, strict=True)]
    return border1s, border2s, counts


def test_a_csv_of_another_name_trains_by_config_alone(make_cfg, tmp_path):
    path, _ = write_station(tmp_path / "own")
    overrides = series_overrides(path, "model=gru", "model.hidden_size=8", "debug=fdr")
    metrics = train(make_cfg([*overrides, "logger=none"]))
    assert math.isfinite(metrics["test/mse"]) and math.isfinite(metrics["test/mae"])
    assert metrics["test/windows"] == 49  # the last 60 rows, horizon 12: every window


@pytest.mark.parametrize(("rows", "ends"), [(300, [210, 240, 300]), (301, [210, 241, 301])])
def test_ratio_borders_follow_dataset_custom_and_look_back_into_the_previous_split(
    make_cfg, tmp_path, rows, ends
):
    path, frame = write_station(tmp_path / "own", rows=rows)
    dm = datamodule(make_cfg, series_overrides(path, "data.split_ratios=[0.7,0.1,0.2]"))
    border1s, border2s, counts = dataset_custom_windows(rows, (0.7, 0.1, 0.2), 24, 12)
    # 301 rows: train int(210.7) = 210, test int(60.2) = 60, the rest (31) validates
    assert border2s == ends
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == counts
    series = dm.datasets["val"].series
    first_val = dm.datasets["val"][0]
    assert torch.equal(first_val["inputs"], series[border1s[1] : border1s[1] + 24])
    assert torch.equal(first_val["targets"], series[ends[0] : ends[0] + 12])
    first_test = dm.datasets["test"][0]
    assert torch.equal(first_test["inputs"], series[border1s[2] : border1s[2] + 24])
    assert torch.equal(first_test["targets"], series[ends[1] : ends[1] + 12])
    last_test = dm.datasets["test"][len(dm.datasets["test"]) - 1]
    assert torch.equal(last_test["targets"], series[rows - 12 : rows])
    # z-scored with the training rows only
    values = frame[STATION].to_numpy()
    np.testing.assert_allclose(dm.mean, values[:210].mean(0))
    np.testing.assert_allclose(dm.std, values[:210].std(0))
    assert dm.spec.num_features == 4 and dm.state_dict()["columns"] == STATION


def test_feature_columns_all_a_list_or_the_target_only(make_cfg, tmp_path):
    path, _ = write_station(tmp_path / "own")
    assert datamodule(make_cfg, series_overrides(path)).columns == STATION
    chosen = datamodule(make_cfg, series_overrides(path, "data.columns=[humidity,OT]"))
    assert chosen.columns == ["humidity", "OT"] and chosen.spec.num_features == 2
    only = datamodule(make_cfg, series_overrides(path, "data.features=S", "data.target=pressure"))
    assert only.columns == ["pressure"] and only.datasets["train"][0]["inputs"].shape == (24, 1)


def test_the_ett_preset_is_data_series_with_months(make_cfg, tmp_path):
    write_csv(tmp_path / "data" / "ett")
    months = ["data.lookback=24", "data.horizon=12", "data.split_months=[6,2,2]"]
    ett = datamodule(make_cfg, ["data=ett", f"paths.data_dir={tmp_path / 'data'}", *months])
    generic = datamodule(
        make_cfg,
        [
            "data=series",
            f"data.path={tmp_path / 'data' / 'ett' / 'ETTh1.csv'}",
            "data.split_ratios=null",
            *months,
        ],
    )
    for split in ("train", "val", "test"):
        assert len(ett.datasets[split]) == len(generic.datasets[split])
    assert [len(ett.datasets[s]) for s in ("train", "val", "test")] == [145, 49, 49]
    assert torch.equal(ett.datasets["test"].series, generic.datasets["test"].series)
    assert ett.state_dict() == generic.state_dict()
    metrics = train(
        make_cfg(
            [
                "data=ett",
                f"paths.data_dir={tmp_path / 'data'}",
                *months,
                "model=gru",
                "model.hidden_size=8",
                "task.segment_len=6",
                "debug=fdr",
                "logger=none",
            ]
        )
    )
    assert metrics["test/windows"] == 49


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.split_ratios=[0.7,0.1,0.1]", r"data.split_ratios must be .* sum to 1"),
        ("data.split_ratios=[0.8,0.2]", r"data.split_ratios must be three"),
        ("data.split_months=[6,2,2]", r"exactly one of data.split_months .* data.split_ratios"),
        ("data.columns=[humidity,temperature]", r"no column 'temperature' \(columns: \["),
        ("data.path=nowhere.csv", r"data.path='nowhere.csv': no such file"),
        ("data.features=S", r"no column 'OT'|no column"),
    ],
    ids=["ratios-sum", "ratios-length", "both-splits", "missing-column", "missing-file", "target"],
)
def test_bad_series_configs_are_one_line_errors_naming_the_key(
    make_cfg, tmp_path, override, message
):
    path, frame = write_station(tmp_path / "own")
    frame.drop(columns=["OT"]).to_csv(path, index=False)
    with pytest.raises(ConfigError, match=message) as error:
        datamodule(make_cfg, [*series_overrides(path), override])
    assert "\n" not in str(error.value)
    if "column" in override or override == "data.features=S":
        assert "'timestamp', 'pressure', 'humidity', 'wind speed'" in str(error.value)


def test_a_date_column_that_does_not_parse_names_the_row_and_key(make_cfg, tmp_path):
    path, frame = write_station(tmp_path / "own")
    frame["timestamp"] = frame["timestamp"].astype(str)
    frame.loc[41, "timestamp"] = "yesterday"
    frame.to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"data row 42 has no parsable date.*data.date_column"):
        datamodule(make_cfg, series_overrides(path))


def test_a_column_of_words_is_to_be_left_out_with_data_columns(make_cfg, tmp_path):
    """A station-name column is no typo to fix row by row: the error says to list the value
    columns; a single bad cell in a numeric column still says to fix the value."""
    path, frame = write_station(tmp_path / "own")
    frame.insert(1, "station", "north")
    frame.to_csv(path, index=False)
    with pytest.raises(
        ConfigError, match=r"column 'station' holds 'north', not a number; leave the column out"
    ):
        datamodule(make_cfg, series_overrides(path))
    columns = "data.columns=[pressure,humidity,'wind speed',OT]"
    assert datamodule(make_cfg, series_overrides(path, columns)).spec.num_features == 4
    frame = frame.drop(columns="station").astype({"OT": object})
    frame.loc[7, "OT"] = "1.2.3"
    frame.to_csv(path, index=False)
    with pytest.raises(
        ConfigError, match=r"data row 8, column 'OT' holds '1.2.3', .*fix the value"
    ):
        datamodule(make_cfg, series_overrides(path))
