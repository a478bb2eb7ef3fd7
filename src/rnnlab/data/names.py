"""Surnames in 18 languages (the PyTorch tutorial's data): classify a name's language by character.

One UTF-8 file per language, one name per line, the file's stem is the label; only the
tutorial's 18 languages are read (`+data.languages=[...]` for others), other files are named
in the log and left out. Local copy: `data.data_dir` (or `$RNNLAB_DATA_DIR`) holding
`names/*.txt`; otherwise the tutorial's `data.zip` is downloaded and unpacked into the cache,
once, under a lock.

Honest protocol: (name, language) pairs are de-duplicated first (Arabic has 2,000 lines but
108 distinct names), then split by *name*, stratified by language, so no test name is seen in
training, not even under another language.
"""

from __future__ import annotations

import logging
import zipfile
from collections import Counter
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rnnlab.data.base import SequenceDataModule
from rnnlab.data.collate import SequenceDataset
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import download, load_or_build
from rnnlab.data.text import find_local
from rnnlab.data.tokenizers import BOS, EOS, CharTokenizer, Vocabulary
from rnnlab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

NAMES_URL = "https://download.pytorch.org/tutorial/data.zip"
# the tutorial's files; `+data.languages=[...]` replaces them for another collection
LANGUAGES = (
    "Arabic",
    "Chinese",
    "Czech",
    "Dutch",
    "English",
    "French",
    "German",
    "Greek",
    "Irish",
    "Italian",
    "Japanese",
    "Korean",
    "Polish",
    "Portuguese",
    "Russian",
    "Scottish",
    "Spanish",
    "Vietnamese",
)


def read_name_files(folder: Path, languages: Collection[str] = LANGUAGES) -> list[tuple[str, str]]:
    """(name, language) pairs from `folder/<language>.txt`; blank lines dropped and counted.

    Other files (a README.txt, notes) are not languages: they are left out and named in the log.
    """
    found = sorted(folder.glob("*.txt"))
    files = [path for path in found if path.stem in languages]
    others = [path.name for path in found if path.stem not in languages]
    if not files:
        raise MissingFileError(
            f"{folder} holds no name files of the expected languages (found: "
            f"{[path.name for path in found]}): add <Language>.txt files, e.g. English.txt, or "
            "list your languages with +data.languages=[...]"
        )
    if others:
        log.warning(
            "names: left out %s in %s: not a language of data.languages (+data.languages=[...] "
            "takes others)",
            ", ".join(others),
            folder,
        )
    log.info("names: %d language files from %s", len(files), folder)
    pairs, blank = [], 0
    for path in files:
        data = path.read_bytes()
        try:
            text = data.decode("utf-8-sig")  # an editor's byte-order mark is not a character
        except UnicodeDecodeError as error:
            line = data[: error.start].count(b"\n") + 1
            raise ConfigError(
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
    """The tutorial's data.zip, downloaded into the cache and unpacked there once; the names
    folder. An archive that does not unpack (a damaged download) is removed, so the next run
    downloads it afresh."""
    archive = cache_dir / "names-tutorial.zip"

    def build(folder: Path) -> dict:
        download(NAMES_URL, archive, local_hint="names/*.txt")
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(folder)
        except (OSError, zipfile.BadZipFile) as error:
            archive.unlink(missing_ok=True)
            raise MissingFileError(
                f"{archive}, downloaded from {NAMES_URL}, does not unpack ({error}); it was "
                "removed: run again to download it afresh, or point data.data_dir at a folder "
                "holding names/*.txt"
            ) from error
        return {"files": sorted(path.name for path in (folder / "data" / "names").glob("*.txt"))}

    def load(folder: Path, manifest: dict) -> Path:
        names = folder / "data" / "names"
        missing = [name for name in manifest["files"] if not (names / name).is_file()]
        if missing:
            raise MissingFileError(f"{names} lacks {missing}")
        return names

    return load_or_build(cache_dir / "names-tutorial", build, load)


def group_split(
    pairs: list[tuple[str, str]], fractions: tuple[float, float], seed: int
) -> dict[str, list[int]]:
    """Indices of train / val / test: split by distinct name, stratified by the name's language.

    A name listed under several languages is stratified under the rarest of them and goes,
    with all its pairs, to one split. Hand-written because no library call does both:
    `datasets`' `train_test_split(stratify_by_column=...)` stratifies rows but cannot keep a
    group (a name) together; scikit-learn's `StratifiedGroupKFold` (not a dependency) gives
    only folds of 1/k each, not `data.val_fraction` and `data.test_fraction`.
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
        languages: Sequence[str] = LANGUAGES,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        if val_fraction <= 0 or test_fraction <= 0 or val_fraction + test_fraction >= 1:
            raise ConfigError("data.val_fraction and data.test_fraction must be > 0 with a sum < 1")
        self.expected_languages = tuple(languages)
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
        if self.data_dir is None:
            return download_names(self.cache_dir)
        for folder in (Path(self.data_dir) / "names", Path(self.data_dir)):
            if folder.name == "names" and folder.is_dir():
                raise MissingFileError(
                    f"{folder} holds no <Language>.txt name files: add them, or point "
                    "data.data_dir elsewhere (unset, the tutorial's names are downloaded)"
                )
        log.warning("no names/*.txt under data.data_dir=%r: downloading them", self.data_dir)
        return download_names(self.cache_dir)

    def prepare_data(self) -> None:
        self.source_folder()

    def build(self) -> DataSpec:
        raw = read_name_files(self.source_folder(), self.expected_languages)
        self.pairs = sorted(set(raw))
        log.info("names: %d lines, %d distinct (name, language) pairs", len(raw), len(self.pairs))
        self.languages = sorted({language for _, language in self.pairs})
        label_of = {language: i for i, language in enumerate(self.languages)}
        self.split_index = group_split(self.pairs, self.fractions, self.seed)
        train_pairs = [self.pairs[i] for i in self.split_index["train"]]
        self.vocab = self.build_vocab(self.tokenizer(name) for name, _ in train_pairs)
        for split, indices in self.split_index.items():
            sequences = [torch.tensor(self.encode(self.pairs[i][0])) for i in indices]
            labels = [label_of[self.pairs[i][1]] for i in indices]
            self.datasets[split] = SequenceDataset(sequences, labels)
        return DataSpec(
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

    def data_state(self) -> dict:
        """The vocabulary (from the split the seed chose), tokeniser and languages."""
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

    def build(self) -> DataSpec:
        # class counts drive a classifier's loss weights; a language model has no use for them,
        # but needs the vocabulary and tokeniser to turn samples into names and prompts into ids
        return replace(
            super().build(),
            class_counts=(),
            tokens=tuple(self.vocab.tokens),
            tokenizer=self.tokenizer.config(),
        )
