"""Multi30k (WMT16 multimodal task 1) sentence pairs for translation, German -> English by default.

Local copy: `data.data_dir` (or `$RNNLAB_DATA_DIR`) holding `multi30k/{train,val,test2016}.{de,en}`,
one sentence a line, line i of one language translating line i of the other; otherwise the files
are downloaded from the dataset's repository into the cache (each whole, once, under a lock).
Word-level, lower-cased tokenisation with punctuation split off; one vocabulary per language
from the training pairs only (`min_freq`), the target's with `<s>` = 2 and `</s>` = 3.

A batch: `inputs` (B, S) padded source ids with `lengths`, `targets` (B, T) padded
``<s> ... </s>`` ids with `target_lengths`, and `references` (the raw target sentences, for
BLEU), in length buckets of source length.
"""

from __future__ import annotations

import gzip
import logging
from pathlib import Path

import torch
from torch import Tensor

from rnnlab.data.base import SPLITS, SequenceDataModule
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import download
from rnnlab.data.text import find_local
from rnnlab.data.tokenizers import BOS, EOS, Vocabulary, WordTokenizer
from rnnlab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/{file}"
SPLIT_FILES = {"train": "train", "val": "val", "test": "test2016"}
# the file names of the dataset repository's data/task1/raw, per split
REMOTE_FILES = {"train": "train", "val": "val", "test": "test_2016_flickr"}


class PairDataset(torch.utils.data.Dataset):
    """(source ids, target ids, raw target sentence) triples; `lengths` are the source lengths
    (for bucketing)."""

    def __init__(self, sources: list[Tensor], targets: list[Tensor], references: list[str]) -> None:
        self.sources = sources
        self.targets = targets
        self.references = references
        self.lengths = torch.tensor([len(s) for s in sources], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, str]:
        return self.sources[index], self.targets[index], self.references[index]


def collate_pairs(
    examples: list[tuple[Tensor, Tensor, str]], pad_id: int = 0
) -> dict[str, Tensor | list[str]]:
    """Padded pairs, and each row's reference sentence in batch order."""
    sources, targets, references = zip(*examples, strict=True)
    pad = torch.nn.utils.rnn.pad_sequence
    return {
        "inputs": pad(list(sources), batch_first=True, padding_value=pad_id),
        "lengths": torch.tensor([len(s) for s in sources]),
        "targets": pad(list(targets), batch_first=True, padding_value=pad_id),
        "target_lengths": torch.tensor([len(t) for t in targets]),
        "references": list(references),
    }


def read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path} is not valid UTF-8 ({error.reason})") from error


class Multi30kDataModule(SequenceDataModule):
    """Source -> target sentence pairs, vocabularies from train, length-bucketed batches."""

    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        source: str = "de",
        target: str = "en",
        lowercase: bool = True,
        min_freq: int = 2,
        max_src_len: int = 100,
        url: str = MULTI30K_URL,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        if source == target:
            raise ConfigError(f"data.source and data.target are both {source!r}")
        if max_src_len < 1:
            raise ConfigError(f"data.max_src_len must be >= 1, got {max_src_len}")
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.source = source
        self.target = target
        self.min_freq = min_freq
        self.max_src_len = max_src_len
        self.url = url
        self.tokenizer = WordTokenizer(lowercase=lowercase)
        self.source_vocab: Vocabulary | None = None
        self.target_vocab: Vocabulary | None = None

    def folder(self) -> Path:
        local = find_local(self.data_dir, "multi30k", f"train.{self.source}")
        if local is not None:
            return local
        folder = self.cache_dir / "multi30k"
        hint = f"multi30k/ (train, val and test2016 .{self.source} and .{self.target})"
        for split, stem in SPLIT_FILES.items():
            for language in (self.source, self.target):
                url = self.url.format(file=f"{REMOTE_FILES[split]}.{language}.gz")
                download(url, folder / f"{stem}.{language}", hint, gzip.decompress)
        return folder

    def prepare_data(self) -> None:
        self.folder()

    def read_split(self, split: str) -> tuple[list[str], list[str]]:
        """Aligned (source, target) sentences; pairs empty on both sides are dropped."""
        folder = self.folder()
        stem = SPLIT_FILES[split]
        paths = [folder / f"{stem}.{language}" for language in (self.source, self.target)]
        for path in paths:
            if not path.is_file():
                raise MissingFileError(f"{path} is missing (data.data_dir, data.source/target)")
        sources, targets = (read_lines(path) for path in paths)
        for lines in (sources, targets):  # a final newline is not a sentence
            if lines and not lines[-1].strip():
                lines.pop()
        if len(sources) != len(targets):
            raise ConfigError(
                f"{paths[0]} has {len(sources)} lines but {paths[1]} has {len(targets)}: "
                "the files must be line-aligned translations"
            )
        pairs = [(s.strip(), t.strip()) for s, t in zip(sources, targets, strict=True)]
        kept = [(s, t) for s, t in pairs if s and t]
        if len(kept) < len(pairs):
            log.warning(
                "multi30k %s: dropped %d pairs with an empty side", split, len(pairs) - len(kept)
            )
        return [s for s, _ in kept], [t for _, t in kept]

    def build(self) -> DataSpec:
        raw = {split: self.read_split(split) for split in SPLIT_FILES}
        train_sources, train_targets = raw["train"]
        self.source_vocab = Vocabulary.build(
            (self.tokenizer(s) for s in train_sources), min_freq=self.min_freq
        )
        self.target_vocab = Vocabulary.build(
            (self.tokenizer(t) for t in train_targets),
            min_freq=self.min_freq,
            specials=(BOS, EOS),
        )
        for split, (sources, targets) in raw.items():
            source_ids = [self.encode_source(s) for s in sources]
            keep = range(len(sources))
            if split == "train":
                keep = [i for i, ids in enumerate(source_ids) if len(ids) <= self.max_src_len]
                if len(keep) < len(source_ids):
                    log.warning(
                        "multi30k train: dropped %d pairs with sources over data.max_src_len=%d",
                        len(source_ids) - len(keep),
                        self.max_src_len,
                    )
            self.datasets[split] = PairDataset(
                [torch.tensor(source_ids[i][: self.max_src_len]) for i in keep],
                [torch.tensor(self.encode_target(targets[i])) for i in keep],
                [targets[i] for i in keep],
            )
        log.info(
            "multi30k %s->%s: %d/%d/%d pairs, vocabularies %d/%d",
            self.source,
            self.target,
            *(len(self.datasets[s]) for s in SPLITS),
            len(self.source_vocab),
            len(self.target_vocab),
        )
        return DataSpec(
            vocab_size=len(self.source_vocab),
            target_vocab_size=len(self.target_vocab),
            pad_id=Vocabulary.pad_id,
            tokens=tuple(self.source_vocab.tokens),
            target_tokens=tuple(self.target_vocab.tokens),
            tokenizer=self.tokenizer.config(),
        )

    def encode_source(self, text: str) -> list[int]:
        ids = self.source_vocab.encode(self.tokenizer(text))
        return ids or [Vocabulary.unk_id]  # a sentence of only unknown symbols still has a step

    def encode_target(self, text: str) -> list[int]:
        return self.target_vocab.encode([BOS, *self.tokenizer(text), EOS])

    def references(self, split: str) -> list[str]:
        """The raw target sentences of a split, in dataset order (batches carry their own)."""
        return self.dataset(split).references

    def collate_fn(self):
        return collate_pairs

    def data_state(self) -> dict:
        return {
            "source_vocab": self.source_vocab.tokens if self.source_vocab else None,
            "target_vocab": self.target_vocab.tokens if self.target_vocab else None,
            "tokenizer": self.tokenizer.config(),
            "max_src_len": self.max_src_len,
            "source": self.source,
            "target": self.target,
        }
