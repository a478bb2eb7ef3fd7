"""Forecasting: ETT protocol (splits, windows, train-only statistics), bad CSVs, the model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from rnnlab.data.forecasting import ETTDataModule, SineDataModule, WindowDataset
from rnnlab.tasks import ForecastingTask
from rnnlab.train import train
from tests.conftest import shared_data

COLUMNS = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]


def write_csv(folder, rows=300, frequency="D", name="ETTh1.csv", seed=0):
    """A small ETT-shaped file; daily steps make a 30-row month, so 6/2/2 months = 300 rows."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(COLUMNS))).cumsum(0), columns=COLUMNS)
    frame.insert(0, "date", pd.date_range("2016-07-01", periods=rows, freq=frequency))
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / name, index=False)
    return frame


@pytest.fixture
def ett_dir(tmp_path):
    write_csv(tmp_path / "data" / "ett")
    return tmp_path / "data"


def ett(ett_dir, tmp_path, **kwargs):
    options = {"lookback": 24, "horizon": 12, "split_months": (6, 2, 2)} | kwargs
    return ETTDataModule(data_dir=str(ett_dir), cache_dir=str(tmp_path / "cache"), **options)


def test_windows_cover_each_split_and_look_back_into_the_previous_one(ett_dir, tmp_path):
    dm = ett(ett_dir, tmp_path)
    dm.setup()
    # borders at 180 / 240 / 300 rows; a window counts where its horizon starts
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [
        180 - 24 - 12 + 1,
        60 - 12 + 1,
        60 - 12 + 1,
    ]
    first_val = dm.datasets["val"][0]
    series = dm.datasets["val"].series
    assert torch.equal(first_val["targets"], series[180:192])  # targets start at the border
    assert torch.equal(first_val["inputs"], series[156:180])  # look-back reaches into train
    last_test = dm.datasets["test"][len(dm.datasets["test"]) - 1]
    assert torch.equal(last_test["targets"], series[288:300])  # the last row is used
    assert dm.spec.num_features == 7 and dm.spec.horizon == 12 and dm.spec.lookback == 24


def test_normalisation_uses_training_rows_only(ett_dir, tmp_path):
    raw = pd.read_csv(ett_dir / "ett" / "ETTh1.csv")
    dm = ett(ett_dir, tmp_path)
    dm.setup()
    train_rows = raw[COLUMNS].to_numpy()[:180]
    np.testing.assert_allclose(dm.mean, train_rows.mean(0))
    np.testing.assert_allclose(dm.std, train_rows.std(0))
    normalised = dm.datasets["train"].series[:180].numpy()
    np.testing.assert_allclose(normalised.mean(0), 0, atol=1e-5)
    # changing test rows changes no statistic
    raw.loc[250:, COLUMNS] += 1000
    raw.to_csv(ett_dir / "ett" / "ETTh1.csv", index=False)
    again = ett(ett_dir, tmp_path)
    again.setup()
    np.testing.assert_allclose(again.mean, dm.mean)
    assert dm.state_dict()["columns"] == COLUMNS


def test_univariate_mode_keeps_the_target_only(ett_dir, tmp_path):
    dm = ett(ett_dir, tmp_path, features="S")
    dm.setup()
    assert dm.columns == ["OT"] and dm.spec.num_features == 1
    assert dm.datasets["train"][0]["inputs"].shape == (24, 1)


def test_rows_per_month_follow_the_sampling_interval(tmp_path):
    # 15-minute data (ETTm): 2,880 rows a 30-day month
    write_csv(tmp_path / "m", rows=2880 * 3, frequency="15min", name="ETTm1.csv")
    dm = ETTDataModule(
        data_dir=str(tmp_path / "m"),
        file="ETTm1.csv",
        split_months=(1, 1, 1),
        lookback=96,
        horizon=96,
        cache_dir=str(tmp_path / "c"),
    )
    dm.setup()
    assert len(dm.datasets["test"]) == 2880 - 96 + 1


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: f.drop(columns=["OT"]), "no column 'OT'"),
        (lambda f: f.assign(HULL=f.HULL.mask(f.index == 7)), "first at data row 8"),
        (lambda f: f.iloc[[0, 2, 1, *range(3, len(f))]], "not strictly increasing at data row 3"),
        (
            lambda f: f.astype({"HULL": object}).assign(HULL=f.HULL.where(f.index != 7, "abc")),
            "data row 8, column 'HULL' holds 'abc', not a number",
        ),
        (
            lambda f: f.assign(date=f.date.where(f.index != 5, f.date[4])),
            "data rows 5 and 6 hold the same date: remove the duplicate",
        ),
    ],
    ids=["missing-column", "nan", "unsorted-dates", "string-value", "duplicated-date"],
)
def test_bad_csv_is_a_clear_error_naming_the_file(tmp_path, damage, message):
    frame = write_csv(tmp_path / "d" / "ett")
    damage(frame).to_csv(tmp_path / "d" / "ett" / "ETTh1.csv", index=False)
    dm = ett(tmp_path / "d", tmp_path)
    with pytest.raises(ValueError, match=message) as error:
        dm.setup()
    assert "ETTh1.csv" in str(error.value)


def test_columns_beyond_the_configured_ones_are_left_out_and_named(tmp_path, caplog):
    frame = write_csv(tmp_path / "d" / "ett")
    frame.insert(1, "row_id", range(len(frame)))
    frame.to_csv(tmp_path / "d" / "ett" / "ETTh1.csv", index=False)
    dm = ett(tmp_path / "d", tmp_path)
    dm.setup()
    assert dm.columns == COLUMNS and dm.spec.num_features == 7
    np.testing.assert_allclose(dm.mean, frame[COLUMNS].to_numpy()[:180].mean(0))
    assert "row_id" in caplog.text and "ETTh1.csv" in caplog.text


def test_look_back_longer_than_the_training_split_names_the_keys(ett_dir, tmp_path):
    with pytest.raises(ValueError, match=r"data.lookback=200 \+ data.horizon=12"):
        ett(ett_dir, tmp_path, lookback=200).setup()
    with pytest.raises(ValueError, match="data.horizon=70"):
        ett(ett_dir, tmp_path, lookback=24, horizon=70).setup()  # longer than val's 60 rows


def test_missing_file_offline_names_both_fixes(tmp_path):
    dm = ETTDataModule(
        data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"), url="file:///nonexistent/{file}"
    )
    with pytest.raises(FileNotFoundError, match="data.data_dir") as error:
        dm.prepare_data()
    assert "RNNLAB_DATA_DIR" in str(error.value) and "ETTh1.csv" in str(error.value)


def test_window_dataset_counts_every_window():
    windows = WindowDataset(torch.arange(50.0).view(50, 1), lookback=5, horizon=3, start=0, end=50)
    assert len(windows) == 50 - 5 - 3 + 1
    assert windows[0]["inputs"].flatten().tolist() == [0, 1, 2, 3, 4]
    assert windows[0]["targets"].flatten().tolist() == [5, 6, 7]
    with pytest.raises(IndexError):
        windows[len(windows)]


def test_sine_is_seeded_and_split_by_fractions():
    a, b = (
        SineDataModule(lookback=24, horizon=12, seed=3),
        SineDataModule(lookback=24, horizon=12, seed=3),
    )
    a.setup()
    b.setup()
    assert torch.equal(a.datasets["test"].series, b.datasets["test"].series)
    assert len(a.datasets["val"]) == 1200 - 12 + 1


def make_task(**kwargs):
    torch.manual_seed(0)
    options = {
        "num_features": 3,
        "horizon": 6,
        "lookback": 12,
        "model": {"cell": "gru", "hidden_size": 8},
        "embedding_dim": 8,
        "segment_len": 4,
    } | kwargs
    return ForecastingTask(**options).eval()


def test_forecast_shape_and_revin_equivariance():
    task = make_task()
    x = torch.randn(5, 12, 3)
    y = task(x)
    assert y.shape == (5, 6, 3)
    # with instance normalisation, a shifted and scaled input gives a shifted and scaled forecast
    torch.testing.assert_close(task(x * 3 + 7), y * 3 + 7, rtol=1e-4, atol=1e-4)


def test_channel_independence_shares_weights_across_channels():
    task = make_task()
    x = torch.randn(4, 12, 3)
    permutation = [2, 0, 1]
    torch.testing.assert_close(task(x[..., permutation]), task(x)[..., permutation])
    joint = make_task(channel_independent=False)
    assert not torch.allclose(joint(x[..., permutation]), joint(x)[..., permutation])


def test_segment_length_must_divide_the_look_back():
    with pytest.raises(ValueError, match="task.segment_len=5"):
        make_task(segment_len=5)


@pytest.mark.parametrize("data", ["ett", "sine"])
def test_fast_dev_run_reports_mse_mae_and_window_count(make_cfg, ett_dir, data):
    overrides = [f"data={data}", "model=gru", "model.hidden_size=8", "debug=fdr", "logger=none"]
    overrides += ["data.lookback=24", "data.horizon=12", "task.segment_len=6"]
    if data == "ett":
        overrides += [f"data.data_dir={ett_dir}", "data.split_months=[6,2,2]"]
    metrics = train(make_cfg(overrides))
    assert metrics["test/mse"] > 0 and metrics["test/mae"] > 0
    # fast_dev_run tests one batch: all 49 test windows of the fixture, 256 of the sine's 1,189
    assert metrics["test/windows"] == (49 if data == "ett" else 256)


def test_full_etth1_has_the_standard_window_counts(tmp_path):
    folder = shared_data("ett")
    dm = ETTDataModule(data_dir=str(folder.parent), cache_dir=str(tmp_path))
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [8449, 2785, 2785]
