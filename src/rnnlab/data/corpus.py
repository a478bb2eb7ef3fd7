"""Language modelling on any plain text, by characters or words, with truncated BPTT streams.

The text is one file split by `split_ratios` (train, val, test fractions of its tokens; a test
fraction of 0 leaves no test part) or three files (`train_path`, `val_path`, optional
`test_path`). Each split is laid out as B parallel contiguous streams; batch k is the k-th window
of T tokens of every stream, so the hidden state left by batch k is the right context for
batch k+1::

    text   a b c d e f g h i j k l m n o p q r s t u v w x     (B=2 streams, T=3)
    stream 0:  a b c | d e f | g h i | j k l
    stream 1:  m n o | p q r | s t u | v w x
               batch0  batch1  batch2  batch3     inputs;  targets are shifted by one token

Word level (`level: word`) reads lower-cased words with punctuation split off and ends every
line with `<eos>`, as PyTorch's word_language_model example does; its vocabulary is the
`max_vocab` most frequent training words, the rest read as `<unk>` (as does a literal `<unk>`
in the text, Penn Treebank's and WikiText's mark). Character level keeps every
training character. Either way the vocabulary comes from the training part only.

Beside the whole-stream loss, evaluation can report nanoGPT's estimator, the one its published
figures use: the mean loss over `estimate_windows` random windows of `estimate_window` tokens of
the split, each read from a fresh state. The evaluation loaders are then a list,
``[streams, windows]``: dataloader index 1 yields (b, W) window batches.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from rnnlab.data.base import DataModule, replica, require_positive_ints, split_loader
from rnnlab.data.spec import DataSpec
from rnnlab.data.tokenizers import UNK, CharTokenizer, Vocabulary, WordTokenizer
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)

# the end of a line in word-level streams (PyTorch's word_language_model example)
LINE_END = "<eos>"
LEVELS = ("char", "word")


def line_words(tokenizer: WordTokenizer, line: str) -> list[str]:
    """The words of a line, a literal `<unk>` kept whole: Penn Treebank and WikiText files
    already mark their rare words so, and the word pattern would cut it into three tokens."""
    first, *rest = line.split(UNK)
    words = tokenizer(first)
    for piece in rest:
        words += [UNK, *tokenizer(piece)]
    return words


def stream_tokens(tokenizer: CharTokenizer | WordTokenizer, text: str) -> list[str]:
    """The tokens of `text` as a stream: characters as they are, or words with `<eos>` after
    every line (a last line without a newline gets none)."""
    if isinstance(tokenizer, CharTokenizer):
        return tokenizer(text)
    tokens: list[str] = []
    *lines, last = text.split("\n")
    for line in lines:
        tokens += line_words(tokenizer, line)
        tokens.append(LINE_END)
    return tokens + line_words(tokenizer, last)


def join_tokens(tokens: Sequence[str], words: bool) -> str:
    """Sampled tokens as text: characters concatenated, words spaced with `<eos>` a newline."""
    if not words:
        return "".join(tokens)
    text = ""
    for token in tokens:
        if token == LINE_END:
            text += "\n"
        else:
            text += token if text.endswith("\n") else " " + token
    return text


class StreamWindows(Dataset):
    """Consecutive (inputs, targets) windows of B parallel streams: item k is batch k, (B, T).

    `rows` keeps a slice of the streams: under DDP the text is laid out as B x world streams
    and each rank reads its own B of them, with the same number of windows on every rank.
    """

    def __init__(self, ids: Tensor, streams: int, window: int, rows: slice | None = None) -> None:
        length = (len(ids) - 1) // streams  # each stream needs one extra id for its last target
        if length < 1:
            raise ConfigError(f"{len(ids)} tokens cannot fill {streams} streams")
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


def check_streams(
    path: Path, part: str, ids: Tensor, key: str, streams: int, world: int, unit: str
) -> None:
    """An error naming the file and key if `ids` cannot give every stream one (input, target)."""
    if (len(ids) - 1) // (streams * world) < 1:
        ranks = f" on each of {world} processes" if world > 1 else ""
        raise ConfigError(
            f"{path}: its {part} part ({len(ids)} {unit}) cannot fill {key}={streams} "
            f"streams{ranks}: lower {key}, or use a longer text"
        )


class CorpusDataModule(DataModule):
    """Token streams of a plain-text corpus for TBPTT; the vocabulary comes from training text.

    `batch_size` / `val_batch_size` count parallel streams. Without a test part (a test
    fraction of 0, no `test_path`) the test split is the validation text. `estimate_windows`
    > 0 adds the estimator's windows loader to each evaluation split (0: the stream loader).
    """

    # the key that names the text in errors (a preset that finds its own file names its own)
    path_key = "data.path"

    def __init__(
        self,
        path: str | None = None,
        train_path: str | None = None,
        val_path: str | None = None,
        test_path: str | None = None,
        split_ratios: Sequence[float] = (0.9, 0.05, 0.05),
        level: str = "char",
        lowercase: bool = True,
        max_vocab: int | None = 10000,
        min_freq: int = 1,
        bptt: int = 128,
        val_batch_size: int = 16,
        estimate_windows: int = 0,
        estimate_window: int = 256,
        **kwargs,
    ) -> None:
        if level not in LEVELS:
            raise ConfigError(f"data.level must be one of {list(LEVELS)}, got {level!r}")
        if path is not None and (train_path or val_path or test_path):
            raise ConfigError(
                "set data.path (one file, split by data.split_ratios) or data.train_path and "
                "data.val_path (and optionally data.test_path), not both"
            )
        if path is None and bool(train_path) != bool(val_path):
            raise ConfigError("data.train_path and data.val_path go together: set both")
        if (
            len(split_ratios) != 3
            or min(split_ratios[:2]) <= 0
            or split_ratios[2] < 0
            or not math.isclose(sum(split_ratios), 1.0, abs_tol=1e-6)
        ):
            raise ConfigError(
                "data.split_ratios must be three fractions (train, val, test; test may be 0) "
                f"that sum to 1, got {list(split_ratios)}"
            )
        if max_vocab is not None and (not isinstance(max_vocab, int) or max_vocab < 3):
            raise ConfigError(f"data.max_vocab must be an integer >= 3 or null, got {max_vocab!r}")
        require_positive_ints(
            bptt=bptt,
            val_batch_size=val_batch_size,
            estimate_window=estimate_window,
            min_freq=min_freq,
        )
        if not isinstance(estimate_windows, int) or estimate_windows < 0:
            raise ConfigError(
                f"data.estimate_windows must be a count >= 0 (0: off), got {estimate_windows!r}"
            )
        super().__init__(eval_batch_size=val_batch_size, **kwargs)
        self.path = path
        self.split_paths = {"train": train_path, "val": val_path, "test": test_path}
        self.split_ratios = tuple(split_ratios)
        self.level = level
        self.max_vocab = max_vocab
        self.min_freq = min_freq
        self.bptt = bptt
        self.estimate_windows = estimate_windows
        self.estimate_window = estimate_window
        words = level == "word"
        self.tokenizer = WordTokenizer(lowercase) if words else CharTokenizer()
        self.unit = "words" if words else "characters"
        self.vocab: Vocabulary | None = None

    @property
    def train_ids(self) -> Tensor | None:
        return self.datasets.get("train")

    @property
    def val_ids(self) -> Tensor | None:
        return self.datasets.get("val")

    def text_file(self) -> Path:
        """The one file to split (a preset may find or download it)."""
        if not self.path:
            raise ConfigError(
                "data.path must name a text file (or set data.train_path and data.val_path)"
            )
        return Path(self.path)

    def read(self, path: Path, key: str) -> str:
        if not path.is_file():
            raise ConfigError(f"{key}={str(path)!r}: no such file")
        text = path.read_text(encoding="utf-8")
        if not text.strip():
            raise ConfigError(f"{path} is empty ({key})")
        return text

    def prepare_data(self) -> None:
        if self.split_paths["train"]:
            return
        self.text_file()

    def split_tokens(self) -> tuple[dict[str, Path], dict[str, list[str]]]:
        """Each split's file and tokens: three files, or one file cut by `split_ratios`."""
        if self.split_paths["train"]:
            files = {split: Path(p) for split, p in self.split_paths.items() if p}
            keys = {"train": "data.train_path", "val": "data.val_path", "test": "data.test_path"}
            texts = {split: self.read(path, keys[split]) for split, path in files.items()}
            return files, {s: stream_tokens(self.tokenizer, t) for s, t in texts.items()}
        path = self.text_file()
        tokens = stream_tokens(self.tokenizer, self.read(path, self.path_key))
        # the borders as the series benchmarks place them: test is the last int(n * test)
        train_end = int(len(tokens) * self.split_ratios[0])
        test_start = len(tokens) - int(len(tokens) * self.split_ratios[2])
        parts = {"train": tokens[:train_end], "val": tokens[train_end:test_start]}
        if test_start < len(tokens):
            parts["test"] = tokens[test_start:]
        return dict.fromkeys(parts, path), parts

    def build(self) -> DataSpec:
        files, tokens = self.split_tokens()
        words = self.level == "word"
        self.vocab = Vocabulary.build(
            [tokens["train"]],
            max_size=self.max_vocab if words else None,
            min_freq=self.min_freq,
            specials=(LINE_END,) if words else (),
        )
        self.datasets = {split: torch.tensor(self.vocab.encode(t)) for split, t in tokens.items()}
        if "test" not in self.datasets:
            log.info("%s: no test part; test/* report the validation part", files["val"].name)
            self.datasets["test"] = self.datasets["val"]
        self.check_lengths(files)
        for split in ("val", "test"):
            unknown = int((self.datasets[split] == Vocabulary.unk_id).sum())
            if unknown and split in tokens:
                log.info(
                    "%s: %d %s %s are not in the training vocabulary (read as <unk>)",
                    files[split].name,
                    unknown,
                    split,
                    self.unit,
                )
        return DataSpec(
            vocab_size=len(self.vocab),
            pad_id=Vocabulary.pad_id,
            tokens=tuple(self.vocab.tokens),
            tokenizer=self.tokenizer.config(),
        )

    def check_lengths(self, files: dict[str, Path]) -> None:
        """Errors naming the file and key for a split that cannot fill its streams or windows."""
        world = replica(self)[1]
        parts = {"train": "training", "val": "validation", "test": "test"}
        for split, ids in self.datasets.items():
            path, part = files.get(split, files["val"]), parts[split]
            streams = self.batch_size if split == "train" else self.eval_batch_size
            key = "data.batch_size" if split == "train" else "data.val_batch_size"
            check_streams(path, part, ids, key, streams, world, self.unit)
            if len(ids) - 1 < self.bptt:
                raise ConfigError(
                    f"{path}: its {part} part ({len(ids)} {self.unit}) is shorter than one "
                    f"window of data.bptt={self.bptt}: lower data.bptt, or use a longer text"
                )
            short = len(ids) - self.estimate_window - 1 < 1
            if split != "train" and self.estimate_windows and short:
                raise ConfigError(
                    f"{path}: its {part} part ({len(ids)} {self.unit}) is too short for "
                    f"windows of data.estimate_window={self.estimate_window}: lower it, "
                    "or set data.estimate_windows=0"
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
