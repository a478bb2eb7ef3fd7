"""Forecasting presets: ETT (ETTh1, ETTh2, ETTm1, ETTm2) and synthetic multi-sine series.

ETT is data=series (rnnlab.data.series) with ETT's columns, its 12/4/4-month split and a
download when no local copy exists; the windows, splits and statistics are series.py's.
`WindowDataset` and `ForecastDataModule` are re-exported for code that imports them from here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rnnlab.data.series import ForecastDataModule, SeriesDataModule, WindowDataset
from rnnlab.data.storage import download
from rnnlab.data.text import find_local
from rnnlab.errors import ConfigError

__all__ = ["ETTDataModule", "ForecastDataModule", "SineDataModule", "WindowDataset"]

ETT_URL = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/main/ETT-small/{file}"
# every ETT file's value columns: loads and the oil temperature (the usual target)
ETT_COLUMNS = ("HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT")


class ETTDataModule(SeriesDataModule):
    """The ETT benchmark: 12/4/4 months train/val/test (ETTh1: 8,640 / 2,880 / 2,880 rows).

    `features`: "M" forecasts all `columns` from all `columns` (multivariate; ETT's seven by
    default, other columns in the file are named in a warning and left out), "S" only `target`
    from itself (univariate). `file` picks the data set (ETTh1.csv, ETTh2.csv, ETTm1.csv, ...):
    `path` if set, else a local copy under `data_dir` (or its `ett/`), else downloaded into
    the cache.
    """

    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        file: str = "ETTh1.csv",
        url: str = ETT_URL,
        columns: Sequence[str] | None = ETT_COLUMNS,
        split_months: Sequence[int] | None = (12, 4, 4),
        split_ratios: Sequence[float] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            columns=columns, split_months=split_months, split_ratios=split_ratios, **kwargs
        )
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.file = file
        self.url = url.format(file=file)
        self.source = file

    def path(self) -> Path:
        if self.csv:
            return super().path()
        local = find_local(self.data_dir, "ett", self.file)
        if local is not None:
            path = local / self.file
        else:
            path = download(self.url, self.cache_dir / "ett" / self.file, f"ett/{self.file}")
        self.source = str(Path("ett") / self.file) if path.parent.name == "ett" else self.file
        return path


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
