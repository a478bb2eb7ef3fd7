"""Tiny Shakespeare, a preset of data=corpus (rnnlab.data.corpus) at character level.

The first 90% of characters train, the last 10% validate (nanoGPT's split); there is no test
part, so the test split is the validation text. Local copy: `data.data_dir` (or
`$RNNLAB_DATA_DIR`) holding `tinyshakespeare/input.txt`; otherwise the char-rnn file is
downloaded into the cache. `StreamWindows` and `RandomWindows` are re-exported for code that
imports them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rnnlab.data.corpus import CorpusDataModule, RandomWindows, StreamWindows
from rnnlab.data.storage import download
from rnnlab.data.text import find_local
from rnnlab.errors import ConfigError

__all__ = ["RandomWindows", "ShakespeareDataModule", "StreamWindows"]

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)


class ShakespeareDataModule(CorpusDataModule):
    """Character streams of Tiny Shakespeare for TBPTT, found locally or downloaded.

    `train_fraction` is older configs' key for ``split_ratios=[f, 1 - f, 0]``.
    """

    path_key = "data.data_dir"

    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        url: str = SHAKESPEARE_URL,
        train_fraction: float | None = None,
        split_ratios: Sequence[float] = (0.9, 0.1, 0.0),
        **kwargs,
    ) -> None:
        if train_fraction is not None:
            if not 0.0 < train_fraction < 1.0:
                raise ConfigError(f"data.train_fraction must be in (0, 1), got {train_fraction}")
            split_ratios = (train_fraction, 1.0 - train_fraction, 0.0)
        super().__init__(split_ratios=split_ratios, **kwargs)
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.url = url

    def text_file(self) -> Path:
        """`data.path` if set, else the local copy, else one downloaded once, whole, into the
        cache."""
        if self.path:
            return super().text_file()
        local = find_local(self.data_dir, "tinyshakespeare", "input.txt")
        cached = self.cache_dir / "tinyshakespeare" / "input.txt"
        path = local / "input.txt" if local is not None else cached
        download(self.url, path, local_hint="tinyshakespeare/input.txt")
        return path
