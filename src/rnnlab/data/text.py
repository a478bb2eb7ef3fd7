"""What the text datamodules share: finding local copies, cache keys, id arrays.

Local copies are looked up in `data_dir` itself or in its sub-folder named after the data set,
so both `RNNLAB_DATA_DIR=/data` (holding imdb/, names/, ...) and `data.data_dir=/data/imdb` work.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch


def find_local(data_dir: str | Path | None, name: str, marker: str) -> Path | None:
    """The folder under `data_dir` that holds `marker` (a file or glob), or None."""
    if data_dir is None:
        return None
    for folder in (Path(data_dir), Path(data_dir) / name):
        if any(folder.glob(marker)):
            return folder
    return None


def settings_key(settings: dict) -> str:
    """A short stable hash of the settings a cache depends on."""
    return hashlib.sha1(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]


def list_column_to_tensors(column: pa.ChunkedArray | pa.Array) -> list[torch.Tensor]:
    """An Arrow list<int> column as one id tensor per row, without a Python loop over ids."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = torch.from_numpy(column.flatten().to_numpy(zero_copy_only=False).astype(np.int64))
    offsets = column.offsets.to_numpy()
    sizes = np.diff(offsets - offsets[0]).tolist()
    return list(torch.split(values, sizes))
