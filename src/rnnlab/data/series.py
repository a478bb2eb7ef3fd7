"""Forecasting on any CSV of time series: windows, splits and train-only z-scoring.

Every split is a set of sliding windows over one (T, C) series: `lookback` steps in, the next
`horizon` steps out. The splits partition the *targets* in time; a window's look-back may reach
back into the previous split, as in the ETT protocol (Zhou et al. 2021) and the loaders of the
Weather / Electricity / Traffic / Exchange benchmarks (Autoformer's `Dataset_Custom`)::

    rows   |------------- train -------------|------ val ------|------ test ------|
    window                        [ look-back ][ horizon ]        (first val window)

The borders come from `split_months` (ETT: 12/4/4 months of 30 days) or `split_ratios`
(``[0.7, 0.1, 0.2]``: train ends at ``int(0.7 T)``, test is the last ``int(0.2 T)`` rows and
validation the rows between, as `Dataset_Custom` computes them). Columns are z-scored with
statistics of the training rows only, and MSE / MAE are reported on that normalised scale over
every window (no window dropped).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.base import SPLITS, DataModule, require_positive_ints
from rnnlab.data.spec import DataSpec
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)


class WindowDataset(Dataset):
    """Every window of `series` (T, C) whose `horizon` targets start in [start, end - horizon]."""

    def __init__(self, series: Tensor, lookback: int, horizon: int, start: int, end: int) -> None:
        self.series = series
        self.lookback = lookback
        self.horizon = horizon
        self.first = max(start, lookback)  # the first target step
        self.count = max(0, end - horizon - self.first + 1)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not 0 <= index < self.count:
            raise IndexError(index)
        t = self.first + index
        return {
            "inputs": self.series[t - self.lookback : t],  # (lookback, C)
            "targets": self.series[t : t + self.horizon],  # (horizon, C)
        }


class ForecastDataModule(DataModule):
    """Windows, train-only normalisation and loaders; subclasses supply the series and borders.

    `load()` returns the raw (T, C) float array, the column names and the end row of each split
    (train, val, test); `source` names the file or generator in error messages. Training
    windows are shuffled per seed and epoch; evaluation windows are read in time order.
    """

    source = "the series"

    def __init__(
        self,
        lookback: int = 96,
        horizon: int = 96,
        normalize: bool = True,
        eval_batch_size: int = 256,
        **kwargs,
    ) -> None:
        super().__init__(eval_batch_size=eval_batch_size, **kwargs)
        require_positive_ints(lookback=lookback, horizon=horizon)
        self.lookback = lookback
        self.horizon = horizon
        self.normalize = normalize
        self.columns: list[str] = []
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def load(self) -> tuple[np.ndarray, list[str], tuple[int, int, int]]:
        raise NotImplementedError

    def build(self) -> DataSpec:
        values, self.columns, borders = self.load()
        train_end = borders[0]
        if self.lookback + self.horizon > train_end:
            raise ConfigError(
                f"data.lookback={self.lookback} + data.horizon={self.horizon} is longer than "
                f"the training split of {self.source} ({train_end} rows): shorten them"
            )
        if self.normalize:
            train = values[:train_end]
            self.mean = train.mean(axis=0)
            self.std = train.std(axis=0)
            self.std[self.std == 0] = 1.0  # a constant column stays 0 rather than NaN
            values = (values - self.mean) / self.std
        series = torch.as_tensor(values, dtype=torch.float32)
        starts = (0, borders[0], borders[1])
        for name, start, end in zip(SPLITS, starts, borders, strict=True):
            self.datasets[name] = WindowDataset(series, self.lookback, self.horizon, start, end)
            if len(self.datasets[name]) == 0:
                raise ConfigError(
                    f"the {name} split of {self.source} (rows {start}-{end}) holds no window "
                    f"of data.horizon={self.horizon} steps: shorten data.horizon"
                )
        log.info(
            "%s: %s windows (train/val/test), %d channels",
            self.source,
            "/".join(str(len(self.datasets[name])) for name in SPLITS),
            len(self.columns),
        )
        return DataSpec(
            num_features=len(self.columns), horizon=self.horizon, lookback=self.lookback
        )

    def predict_dataloader(self) -> DataLoader:
        return self.loader("test")

    def data_state(self) -> dict:
        """Columns and the training statistics, to map forecasts back to the original units
        (data=sine generates its series from the seed)."""
        return {
            "columns": self.columns,
            "mean": None if self.mean is None else self.mean.tolist(),
            "std": None if self.std is None else self.std.tolist(),
        }


def read_table(path: Path, date_column: str, columns: Sequence[str] | None):
    """The CSV at `path` checked for what forecasting needs; errors name the file, row and key.

    Only `columns` are read as values (None: every column but the date); any other column is
    named in a warning and left out. Returns the frame, its parsed dates and the value columns.
    """
    import pandas as pd

    frame = pd.read_csv(path)
    if columns is None:
        columns = [c for c in frame.columns if c != date_column]
    missing = [c for c in (date_column, *columns) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{path} has no column {missing[0]!r} (columns: {list(frame.columns)}); "
            "set data.date_column / data.target / data.columns to columns of the file"
        )
    unexpected = [c for c in frame.columns if c != date_column and c not in columns]
    if unexpected:
        log.warning(
            "%s: left out column(s) %s, not in data.columns %s", path, unexpected, list(columns)
        )
    for column in columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            numbers = pd.to_numeric(frame[column], errors="coerce")
            row = int(np.flatnonzero((numbers.isna() & frame[column].notna()).to_numpy())[0])
            # a column of words (a station id, say) is left out, not fixed value by value
            fix = (
                "leave the column out: list the value columns in data.columns"
                if numbers.isna().all()
                else "fix the value"
            )
            raise ConfigError(
                f"{path}: data row {row + 1}, column {column!r} holds "
                f"{frame[column].iloc[row]!r}, not a number; {fix}"
            )
    nan_rows = frame[list(columns)].isna().any(axis=1)
    if nan_rows.any():
        row = int(np.flatnonzero(nan_rows.to_numpy())[0])
        column = next(c for c in columns if pd.isna(frame[c].iloc[row]))
        raise ConfigError(
            f"{path}: {int(nan_rows.sum())} rows hold NaN, the first at data row {row + 1} "
            f"(column {column!r}); fill or drop them before training"
        )
    dates = pd.to_datetime(frame[date_column], errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise ConfigError(
            f"{path}: data row {row + 1} has no parsable date in {date_column!r} "
            f"({frame[date_column].iloc[row]!r}); fix it, or set data.date_column"
        )
    steps = dates.diff().iloc[1:].to_numpy()
    if (steps <= np.timedelta64(0)).any():
        row = int(np.flatnonzero(steps <= np.timedelta64(0))[0]) + 1
        fix = (
            f"data rows {row} and {row + 1} hold the same date: remove the duplicate"
            if steps[row - 1] == np.timedelta64(0)
            else "sort the file by date"
        )
        raise ConfigError(
            f"{path}: {date_column!r} is not strictly increasing at data row {row + 1} "
            f"({dates.iloc[row - 1]} then {dates.iloc[row]}); {fix}"
        )
    return frame, dates, list(columns)


def ratio_borders(rows: int, ratios: Sequence[float]) -> tuple[int, int, int]:
    """The end rows of train, val and test as `Dataset_Custom` places them: train ends at
    ``int(rows * train)``, test is the last ``int(rows * test)`` rows, validation between."""
    train_rows = int(rows * ratios[0])
    test_rows = int(rows * ratios[2])
    return train_rows, rows - test_rows, rows


def month_borders(dates, months: Sequence[int]) -> tuple[int, int, int]:
    """The end rows of train, val and test after `months` months of 30 days each (ETT),
    counted in steps of the file's first sampling interval."""
    step = (dates.iloc[1] - dates.iloc[0]).total_seconds()
    rows_per_month = round(30 * 24 * 3600 / step)
    return tuple(int(x) for x in np.cumsum(months) * rows_per_month)


class SeriesDataModule(ForecastDataModule):
    """Any CSV of time series: a date column and numeric value columns, one row a time step.

    `columns`: the value columns (None: every column but `date_column`). `features`: "M"
    forecasts all of them from all of them (multivariate), "S" only `target` from itself.
    Split by `split_months` (ETT's 30-day months) or by `split_ratios` (train, val, test
    fractions of the rows); exactly one of the two is set.
    """

    def __init__(
        self,
        path: str | None = None,
        date_column: str = "date",
        columns: Sequence[str] | None = None,
        features: str = "M",
        target: str = "OT",
        split_months: Sequence[int] | None = None,
        split_ratios: Sequence[float] | None = (0.7, 0.1, 0.2),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if features not in ("M", "S"):
            raise ConfigError(f"data.features must be 'M' (multivariate) or 'S', got {features!r}")
        if (split_months is None) == (split_ratios is None):
            raise ConfigError(
                "set exactly one of data.split_months (ETT's protocol) and data.split_ratios "
                f"(e.g. [0.7,0.1,0.2]); got {split_months} and {split_ratios}"
            )
        if split_months is not None and (len(split_months) != 3 or min(split_months) < 1):
            raise ConfigError(
                f"data.split_months must be three positive counts, got {list(split_months)}"
            )
        if split_ratios is not None and (
            len(split_ratios) != 3
            or min(split_ratios) <= 0
            or not math.isclose(sum(split_ratios), 1.0, abs_tol=1e-6)
        ):
            raise ConfigError(
                "data.split_ratios must be three positive fractions (train, val, test) that "
                f"sum to 1, got {list(split_ratios)}"
            )
        self.csv = path
        self.date_column = date_column
        self.value_columns = list(columns) if columns is not None else None
        self.features = features
        self.target = target
        self.split_months = tuple(split_months) if split_months is not None else None
        self.split_ratios = tuple(split_ratios) if split_ratios is not None else None
        self.source = Path(path).name if path else "the series"

    def path(self) -> Path:
        """The CSV file to read (subclasses may find or download it)."""
        if not self.csv:
            raise ConfigError("data.path must name the CSV file of the series")
        path = Path(self.csv)
        if not path.is_file():
            raise ConfigError(f"data.path={self.csv!r}: no such file")
        return path

    def prepare_data(self) -> None:
        self.path()

    def load(self) -> tuple[np.ndarray, list[str], tuple[int, int, int]]:
        path = self.path()
        wanted = [self.target] if self.features == "S" else self.value_columns
        frame, dates, columns = read_table(path, self.date_column, wanted)
        if self.split_months is not None:
            borders = month_borders(dates, self.split_months)
            if borders[-1] > len(frame):
                raise ConfigError(
                    f"{path} has {len(frame)} rows; data.split_months="
                    f"{list(self.split_months)} needs {borders[-1]} at "
                    f"{borders[0] // self.split_months[0]} rows a month"
                )
        else:
            borders = ratio_borders(len(frame), self.split_ratios)
        return frame[columns].to_numpy(np.float64), columns, borders
