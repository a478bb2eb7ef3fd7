"""Surnames in 18 languages (the PyTorch tutorial's data): classify a name's language by character.

One UTF-8 file per language, one name per line, the file's stem is the label. Local copy:
`data.data_dir` (or `$RNNLAB_DATA_DIR`) holding `names/*.txt`; otherwise the tutorial's
`data.zip` is downloaded into the cache.

Honest protocol: (name, language) pairs are de-duplicated first (Arabic has 2,000 lines but
108 distinct names), then split by *name*, stratified by language, so no test name is seen in
training, not even under another language.
"""

from __future__ import annotations

import logging
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rnnlab.data.base import SequenceDataModule
from rnnlab.data.collate import SequenceDataset
from rnnlab.data.spec import DataSpec
from rnnlab.data.text import find_local
from rnnlab.data.tokenizers import BOS, EOS, CharTokenizer, Vocabulary

log = logging.getLogger(__name__)

NAMES_URL = "https://download.pytorch.org/tutorial/data.zip"


def read_name_files(folder: Path) -> list[tuple[str, str]]:
    """(name, language) pairs from `folder/*.txt`; blank lines dropped and counted."""
    files = sorted(folder.glob("*.txt"))
    if not files:
        raise FileNotFoundError(f"no *.txt name files in {folder} (data.data_dir)")
    pairs, blank = [], 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as error:
            line = path.read_bytes()[: error.start].count(b"\n") + 1
            raise ValueError(
                f"{path} line {line} is not valid UTF-8 ({error.reason}); "
                "re-encode the file as UTF-8"
            ) from error
        for line in text.splitlines():
            name = line.strip()
            if name:
                pairs.append((name, path.stem))
            else:
                blank += 1
    if blank:
        log.warning("names: dropped %d blank line(s) in %s", blank, folder)
    return pairs


def download_names(cache_dir: Path) -> Path:
    """The tutorial's data.zip, fetched once into the cache; returns the names folder."""
    target = cache_dir / "names-tutorial"
    folder = target / "data" / "names"
    if not folder.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        archive = target / "data.zip"
        try:
            urllib.request.urlretrieve(NAMES_URL, archive)
        except OSError as error:
            raise FileNotFoundError(
                f"could not download the names data ({NAMES_URL}): {error}. Point data.data_dir "
                "(or the RNNLAB_DATA_DIR environment variable) at a folder holding names/*.txt."
            ) from error
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(target)
    return folder


def group_split(
    pairs: list[tuple[str, str]], fractions: tuple[float, float], seed: int
) -> dict[str, list[int]]:
    """Indices of train / val / test: split by distinct name, stratified by the name's language.

    A name listed under several languages is stratified under the rarest of them and goes,
    with all its pairs, to one split.
    """
    language_size = Counter(language for _, language in pairs)
    languages_of: dict[str, list[str]] = {}
    for name, language in pairs:
        languages_of.setdefault(name, []).append(language)
    by_language: dict[str, list[str]] = {}
    for name, languages in sorted(languages_of.items()):
        stratum = min(languages, key=lambda language: (language_size[language], language))
        by_language.setdefault(stratum, []).append(name)
    rng = np.random.default_rng(seed)
    split_of: dict[str, str] = {}
    val_fraction, test_fraction = fractions
    for _, names in sorted(by_language.items()):
        order = rng.permutation(len(names))
        n_val = int(round(val_fraction * len(names)))
        n_test = int(round(test_fraction * len(names)))
        for rank, index in enumerate(order):
            split = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            split_of[names[index]] = split
    splits: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    for i, (name, _) in enumerate(pairs):
        splits[split_of[name]].append(i)
    return splits


class NamesDataModule(SequenceDataModule):
    """Character-level names with a de-duplicated, name-grouped, language-stratified split."""

    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        ascii_fold: bool = False,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
            raise ValueError("data.val_fraction and data.test_fraction must be > 0 with a sum < 1")
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.fractions = (val_fraction, test_fraction)
        self.tokenizer = CharTokenizer(ascii_fold=ascii_fold)
        self.vocab: Vocabulary | None = None
        self.languages: list[str] = []
        self.pairs: list[tuple[str, str]] = []
        self.split_index: dict[str, list[int]] = {}

    def source_folder(self) -> Path:
        local = find_local(self.data_dir, "names", "*.txt")
        if local is not None:
            return local
        if self.data_dir is not None:
            log.warning("no names/*.txt under data.data_dir=%s; downloading", self.data_dir)
        return download_names(self.cache_dir)

    def prepare_data(self) -> None:
        self.source_folder()

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        raw = read_name_files(self.source_folder())
        self.pairs = sorted(set(raw))
        log.info("names: %d lines, %d distinct (name, language) pairs", len(raw), len(self.pairs))
        self.languages = sorted({language for _, language in self.pairs})
        label_of = {language: i for i, language in enumerate(self.languages)}
        self.split_index = group_split(self.pairs, self.fractions, self.seed)
        train_pairs = [self.pairs[i] for i in self.split_index["train"]]
        self.vocab = self.build_vocab(self.tokenizer(name) for name, _ in train_pairs)
        datasets = {}
        for split, indices in self.split_index.items():
            sequences = [torch.tensor(self.encode(self.pairs[i][0])) for i in indices]
            labels = [label_of[self.pairs[i][1]] for i in indices]
            datasets[split] = SequenceDataset(sequences, labels)
        self.train_set, self.val_set, self.test_set = (
            datasets["train"],
            datasets["val"],
            datasets["test"],
        )
        self._spec = DataSpec(
            vocab_size=len(self.vocab),
            num_classes=len(self.languages),
            pad_id=Vocabulary.pad_id,
            labels=tuple(self.languages),
            class_counts=self.train_set.class_counts(len(self.languages)),
        )

    def build_vocab(self, tokenized: Iterable[list[str]]) -> Vocabulary:
        return Vocabulary.build(tokenized)

    def encode(self, name: str) -> list[int]:
        return self.vocab.encode(self.tokenizer(name))

    def state_dict(self) -> dict:
        return {
            "vocab": self.vocab.tokens if self.vocab else None,
            "tokenizer": self.tokenizer.config(),
            "labels": self.languages,
        }


class NameGenerationDataModule(NamesDataModule):
    """The same names and split for a conditional character model (the tutorial's part two).

    Each name becomes ``<s> n a m e </s>``; the task reads it shifted by one, conditioned on the
    language (`labels`), and learns where names end. The vocabulary gains `<s>` and `</s>`.
    """

    def build_vocab(self, tokenized: Iterable[list[str]]) -> Vocabulary:
        return Vocabulary.build(tokenized, specials=(BOS, EOS))

    def encode(self, name: str) -> list[int]:
        return self.vocab.encode([BOS, *self.tokenizer(name), EOS])

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        # class counts drive a classifier's loss weights; a language model has no use for them
        self._spec = replace(self.spec, class_counts=())
