"""Tiny Shakespeare for character language modelling with truncated backpropagation through time.

The first 90% of characters train, the last 10% validate (nanoGPT's split). Each split is laid
out as B parallel contiguous streams; batch k is the k-th window of T characters of every
stream, so the hidden state left by batch k is the right context for batch k+1::

    text   a b c d e f g h i j k l m n o p q r s t u v w x     (B=2 streams, T=3)
    stream 0:  a b c | d e f | g h i | j k l
    stream 1:  m n o | p q r | s t u | v w x
               batch0  batch1  batch2  batch3     inputs;  targets are shifted by one char

Beside the whole-stream loss, evaluation can report nanoGPT's estimator, the one its published
figures use: the mean loss over `estimate_windows` random windows of `estimate_window`
characters of the validation text, each read from a fresh state. The evaluation loaders are
then a list, ``[streams, windows]``: dataloader index 1 yields (b, W) window batches.

Local copy: `data.data_dir` (or `$RNNLAB_DATA_DIR`) holding `tinyshakespeare/input.txt`;
otherwise the char-rnn file is downloaded into the cache.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.base import DataModule, replica, require_positive_ints, split_loader
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import download
from rnnlab.data.text import find_local
from rnnlab.data.tokenizers import CharTokenizer, Vocabulary
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)

SHAKESPEARE_URL = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)


class StreamWindows(Dataset):
    """Consecutive (inputs, targets) windows of B parallel streams: item k is batch k, (B, T).

    `rows` keeps a slice of the streams: under DDP the text is laid out as B x world streams
    and each rank reads its own B of them, with the same number of windows on every rank.
    """

    def __init__(self, ids: Tensor, streams: int, window: int, rows: slice | None = None) -> None:
        length = (len(ids) - 1) // streams  # each stream needs one extra id for its last target
        if length < 1:
            raise ConfigError(f"{len(ids)} characters cannot fill {streams} streams")
        rows = rows or slice(None)
        self.inputs = ids[: streams * length].view(streams, length)[rows]  # (B, L)
        self.targets = ids[1 : streams * length + 1].view(streams, length)[rows]
        self.window = min(window, length)
        self.num_windows = -(-length // self.window)

    def __len__(self) -> int:
        return self.num_windows

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        window = slice(index * self.window, (index + 1) * self.window)
        return {"inputs": self.inputs[:, window], "targets": self.targets[:, window]}


class RandomWindows(Dataset):
    """nanoGPT's estimator windows of `ids`: item k is a batch {"inputs", "targets"}, (b, W).

    `count` starts are drawn as nanoGPT draws them (a generator seeded with 0, uniform over
    every start that leaves room for the last target), then cut into batches of at most
    `max_batch` windows per rank: each batch of starts is dealt out over the `world` ranks,
    so every rank reads the same number of batches and no window twice.
    """

    def __init__(
        self,
        ids: Tensor,
        window: int,
        count: int,
        rank: int = 0,
        world: int = 1,
        max_batch: int = 64,
    ) -> None:
        generator = torch.Generator().manual_seed(0)
        starts = torch.randint(0, len(ids) - window - 1, (count,), generator=generator)
        batches = -(-count // (max_batch * world))
        self.starts = [chunk[rank::world] for chunk in torch.tensor_split(starts, batches)]
        self.ids = ids
        self.offsets = torch.arange(window)

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        positions = self.starts[index][:, None] + self.offsets  # (b, W)
        return {"inputs": self.ids[positions], "targets": self.ids[positions + 1]}


def read_text(
    data_dir: str | None, cache_dir: Path, name: str, filename: str, url: str
) -> tuple[Path, str]:
    """A local copy's path and text, else one downloaded once, whole, into the cache."""
    local = find_local(data_dir, name, filename)
    path = local / filename if local is not None else cache_dir / name / filename
    download(url, path, local_hint=f"{name}/{filename}")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise ConfigError(f"{path} is empty (data.data_dir)")
    return path, text


def check_streams(path: Path, part: str, ids: Tensor, key: str, streams: int, world: int) -> None:
    """An error naming the file and key if `ids` cannot give every stream one (input, target)."""
    if (len(ids) - 1) // (streams * world) < 1:
        ranks = f" on each of {world} processes" if world > 1 else ""
        raise ConfigError(
            f"{path}: its {part} part ({len(ids)} characters) cannot fill {key}={streams} "
            f"streams{ranks}: lower {key}, or use a longer text"
        )


class ShakespeareDataModule(DataModule):
    """Character streams for TBPTT; the vocabulary comes from the training part.

    `batch_size` / `val_batch_size` count parallel streams; the test split is the validation
    text (the data's convention). `estimate_windows` > 0 adds the estimator's windows loader
    to each evaluation split (0: the stream loader alone).
    """

    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        train_fraction: float = 0.9,
        bptt: int = 128,
        val_batch_size: int = 16,
        url: str = SHAKESPEARE_URL,
        estimate_windows: int = 0,
        estimate_window: int = 256,
        **kwargs,
    ) -> None:
        if not 0.0 < train_fraction < 1.0:
            raise ConfigError(f"data.train_fraction must be in (0, 1), got {train_fraction}")
        require_positive_ints(
            bptt=bptt, val_batch_size=val_batch_size, estimate_window=estimate_window
        )
        if not isinstance(estimate_windows, int) or estimate_windows < 0:
            raise ConfigError(
                f"data.estimate_windows must be a count >= 0 (0: off), got {estimate_windows!r}"
            )
        super().__init__(eval_batch_size=val_batch_size, **kwargs)
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.train_fraction = train_fraction
        self.bptt = bptt
        self.url = url
        self.estimate_windows = estimate_windows
        self.estimate_window = estimate_window
        self.tokenizer = CharTokenizer()
        self.vocab: Vocabulary | None = None

    @property
    def train_ids(self) -> Tensor | None:
        return self.datasets.get("train")

    @property
    def val_ids(self) -> Tensor | None:
        return self.datasets.get("val")

    def prepare_data(self) -> None:
        read_text(self.data_dir, self.cache_dir, "tinyshakespeare", "input.txt", self.url)

    def build(self) -> DataSpec:
        path, text = read_text(
            self.data_dir, self.cache_dir, "tinyshakespeare", "input.txt", self.url
        )
        split = int(len(text) * self.train_fraction)
        self.vocab = Vocabulary.build([self.tokenizer(text[:split])])
        train_ids = torch.tensor(self.vocab.encode(text[:split]))
        val_ids = torch.tensor(self.vocab.encode(text[split:]))
        self.datasets = {"train": train_ids, "val": val_ids, "test": val_ids}
        world = replica(self)[1]
        check_streams(path, "training", train_ids, "data.batch_size", self.batch_size, world)
        check_streams(
            path, "validation", val_ids, "data.val_batch_size", self.eval_batch_size, world
        )
        if self.estimate_windows and len(val_ids) - self.estimate_window - 1 < 1:
            raise ConfigError(
                f"{path}: its validation part ({len(val_ids)} characters) is too short for "
                f"windows of data.estimate_window={self.estimate_window}: lower it, or set "
                "data.estimate_windows=0"
            )
        unknown = int((val_ids == Vocabulary.unk_id).sum())
        if unknown:
            log.info(
                "shakespeare: %d validation characters are not in the train vocabulary", unknown
            )
        return DataSpec(
            vocab_size=len(self.vocab),
            pad_id=Vocabulary.pad_id,
            tokens=tuple(self.vocab.tokens),
            tokenizer=self.tokenizer.config(),
        )

    def loader(self, split: str, **sampling) -> DataLoader | list[DataLoader]:
        """The stream loader, and for evaluation with `estimate_windows` the windows loader."""
        streams = self.stream_loader(split)
        if split == "train" or not self.estimate_windows:
            return streams
        rank, world = replica(self)
        if self.estimate_windows < world:
            raise ConfigError(
                f"data.estimate_windows={self.estimate_windows} cannot give each of {world} "
                "processes a window: raise it, or set it to 0"
            )
        windows = RandomWindows(
            self.dataset(split), self.estimate_window, self.estimate_windows, rank, world
        )
        return [streams, split_loader(self, windows, False, batch_size=None)]

    def stream_loader(self, split: str) -> DataLoader:
        """Windows of parallel streams, never shuffled: the carried hidden state must see them in
        order. Training resumes mid-epoch at the next window; the task's checkpoint carries the
        hidden state that goes with it."""
        ids = self.dataset(split)
        train = split == "train"
        streams = self.batch_size if train else self.eval_batch_size
        rank, world = replica(self)
        rows = slice(rank * streams, (rank + 1) * streams)
        # batch_size=None: each item already is a (B, T) batch
        return split_loader(
            self,
            StreamWindows(ids, streams * world, self.bptt, rows),
            train,
            batch_size=None,
            shuffle=False,
            num_workers=self.num_workers,
        )

    def data_state(self) -> dict:
        return {
            "vocab": self.vocab.tokens if self.vocab else None,
            "tokenizer": self.tokenizer.config(),
        }
