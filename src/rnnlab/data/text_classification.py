"""Any text-classification data set, by config alone (`data=text`; IMDb is a preset of it).

The source is what `datasets.load_dataset` takes: a hub id (`data.path=stanfordnlp/imdb`, or
`data.path=glue data.name=sst2`), a packaged builder with its files
(`data.path=csv data.data_files=...`, also `json` and `parquet`), or a local folder or file.
A hub data set is read from a local copy first when `data.data_dir` (default
`$RNNLAB_DATA_DIR`) holds one: `<split>.parquet` files in `data_dir` itself or in its
sub-folder named after the data set (`imdb/` for `stanfordnlp/imdb`, `glue/sst2/` for GLUE's
SST-2), as the hub's parquet export names them.

Splits: `data.train_split` must exist. Validation is `data.validation_split` (null: the
source's `validation` split if it has one), else carved from train (seeded and stratified, by
`datasets`' `train_test_split`). The test split is `data.test_split` (null: `test` if the
source has one); one without labels (GLUE's are all -1) or none at all is skipped with one log
line, and `rnnlab.train` then reports the best checkpoint's validation metrics instead.

Labels may be integers, `ClassLabel`s or strings: class names come from the features, else
`data.label_names` (integer labels 0..n-1), else the sorted training values. Tokens are words
or characters (`data.level`); a second text column (`data.text_pair_column`) is appended after
a `<sep>` token, for sentence pairs.

`prepare_data` tokenises, builds the vocabulary from the training part only, and writes the
token ids as Arrow files keyed by every setting they depend on (and by the size and time of
local source files); a second run reads them back and skips tokenisation. The cache is built
once under a lock and renamed into place, its row counts checked on every read
(`storage.load_or_build`). The vocabulary and class names travel with the checkpoint
(`state_dict`).
"""

from __future__ import annotations

import glob
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datasets.packaged_modules import _EXTENSION_TO_MODULE, _PACKAGED_DATASETS_MODULES
from torch.utils.data import DataLoader

from rnnlab.data.base import SequenceDataModule
from rnnlab.data.collate import SequenceDataset
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import StaleCacheError, load_or_build
from rnnlab.data.text import find_local, list_column_to_tensors, settings_key
from rnnlab.data.tokenizers import CharTokenizer, Vocabulary, WordTokenizer
from rnnlab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

SEP = "<sep>"  # between the two texts of a sentence pair
LEVELS = ("word", "char")
# labels that mark an unlabelled example (GLUE's test splits hold -1 throughout)
MISSING_LABELS = (-1, None)


def check_parquet_rows(path: Path) -> None:
    """A readable parquet file with rows, or an error naming it (datasets names neither)."""
    try:
        rows = pq.ParquetFile(path).metadata.num_rows
    except (OSError, pa.ArrowException) as error:
        raise ConfigError(
            f"{path} is not a readable parquet file ({error}): replace it with the hub's "
            "parquet file (data.data_dir)"
        ) from error
    if rows == 0:
        raise ConfigError(
            f"{path} holds no rows: replace it with the hub's parquet file (data.data_dir)"
        )


def file_signature(paths: Sequence[str | Path]) -> list[list]:
    """(path, size, modification time) of the local files among `paths` (glob patterns
    expanded, folders walked), so a cache built from a file is not read after it changes."""
    signature = []
    for pattern in map(str, paths):
        for path in map(Path, sorted(glob.glob(pattern, recursive=True))):
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
            for file in files:
                stat = file.stat()
                signature.append([str(file.resolve()), stat.st_size, stat.st_mtime_ns])
    return signature


def plain_files(data_files: Any) -> str | list[str] | dict[str, Any] | None:
    """A `data_files` value (a path, a list, or split -> either; Hydra gives its own
    containers) as plain Python, as `datasets.load_dataset` and the cache key take it."""
    if data_files is None or isinstance(data_files, str):
        return data_files
    if isinstance(data_files, Mapping):
        return {str(split): plain_files(value) for split, value in data_files.items()}
    return [str(path) for path in data_files]


def flat_files(data_files: str | list | dict | None) -> list[str]:
    """Every path named in a plain `data_files` value."""
    if data_files is None:
        return []
    if isinstance(data_files, str):
        return [data_files]
    if isinstance(data_files, dict):
        return [path for value in data_files.values() for path in flat_files(value)]
    return list(data_files)


class TextClassificationDataModule(SequenceDataModule):
    """Texts and their classes from any `datasets` source, with a train-only vocabulary, cached
    ids and length bucketing."""

    cache_prefix = "text"  # the cache folder's name starts with it

    def __init__(
        self,
        path: str | None = None,
        name: str | None = None,
        data_files: str | Sequence[str] | Mapping[str, Any] | None = None,
        data_dir: str | None = None,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        label_names: Sequence[str] | None = None,
        train_split: str = "train",
        validation_split: str | None = None,
        test_split: str | None = None,
        level: str = "word",
        lowercase: bool = True,
        cache_dir: str = "outputs/cache",
        val_fraction: float = 0.1,
        vocab_size: int = 30000,
        min_freq: int = 2,
        max_len: int | None = None,
        **loader_kwargs: Any,
    ) -> None:
        super().__init__(**loader_kwargs)
        if level not in LEVELS:
            raise ConfigError(f"data.level must be one of {list(LEVELS)}, got {level!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        if max_len is not None and max_len < 1:
            raise ConfigError(f"data.max_len must be >= 1 or null, got {max_len}")
        if label_names is not None and len(set(label_names)) != len(label_names):
            raise ConfigError(f"data.label_names must not repeat a name, got {list(label_names)}")
        self.path = path
        self.name = name
        self.data_files = plain_files(data_files)
        self.data_dir = data_dir
        self.text_column = text_column
        self.text_pair_column = text_pair_column
        self.label_column = label_column
        self.label_names = list(label_names) if label_names is not None else None
        self.train_split = train_split
        self.validation_split = validation_split
        self.test_split = test_split
        self.cache_dir = Path(cache_dir)
        self.val_fraction = val_fraction
        self.max_vocab = vocab_size
        self.min_freq = min_freq
        self.max_len = max_len
        self.tokenizer = WordTokenizer(lowercase=lowercase) if level == "word" else CharTokenizer()
        self.vocab: Vocabulary | None = None
        self.labels: list[str] = []

    # --- where the data comes from

    @property
    def source(self) -> str:
        """The source in the user's words, for messages."""
        words = f"data.path={self.path!r}"
        if self.name:
            words += f" data.name={self.name!r}"
        if self.data_files is not None:
            words += f" data.data_files={self.data_files!r}"
        return words

    def looks_local(self) -> bool:
        """`data.path` names a file or folder (a hub id has at most one slash)."""
        return self.path.startswith(("/", ".", "~")) or self.path.count("/") > 1

    def is_hub_id(self) -> bool:
        """A hub id, not a packaged builder, local path or set of files."""
        return (
            self.data_files is None
            and self.path not in _PACKAGED_DATASETS_MODULES
            and not self.looks_local()
            and not Path(self.path).exists()
        )

    @property
    def local_name(self) -> str:
        """The folder under `data.data_dir` a hub data set's copy sits in: `imdb` for
        `stanfordnlp/imdb`, `glue/sst2` for `glue` with `data.name=sst2`."""
        return self.path.rstrip("/").rsplit("/", 1)[-1] + (f"/{self.name}" if self.name else "")

    def local_copy(self) -> Path | None:
        """The folder of `<split>.parquet` files standing in for a hub data set, or None."""
        if not self.is_hub_id():
            return None
        return find_local(self.data_dir, self.local_name, f"{self.train_split}.parquet")

    def load_local_copy(self, local: Path) -> datasets.DatasetDict:
        """The local copy's splits, one parquet file each."""
        files = {
            split: local / f"{split}.parquet"
            for split in (self.train_split, self.validation_split or "validation")
            + (self.test_split or "test",)
            if (local / f"{split}.parquet").is_file()
        }
        for path in files.values():
            check_parquet_rows(path)
        # One split at a time, so a file with other columns gets our message, not a cast error.
        return datasets.DatasetDict(
            {
                split: datasets.load_dataset(
                    "parquet", data_files=str(path), split="train", cache_dir=str(self.cache_dir)
                )
                for split, path in files.items()
            }
        )

    def load_source(self) -> datasets.DatasetDict:
        """Every split of the source: the local copy, else `datasets.load_dataset`."""
        local = self.local_copy()
        if local is not None:
            return self.load_local_copy(local)
        if self.looks_local() and not Path(self.path).expanduser().exists():
            raise MissingFileError(f"data.path={self.path!r} does not exist")
        path, data_files, options = self.path, self.data_files, {}
        file = Path(self.path).expanduser()
        if data_files is None and file.is_file():
            # datasets reads a folder or a hub id, not one file: the builder of its extension
            if file.suffix not in _EXTENSION_TO_MODULE:
                raise ConfigError(
                    f"data.path={self.path!r}: a file of unknown kind; name its builder "
                    f"(data.path=csv data.data_files={self.path})"
                )
            (path, options), data_files = _EXTENSION_TO_MODULE[file.suffix], str(file)
        try:
            raw = datasets.load_dataset(
                path, self.name, data_files=data_files, cache_dir=str(self.cache_dir), **options
            )
        except Exception as error:  # offline, a wrong id or config name, unreadable files
            if not self.is_hub_id():
                # datasets wraps a reader's error (an empty file, say) in a generic one
                cause = f" ({error.__cause__})" if error.__cause__ else ""
                raise ConfigError(
                    f"could not read {self.source}: {type(error).__name__}: {error}{cause}"
                ) from error
            where = f"data.data_dir={self.data_dir!r} has no copy; " if self.data_dir else ""
            raise MissingFileError(
                f"could not load {self.source}: {where}the hub failed with "
                f"{type(error).__name__}: {error}. Point data.data_dir (or the RNNLAB_DATA_DIR "
                f"environment variable) at a folder holding {self.local_name}/"
                f"{self.train_split}.parquet (one <split>.parquet per split), or connect to the "
                "Hugging Face hub."
            ) from error
        if not isinstance(raw, datasets.DatasetDict):
            raise ConfigError(f"{self.source} gave {type(raw).__name__}, not a set of splits")
        return raw

    # --- splits, columns and labels

    def pick_splits(self, raw: datasets.DatasetDict) -> dict[str, datasets.Dataset | str | None]:
        """train, val and test parts of the source; val None: carve it from train; test a
        string: why there is none."""
        found = list(raw)

        def named(key: str, split: str) -> datasets.Dataset:
            if split not in raw:
                raise ConfigError(
                    f"data.{key}={split!r} is not a split of {self.source}; its splits: {found}"
                )
            return raw[split]

        parts: dict[str, datasets.Dataset | str | None] = {
            "train": named("train_split", self.train_split)
        }
        if self.validation_split is not None:
            parts["val"] = named("validation_split", self.validation_split)
        else:
            parts["val"] = raw.get("validation")
        if self.test_split is not None:
            parts["test"] = named("test_split", self.test_split)
        else:
            parts["test"] = raw.get("test", f"the source has no 'test' split (splits: {found})")
        return parts

    def check_columns(self, split: str, part: datasets.Dataset) -> None:
        columns = part.column_names
        keys = {"text_column": self.text_column, "label_column": self.label_column}
        if self.text_pair_column is not None:
            keys["text_pair_column"] = self.text_pair_column
        for key, column in keys.items():
            if column not in columns:
                raise ConfigError(
                    f"the {split} split of {self.source} lacks column data.{key}={column!r}; "
                    f"its columns: {columns}"
                )

    def check_missing_labels(self, split: str, part: datasets.Dataset) -> None:
        """An error for a labelled split with empty labels (a CSV's integer label column with
        one empty cell reads as floats, which the dtype check would blame instead)."""
        column = part.data.table.column(self.label_column)
        missing = pc.is_null(column, nan_is_null=True).to_numpy(zero_copy_only=False)
        if not missing.any() or (split == "test" and missing.all()):
            return  # an unlabelled test split is skipped later
        raise ConfigError(
            f"the {split} split of {self.source} has {int(missing.sum())} missing "
            f"data.label_column={self.label_column!r} values, the first in row "
            f"{int(missing.argmax())}: fill or drop them"
        )

    def class_names(self, train: datasets.Dataset) -> tuple[list[str], dict | None]:
        """The class names, and the map from label values to class ids (None: the values
        are the ids already)."""
        feature = train.features[self.label_column]
        key = f"data.label_column={self.label_column!r}"
        if isinstance(feature, datasets.ClassLabel):
            if self.label_names is not None and len(self.label_names) != feature.num_classes:
                raise ConfigError(
                    f"data.label_names has {len(self.label_names)} names, but {key} has "
                    f"{feature.num_classes} classes ({feature.names})"
                )
            return self.label_names or list(feature.names), None
        dtype = getattr(feature, "dtype", str(feature))
        if dtype.startswith(("float", "double")):
            raise ConfigError(
                f"{key} holds {dtype} values: classification needs integer, string or "
                "ClassLabel labels (a score column is a regression target)"
            )
        if not dtype.startswith(("int", "uint", "string", "large_string", "bool")):
            raise ConfigError(f"{key} holds {dtype} values, not integer or string labels")
        if self.label_names is not None:
            if dtype.startswith(("string", "large_string")):
                return self.label_names, {name: i for i, name in enumerate(self.label_names)}
            return self.label_names, None  # integer labels are the class ids
        values = sorted(set(train.unique(self.label_column)) - set(MISSING_LABELS))
        return [str(value) for value in values], {value: i for i, value in enumerate(values)}

    def encode_labels(
        self, split: str, part: datasets.Dataset, names: list[str], to_id: dict | None
    ) -> datasets.Dataset | None:
        """`part` with its labels as class ids of a ClassLabel column (stratifying needs one);
        None for a test split without labels."""
        values = part.unique(self.label_column)
        known = set(range(len(names))) if to_id is None else set(to_id)
        unknown = sorted(set(values) - known, key=str)
        if split == "test" and all(value in MISSING_LABELS for value in values):
            return None
        if unknown:
            what = "0.." + str(len(names) - 1) if to_id is None else "the training values"
            raise ConfigError(
                f"the {split} split's data.label_column={self.label_column!r} has labels "
                f"{unknown}, outside {what} (classes {names}; data.label_names)"
            )
        if to_id is not None:
            column = self.label_column
            part = part.map(
                lambda batch: {column: [to_id[value] for value in batch[column]]},
                batched=True,
                desc=f"class ids of {split}",
                load_from_cache_file=False,
            )
        feature = part.features[self.label_column]
        if isinstance(feature, datasets.ClassLabel) and feature.names == names:
            return part
        return part.cast_column(self.label_column, datasets.ClassLabel(names=names))

    # --- the cache

    def cache_key(self) -> str:
        local = self.local_copy()
        if local is not None:
            files = [local]
        elif self.data_files is not None:
            files = flat_files(self.data_files)
        else:  # a local folder or file; a hub id or builder name matches no file
            files = [] if self.path in _PACKAGED_DATASETS_MODULES else [self.path]
        return settings_key(
            {
                "source": str(local or [self.path, self.name, self.data_files]),
                "files": file_signature(files),
                "columns": [self.text_column, self.text_pair_column, self.label_column],
                "label_names": self.label_names,
                "splits": [self.train_split, self.validation_split, self.test_split],
                "tokenizer": self.tokenizer.config(),
                "vocab_size": self.max_vocab,
                "min_freq": self.min_freq,
                "val_fraction": self.val_fraction,
                "seed": self.seed,
                # the library draws the validation part: another version may draw another one
                "split": f"datasets {datasets.__version__} train_test_split(stratify_by_column)",
            }
        )

    @property
    def cache_path(self) -> Path:
        return self.cache_dir / f"{self.cache_prefix}-{self.cache_key()}"

    def prepare_data(self) -> None:
        """Tokenise and encode once, in the process that comes first; the others wait, then read."""
        self.read_cache()

    def read_cache(self) -> tuple[Vocabulary, dict[str, datasets.Dataset], dict]:
        """The vocabulary, encoded splits and manifest, built first if absent or damaged."""
        if not self.path:  # checked here, not in __init__: every data config instantiates bare
            raise ConfigError(
                "data.path is required: a hub id (data.path=glue data.name=sst2), a builder "
                "with its files (data.path=csv data.data_files=...), or a local folder or file"
            )
        return load_or_build(self.cache_path, self.build_cache, self.load_cache)

    def split_parts(self, raw: datasets.DatasetDict) -> tuple[datasets.DatasetDict, dict]:
        """The train / val / test parts with class-id labels, and what the manifest says of
        them (class names, where validation came from, why test is absent)."""
        chosen = self.pick_splits(raw)
        for split, part in chosen.items():
            if isinstance(part, datasets.Dataset):
                self.check_columns(split, part)
        columns = [self.text_column, self.text_pair_column, self.label_column]
        parts = {
            split: part.select_columns([c for c in columns if c is not None])
            for split, part in chosen.items()
            if isinstance(part, datasets.Dataset)
        }
        if len(parts["train"]) == 0:
            raise ConfigError(f"data.train_split={self.train_split!r} of {self.source} is empty")
        for split, part in parts.items():
            self.check_missing_labels(split, part)
        names, to_id = self.class_names(parts["train"])
        if len(names) < 2:
            raise ConfigError(
                f"data.label_column={self.label_column!r} holds one class ({names}) in the "
                f"training split: classification needs two or more"
            )
        # what the manifest keeps for every later run's log: where validation came from, and
        # why there is no test part
        notes = {"labels": names, "carved": None, "test": None}
        for split in list(parts):
            encoded = self.encode_labels(split, parts[split], names, to_id)
            if encoded is None:
                del parts[split]
                notes["test"] = f"the test split {self.test_split or 'test'!r} has no labels"
            else:
                parts[split] = encoded
        if isinstance(chosen["test"], str):
            notes["test"] = chosen["test"]
        if "val" not in parts:
            notes["carved"] = f"data.val_fraction={self.val_fraction} of the training split"
            try:
                held_out = parts["train"].train_test_split(
                    test_size=self.val_fraction,
                    stratify_by_column=self.label_column,
                    seed=self.seed,
                    load_from_cache_file=False,
                )
            except ValueError as error:  # too few examples of a class for both parts
                raise ConfigError(
                    f"the {len(parts['train'])} training examples cannot give "
                    f"data.val_fraction={self.val_fraction} of each label to validation "
                    f"({error}): raise data.val_fraction, or use more examples"
                ) from error
            parts["train"], parts["val"] = held_out["train"], held_out["test"]
        order = [split for split in ("train", "val", "test") if split in parts]
        return datasets.DatasetDict({split: parts[split] for split in order}), notes

    def build_cache(self, folder: Path) -> dict:
        """Tokenise, build the vocabulary and write the encoded splits into `folder`."""
        started = time.perf_counter()
        parts, notes = self.split_parts(self.load_source())
        tokenize, first, second = self.tokenizer, self.text_column, self.text_pair_column

        def tokenize_batch(batch):  # a missing text (None) is an empty one
            if second is None:
                return {"tokens": [tokenize(text or "") for text in batch[first]]}
            return {
                "tokens": [
                    [*tokenize(a or ""), SEP, *tokenize(b or "")]
                    for a, b in zip(batch[first], batch[second], strict=True)
                ]
            }

        texts = [column for column in (first, second) if column is not None]
        parts = parts.map(
            tokenize_batch,
            batched=True,
            remove_columns=texts,
            desc="tokenising",
            load_from_cache_file=False,
        )
        specials = (SEP,) if second is not None else ()
        vocab = Vocabulary.build(parts["train"]["tokens"], self.max_vocab, self.min_freq, specials)

        def encode_batch(batch):
            return {"input_ids": [vocab.encode(tokens) for tokens in batch["tokens"]]}

        rows = {}
        for name, part in parts.items():
            encoded = part.map(
                encode_batch,
                batched=True,
                remove_columns=["tokens"],
                desc=f"encoding {name}",
                load_from_cache_file=False,
            )
            encoded.select_columns(["input_ids", self.label_column]).save_to_disk(
                str(folder / name)
            )
            rows[name] = len(encoded)
        vocab.save(folder / "vocab.json")
        log.info(
            "%s tokenised and encoded in %.1f s into %s",
            self.source,
            time.perf_counter() - started,
            self.cache_path,
        )
        return {"rows": rows, "vocab_size": len(vocab), **notes}

    @staticmethod
    def load_cache(
        folder: Path, manifest: dict
    ) -> tuple[Vocabulary, dict[str, datasets.Dataset], dict]:
        """Read a cache and check it against its manifest (an Arrow file cut at a record batch
        boundary loads without error, only shorter)."""
        vocab = Vocabulary.load(folder / "vocab.json")
        if len(vocab) != manifest["vocab_size"]:
            raise StaleCacheError(
                f"{folder / 'vocab.json'} holds {len(vocab)} tokens, not {manifest['vocab_size']}"
            )
        parts = {}
        for name, rows in manifest["rows"].items():
            parts[name] = datasets.load_from_disk(str(folder / name))
            if len(parts[name]) != rows:
                raise StaleCacheError(
                    f"{folder / name} holds {len(parts[name])} rows, not {rows}: delete {folder} "
                    "to rebuild it"
                )
        return vocab, parts, manifest

    # --- the datamodule contract

    def encoded_split(self, name: str, part: datasets.Dataset) -> SequenceDataset:
        table = part.data.table
        sequences = list_column_to_tensors(table.column("input_ids"))
        labels = table.column(self.label_column).to_numpy()
        keep = [i for i, sequence in enumerate(sequences) if len(sequence) > 0]
        if len(keep) < len(sequences):
            log.warning(
                "%s %s: dropped %d example(s) that tokenise to nothing",
                self.source,
                name,
                len(sequences) - len(keep),
            )
        if self.max_len is not None:
            sequences = [sequence[: self.max_len] for sequence in sequences]
        return SequenceDataset([sequences[i] for i in keep], labels[keep])

    def build(self) -> DataSpec:
        self.vocab, parts, manifest = self.read_cache()
        self.labels = list(manifest["labels"])
        self.datasets = {split: self.encoded_split(split, part) for split, part in parts.items()}
        if len(self.train_set) == 0:
            raise ConfigError(
                f"every text of data.train_split={self.train_split!r} of {self.source} "
                f"tokenises to nothing: check data.text_column={self.text_column!r}"
            )
        if manifest["carved"]:
            log.info("validation: %s (the source has no validation split)", manifest["carved"])
        if manifest["test"]:
            log.info("test split skipped: %s; the run reports validation metrics", manifest["test"])
        return DataSpec(
            vocab_size=len(self.vocab),
            num_classes=len(self.labels),
            pad_id=Vocabulary.pad_id,
            labels=tuple(self.labels),
            class_counts=self.train_set.class_counts(len(self.labels)),
        )

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            raise ConfigError(
                f"{self.source} has no labelled test split (data.test_split): validate instead"
            )
        return super().test_dataloader()

    def data_state(self) -> dict:
        """What prediction needs to encode new text exactly (the seed chose the training part
        the vocabulary comes from)."""
        state = {
            "vocab": self.vocab.tokens if self.vocab else None,
            "tokenizer": self.tokenizer.config(),
            "labels": list(self.labels),
            "max_len": self.max_len,
        }
        if self.text_pair_column is not None:
            state["text_pair_separator"] = SEP
        return state
