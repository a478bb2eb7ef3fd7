"""Forecasting data: ETT (ETTh1, ETTh2, ETTm1, ETTm2) and synthetic multi-sine series.

Every split is a set of sliding windows over one (T, C) series: `lookback` steps in, the next
`horizon` steps out. The splits partition the *targets* in time; a window's look-back may reach
back into the previous split, as in the standard ETT protocol (Zhou et al. 2021)::

    rows   |------------- train -------------|------ val ------|------ test ------|
    window                        [ look-back ][ horizon ]        (first val window)

Columns are z-scored with statistics of the training rows only, and MSE / MAE are reported on
that normalised scale over every window (no window dropped).
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
from rnnlab.data.storage import download
from rnnlab.data.text import find_local
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)

ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{file}"
# every ETT file's value columns: loads and the oil temperature (the usual target)
ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


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


def read_table(path: Path, date_column: str, columns: Sequence[str]):
    """The CSV at `path` checked for what forecasting needs; errors name the file, row and key.

    Only `columns` are read as values; any other column is named in a warning and left out.
    """
    import pandas as pd

    frame = pd.read_csv(path)
    missing = [c for c in (date_column, *columns) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"{path} has no column {missing[0]!r} (columns: {list(frame.columns)}); "
            f"set data.date_column / data.target, or +data.columns=[...] for other columns"
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
            raise ConfigError(
                f"{path}: data row {row + 1}, column {column!r} holds "
                f"{frame[column].iloc[row]!r}, not a number; fix the value"
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
        raise ConfigError(f"{path}: data row {row + 1} has no parsable {date_column!r}")
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
    return frame, dates


class ETTDataModule(ForecastDataModule):
    """The ETT benchmark: 12/4/4 months train/val/test (ETTh1: 8,640 / 2,880 / 2,880 rows).

    `features`: "M" forecasts all `columns` from all `columns` (multivariate; ETT's seven by
    default, other columns in the file are named in a warning and left out), "S" only `target`
    from itself (univariate). `file` picks the data set (ETTh1.csv, ETTh2.csv, ETTm1.csv, ...):
    a local copy under `data_dir` (or its `ett/`), else downloaded into the cache.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        file: str = "ETTh1.csv",
        features: str = "M",
        target: str = "OT",
        date_column: str = "date",
        split_months: tuple[int, int, int] = (12, 4, 4),
        url: str = ETT_URL,
        columns: Sequence[str] = ETT_COLUMNS,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if features not in ("M", "S"):
            raise ConfigError(f"data.features must be 'M' (multivariate) or 'S', got {features!r}")
        if features == "M" and target not in columns:
            raise ConfigError(f"data.target={target!r} is not in data.columns={list(columns)}")
        if len(split_months) != 3 or min(split_months) < 1:
            raise ConfigError(
                f"data.split_months must be three positive counts, got {split_months}"
            )
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.file = file
        self.features = features
        self.target = target
        self.date_column = date_column
        self.split_months = tuple(split_months)
        self.value_columns = list(columns)
        self.url = url.format(file=file)
        self.source = file

    def path(self) -> Path:
        local = find_local(self.data_dir, "ett", self.file)
        if local is not None:
            return local / self.file
        return download(self.url, self.cache_dir / "ett" / self.file, f"ett/{self.file}")

    def prepare_data(self) -> None:
        self.path()

    def load(self) -> tuple[np.ndarray, list[str], tuple[int, int, int]]:
        path = self.path()
        self.source = str(Path("ett") / self.file) if path.parent.name == "ett" else self.file
        columns = self.value_columns if self.features == "M" else [self.target]
        frame, dates = read_table(path, self.date_column, columns)
        step = (dates.iloc[1] - dates.iloc[0]).total_seconds()
        rows_per_month = round(30 * 24 * 3600 / step)  # the protocol's months are 30 days
        borders = tuple(int(x) for x in np.cumsum(self.split_months) * rows_per_month)
        if borders[-1] > len(frame):
            raise ConfigError(
                f"{path} has {len(frame)} rows; data.split_months={list(self.split_months)} "
                f"needs {borders[-1]} at {rows_per_month} rows a month"
            )
        return frame[columns].to_numpy(np.float64), columns, borders


class SineDataModule(ForecastDataModule):
    """Noisy sums of sines generated in memory (offline): `channels` series of `length` steps.

    Each channel sums `components` sines with periods drawn from [period_min, period_max],
    random phases and amplitudes, plus Gaussian noise of std `noise`. Split by `fractions`.
    """

    def __init__(
        self,
        length: int = 6000,
        channels: int = 3,
        components: int = 3,
        period_min: float = 8.0,
        period_max: float = 96.0,
        noise: float = 0.1,
        fractions: tuple[float, float, float] = (0.6, 0.2, 0.2),
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(fractions) != 3 or min(fractions) <= 0 or not math.isclose(sum(fractions), 1.0):
            raise ConfigError(f"data.fractions must be three positive parts of 1, got {fractions}")
        if channels < 1 or components < 1 or length < 3:
            raise ConfigError("data.channels, data.components must be >= 1 and data.length >= 3")
        self.length = length
        self.channels = channels
        self.components = components
        self.period_min = period_min
        self.period_max = period_max
        self.noise = noise
        self.fractions = tuple(fractions)
        self.source = "data=sine"

    def load(self) -> tuple[np.ndarray, list[str], tuple[int, int, int]]:
        rng = np.random.default_rng(self.seed)
        t = np.arange(self.length, dtype=np.float64)[:, None, None]  # (T, 1, 1)
        shape = (1, self.channels, self.components)
        periods = rng.uniform(self.period_min, self.period_max, shape)
        phases = rng.uniform(0, 2 * np.pi, shape)
        amplitudes = rng.uniform(0.5, 1.5, shape)
        values = (amplitudes * np.sin(2 * np.pi * t / periods + phases)).sum(-1)
        values += self.noise * rng.standard_normal(values.shape)
        ends = np.cumsum(self.fractions) * self.length
        borders = (int(ends[0]), int(ends[1]), self.length)
        return values, [f"sine_{c}" for c in range(self.channels)], borders
