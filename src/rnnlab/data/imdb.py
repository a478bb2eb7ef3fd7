"""IMDb sentiment (Maas et al. 2011): 25,000 train and 25,000 test reviews, word level.

Loaded with Hugging Face `datasets`, from a local folder of the hub's parquet files
(`data.data_dir`, defaulting to `$RNNLAB_DATA_DIR`) or from the hub (`stanfordnlp/imdb`).
Validation is carved from train (seeded and stratified, by `datasets`' `train_test_split`); the
test split is used only for testing.

`prepare_data` tokenises, builds the vocabulary from the training part only, and writes the
token ids as Arrow files keyed by every setting they depend on; a second run reads them back
and skips tokenisation. The cache is built once under a lock and renamed into place, its row
counts checked on every read (`storage.load_or_build`). The vocabulary travels with the
checkpoint (`state_dict`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq

from rnnlab.data.base import SPLITS, SequenceDataModule
from rnnlab.data.collate import SequenceDataset
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import StaleCacheError, load_or_build
from rnnlab.data.text import find_local, list_column_to_tensors, settings_key
from rnnlab.data.tokenizers import Vocabulary, WordTokenizer
from rnnlab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

LABELS = ("neg", "pos")
SOURCE_SPLITS = ("train", "test")  # the published splits; val is carved from train


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


def load_imdb(
    data_dir: str | Path | None, hub_id: str, cache_dir: str | Path
) -> datasets.DatasetDict:
    """Train and test splits from a local parquet copy, else the hub; a clear error if neither."""
    local = find_local(data_dir, "imdb", "train.parquet")
    if local is not None:
        files = {split: str(local / f"{split}.parquet") for split in SOURCE_SPLITS}
        missing = [path for path in files.values() if not Path(path).is_file()]
        if missing:
            raise MissingFileError(f"IMDb copy in {local} lacks {missing} (data.data_dir)")
        for path in files.values():
            check_parquet_rows(Path(path))
        # One split at a time, so a file with other columns gets our message, not a cast error.
        raw = datasets.DatasetDict(
            {
                split: datasets.load_dataset(
                    "parquet", data_files=path, split="train", cache_dir=str(cache_dir)
                )
                for split, path in files.items()
            }
        )
    else:
        try:
            raw = datasets.load_dataset(hub_id, cache_dir=str(cache_dir))
        except Exception as error:  # offline, hub down, or a wrong id: name both fixes
            where = f"data.data_dir={data_dir!r} has no train.parquet; " if data_dir else ""
            raise MissingFileError(
                f"could not load IMDb: {where}the hub ({hub_id!r}, data.hub_id) failed with "
                f"{type(error).__name__}: {error}. Point data.data_dir (or the RNNLAB_DATA_DIR "
                "environment variable) at a folder with train.parquet and test.parquet, or "
                "connect to the Hugging Face hub."
            ) from error
    for split in SOURCE_SPLITS:
        if split not in raw:
            raise ConfigError(f"IMDb source has no {split!r} split (data.data_dir / data.hub_id)")
        missing = {"text", "label"} - set(raw[split].column_names)
        if missing:
            raise ConfigError(
                f"IMDb {split} split lacks column(s) {sorted(missing)}; "
                f"found {raw[split].column_names} (data.data_dir / data.hub_id)"
            )
    return raw


class ImdbDataModule(SequenceDataModule):
    """Word-level IMDb with a train-only vocabulary, cached ids and length bucketing."""

    def __init__(
        self,
        data_dir: str | None = None,
        hub_id: str = "stanfordnlp/imdb",
        cache_dir: str = "outputs/cache",
        val_fraction: float = 0.1,
        vocab_size: int = 30000,
        min_freq: int = 2,
        lowercase: bool = True,
        max_len: int | None = None,
        **loader_kwargs,
    ) -> None:
        super().__init__(**loader_kwargs)
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        if max_len is not None and max_len < 1:
            raise ConfigError(f"data.max_len must be >= 1 or null, got {max_len}")
        self.data_dir = data_dir
        self.hub_id = hub_id
        self.cache_dir = Path(cache_dir)
        self.val_fraction = val_fraction
        self.max_vocab = vocab_size
        self.min_freq = min_freq
        self.max_len = max_len
        self.tokenizer = WordTokenizer(lowercase=lowercase)
        self.vocab: Vocabulary | None = None

    def cache_key(self) -> str:
        return settings_key(
            {
                "source": str(find_local(self.data_dir, "imdb", "train.parquet") or self.hub_id),
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
        return self.cache_dir / f"imdb-{self.cache_key()}"

    def prepare_data(self) -> None:
        """Tokenise and encode once, in the process that comes first; the others wait, then read."""
        self.read_cache()

    def read_cache(self) -> tuple[Vocabulary, dict[str, datasets.Dataset]]:
        """The vocabulary and encoded splits, built first if the cache is absent or damaged."""
        return load_or_build(self.cache_path, self.build_cache, self.load_cache)

    def build_cache(self, folder: Path) -> dict:
        """Tokenise, build the vocabulary and write the encoded splits into `folder`."""
        started = time.perf_counter()
        raw = load_imdb(self.data_dir, self.hub_id, self.cache_dir)
        for split in SOURCE_SPLITS:
            unknown = sorted(set(raw[split].unique("label")) - {0, 1})
            if unknown:
                raise ConfigError(f"IMDb {split} split has labels {unknown}; expected 0 and 1")
        # stratifying needs a ClassLabel column (the hub's has one, a parquet copy's may not)
        raw = raw.cast_column("label", datasets.ClassLabel(names=list(LABELS)))
        try:
            held_out = raw["train"].train_test_split(
                test_size=self.val_fraction,
                stratify_by_column="label",
                seed=self.seed,
                load_from_cache_file=False,
            )
        except ValueError as error:  # too few reviews of a label for both parts
            raise ConfigError(
                f"IMDb's {len(raw['train'])} training reviews cannot give "
                f"data.val_fraction={self.val_fraction} of each label to validation ({error}): "
                "raise data.val_fraction, or use more reviews"
            ) from error
        tokenize = self.tokenizer

        def tokenize_batch(batch):
            return {"tokens": [tokenize(text) for text in batch["text"]]}

        parts = datasets.DatasetDict(
            train=held_out["train"], val=held_out["test"], test=raw["test"]
        ).map(
            tokenize_batch,
            batched=True,
            remove_columns=["text"],
            desc="tokenising",
            load_from_cache_file=False,
        )
        vocab = Vocabulary.build(parts["train"]["tokens"], self.max_vocab, self.min_freq)

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
            encoded.select_columns(["input_ids", "label"]).save_to_disk(str(folder / name))
            rows[name] = len(encoded)
        vocab.save(folder / "vocab.json")
        log.info(
            "IMDb tokenised and encoded in %.1f s into %s",
            time.perf_counter() - started,
            self.cache_path,
        )
        return {"rows": rows, "vocab_size": len(vocab)}

    @staticmethod
    def load_cache(folder: Path, manifest: dict) -> tuple[Vocabulary, dict[str, datasets.Dataset]]:
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
        return vocab, parts

    def encoded_split(self, name: str, part: datasets.Dataset) -> SequenceDataset:
        table = part.data.table
        sequences = list_column_to_tensors(table.column("input_ids"))
        labels = table.column("label").to_numpy()
        keep = [i for i, sequence in enumerate(sequences) if len(sequence) > 0]
        if len(keep) < len(sequences):
            log.warning(
                "IMDb %s: dropped %d review(s) that tokenise to nothing",
                name,
                len(sequences) - len(keep),
            )
        if self.max_len is not None:
            sequences = [sequence[: self.max_len] for sequence in sequences]
        return SequenceDataset([sequences[i] for i in keep], labels[keep])

    def build(self) -> DataSpec:
        self.vocab, parts = self.read_cache()
        self.datasets = {split: self.encoded_split(split, parts[split]) for split in SPLITS}
        return DataSpec(
            vocab_size=len(self.vocab),
            num_classes=2,
            pad_id=Vocabulary.pad_id,
            labels=LABELS,
            class_counts=self.train_set.class_counts(2),
        )

    def data_state(self) -> dict:
        """What prediction needs to encode new text exactly (the seed chose the training part
        the vocabulary comes from)."""
        return {
            "vocab": self.vocab.tokens if self.vocab else None,
            "tokenizer": self.tokenizer.config(),
            "labels": list(LABELS),
            "max_len": self.max_len,
        }
