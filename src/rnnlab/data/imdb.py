"""IMDb sentiment (Maas et al. 2011): 25,000 train and 25,000 test reviews, word level.

A preset of `TextClassificationDataModule` (`data=imdb`): the hub's `stanfordnlp/imdb`, or its
local parquet copy (`imdb/train.parquet` and `imdb/test.parquet` under `data.data_dir`,
defaulting to `$RNNLAB_DATA_DIR`); validation carved from train, seeded and stratified; labels
`neg` and `pos`. It keeps its own class because checkpoints store the datamodule's state under
the class name: runs trained before IMDb became a preset evaluate and resume unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rnnlab.data.text_classification import TextClassificationDataModule

LABELS = ("neg", "pos")


class ImdbDataModule(TextClassificationDataModule):
    """IMDb's source, splits and label names as defaults; every other option as `data=text`."""

    cache_prefix = "imdb"

    def __init__(
        self,
        path: str = "stanfordnlp/imdb",
        label_names: Sequence[str] | None = LABELS,
        test_split: str | None = "test",
        **kwargs: Any,
    ) -> None:
        super().__init__(path=path, label_names=label_names, test_split=test_split, **kwargs)
