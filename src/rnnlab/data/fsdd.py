"""Free Spoken Digit Dataset (FSDD): isolated digits (`data=fsdd`) and connected digits
(`data=fsdd_connected`), from `recordings/{digit}_{speaker}_{index}.wav` (8 kHz mono).

Two protocols pick the test recordings:

    data.test_speaker=null     the dataset's own split: recordings 0-4 of every speaker and digit
    data.test_speaker=<name>   speaker-independent: all of one speaker's recordings, never heard
                               in training or validation

Validation is a seeded `data.val_fraction` of the other recordings. Features of every recording
are computed once and cached, keyed by every setting they depend on (`storage.load_or_build`:
atomic, under a lock); normalisation and frame stacking are applied when the data is built, with
statistics from the training part only.

Connected digits are utterances of `min_digits`..`max_digits` digits, each made by concatenating
recordings of ONE speaker of the split, with short random pauses of faint noise between them::

    | lead | 3_theo_12 | pause | 3_theo_40 | pause | 7_theo_8 | tail |     -> target "337"

They are drawn with `data.compose_seed` (not the run's seed), so every run sees the same
training, validation and test utterances; their features are cached like the recordings'.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from rnnlab.data.audio import FeatureConfig, FeatureExtractor, FramePipeline, read_wav, statistics
from rnnlab.data.base import SPLITS, SequenceDataModule
from rnnlab.data.collate import PadCollate, SequenceDataset
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import StaleCacheError, load_or_build
from rnnlab.data.text import find_local, settings_key
from rnnlab.errors import ConfigError, MissingFileError

log = logging.getLogger(__name__)

LABELS = tuple(str(digit) for digit in range(10))
NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z0-9-]+)_(?P<index>[0-9]+)\.wav$")
OWN_TEST_INDICES = range(5)  # the dataset's own test split: recordings 0-4


@dataclass(frozen=True)
class Recording:
    path: Path
    digit: int
    speaker: str
    index: int


def list_recordings(folder: Path) -> list[Recording]:
    """Every `{digit}_{speaker}_{index}.wav` under `folder`, sorted by name; a wav file named
    otherwise is an error naming it."""
    recordings = []
    for path in sorted(folder.glob("*.wav")):
        match = NAME.match(path.name)
        if match is None:
            raise ConfigError(
                f"{path}: FSDD file names are {{digit}}_{{speaker}}_{{index}}.wav "
                "(e.g. 7_theo_12.wav); rename or remove it"
            )
        recordings.append(
            Recording(path, int(match["digit"]), match["speaker"], int(match["index"]))
        )
    if not recordings:
        raise MissingFileError(f"{folder} holds no .wav recordings (data.data_dir)")
    return recordings


def split_recordings(
    recordings: list[Recording], test_speaker: str | None, val_fraction: float, seed: int
) -> dict[str, list[Recording]]:
    """Train / val / test recordings under the protocol `test_speaker` names (see the module)."""
    speakers = sorted({r.speaker for r in recordings})
    if test_speaker is None:
        test = [r for r in recordings if r.index in OWN_TEST_INDICES]
    elif test_speaker in speakers:
        test = [r for r in recordings if r.speaker == test_speaker]
    else:
        raise ConfigError(
            f"data.test_speaker={test_speaker!r} is not a speaker of the data; the speakers "
            f"are {', '.join(speakers)} (or null: the dataset's own split)"
        )
    held_out = set(test)
    rest = [r for r in recordings if r not in held_out]
    order = torch.randperm(len(rest), generator=torch.Generator().manual_seed(seed)).tolist()
    num_val = max(1, round(val_fraction * len(rest)))
    parts = {
        "train": sorted(order[num_val:]),
        "val": sorted(order[:num_val]),
    }
    splits = {name: [rest[i] for i in indices] for name, indices in parts.items()}
    splits["test"] = test
    for name, part in splits.items():
        if not part:
            raise ConfigError(
                f"the FSDD {name} split is empty ({len(recordings)} recordings, "
                f"data.test_speaker={test_speaker!r}, data.val_fraction={val_fraction})"
            )
    return splits


def save_frames(folder: Path, name: str, frames: list[Tensor]) -> None:
    """Variable-length (T, F) arrays as one concatenated array plus their lengths."""
    np.save(folder / f"{name}.npy", torch.cat(frames).numpy())
    np.save(folder / f"{name}.lengths.npy", np.array([len(f) for f in frames], dtype=np.int64))


def load_frames(folder: Path, name: str, rows: int) -> list[Tensor]:
    """`save_frames`'s arrays back, checked against the manifest's row count."""
    joined = torch.from_numpy(np.load(folder / f"{name}.npy"))
    lengths = np.load(folder / f"{name}.lengths.npy").tolist()
    if len(lengths) != rows or sum(lengths) != len(joined):
        raise StaleCacheError(f"{folder / name}.npy does not match its manifest")
    return list(torch.split(joined, lengths))


class ConnectedDataset(Dataset):
    """Utterances as (T, F) steps, each with its digit string."""

    def __init__(self, frames: list[Tensor], digits: list[str]) -> None:
        self.frames = frames
        self.digits = digits
        self.lengths = torch.tensor([len(f) for f in frames], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> tuple[Tensor, str]:
        return self.frames[index], self.digits[index]


def collate_connected(examples: list[tuple[Tensor, str]]) -> dict[str, Tensor]:
    """`inputs` (B, T, F) right-padded with zeros, `lengths` (B,), `targets` (B, S) digits
    right-padded with 0, `target_lengths` (B,)."""
    frames, digits = zip(*examples, strict=True)
    targets = [torch.tensor([int(d) for d in text], dtype=torch.long) for text in digits]
    return {
        "inputs": pad_sequence(list(frames), batch_first=True),
        "lengths": torch.tensor([len(f) for f in frames], dtype=torch.long),
        "targets": pad_sequence(targets, batch_first=True),
        "target_lengths": torch.tensor([len(t) for t in targets], dtype=torch.long),
    }


class FSDDBase(SequenceDataModule):
    """What both FSDD tasks share: the recordings, the protocol, features and their state."""

    kind = ""  # what the cache holds: "recordings" or "connected"

    def __init__(
        self,
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        features: dict[str, Any] | None = None,
        normalisation: str = "utterance",
        stack_frames: int = 1,
        test_speaker: str | None = None,
        val_fraction: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        try:
            feature_config = FeatureConfig(**(features or {}))
        except TypeError as error:
            raise ConfigError(f"bad key in data.features: {error}") from error
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction}")
        self.pipeline = FramePipeline(feature_config, normalisation, None, stack_frames)
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.test_speaker = test_speaker
        self.val_fraction = val_fraction
        self.sizes: dict[str, int] = {}

    def folder(self) -> Path:
        local = find_local(self.data_dir, "fsdd", "recordings/*.wav")
        if local is None:
            raise MissingFileError(
                f"no FSDD copy under data.data_dir={self.data_dir!r}: point it (or the "
                "RNNLAB_DATA_DIR environment variable) at a folder holding "
                "fsdd/recordings/{digit}_{speaker}_{index}.wav, from "
                "github.com/Jakobovski/free-spoken-digit-dataset"
            )
        return local / "recordings"

    def settings(self, recordings: list[Recording]) -> dict[str, Any]:
        """What the cache depends on: the files (names and sizes) and the feature settings."""
        listing = [(r.path.name, r.path.stat().st_size) for r in recordings]
        return {
            "kind": self.kind,
            "folder": str(self.folder().resolve()),
            "files": settings_key({"files": listing}),
            "features": self.pipeline.features.to_dict(),
        }

    def cached(self, recordings: list[Recording], extra: dict[str, Any], build, load) -> Any:
        key = settings_key(self.settings(recordings) | extra)
        return load_or_build(self.cache_dir / f"fsdd-{self.kind}-{key}", build, load)

    def prepare_data(self) -> None:
        self.raw_splits()

    def raw_splits(self) -> dict[str, tuple[list[Tensor], list[Any]]]:
        """Per split: raw (T, F) features and targets."""
        raise NotImplementedError

    def build(self) -> DataSpec:
        raw = self.raw_splits()
        if self.pipeline.normalisation == "train":
            self.pipeline.statistics = statistics(raw["train"][0])
        for split in SPLITS:
            frames, targets = raw[split]
            self.datasets[split] = self.dataset_of(
                [self.pipeline.finish(f) for f in frames], targets
            )
            self.sizes[split] = len(frames)
        log.info(
            "FSDD %s: %s utterances (train/val/test), %s",
            self.kind,
            "/".join(str(self.sizes[split]) for split in SPLITS),
            f"speaker {self.test_speaker} held out" if self.test_speaker else "own split",
        )
        return self.spec_of()

    def dataset_of(self, frames: list[Tensor], targets: list[Any]) -> Dataset:
        raise NotImplementedError

    def spec_of(self) -> DataSpec:
        raise NotImplementedError

    def data_state(self) -> dict[str, Any]:
        """How audio becomes input steps (features, normalisation statistics, stacking), the
        labels, the protocol and the split sizes: all `scripts/transcribe.py` needs."""
        return {
            **self.pipeline.state(),
            "labels": list(LABELS),
            "test_speaker": self.test_speaker,
            "val_fraction": self.val_fraction,
            "sizes": self.sizes,
        }


class FSDDDataModule(FSDDBase):
    """Isolated digits: one recording -> one of ten classes."""

    kind = "recordings"

    def raw_splits(self) -> dict[str, tuple[list[Tensor], list[int]]]:
        recordings = list_recordings(self.folder())

        def build(folder: Path) -> dict:
            extractor = FeatureExtractor(self.pipeline.features)
            frames = [
                extractor(read_wav(r.path, self.pipeline.features.sample_rate)) for r in recordings
            ]
            save_frames(folder, "features", frames)
            names = [r.path.name for r in recordings]
            (folder / "names.json").write_text(json.dumps(names), encoding="utf-8")
            return {"rows": len(frames)}

        def load(folder: Path, manifest: dict) -> dict[str, Tensor]:
            names = json.loads((folder / "names.json").read_text(encoding="utf-8"))
            frames = load_frames(folder, "features", manifest["rows"])
            return dict(zip(names, frames, strict=True))

        by_name = self.cached(recordings, {}, build, load)
        splits = split_recordings(recordings, self.test_speaker, self.val_fraction, self.seed)
        return {
            split: ([by_name[r.path.name] for r in part], [r.digit for r in part])
            for split, part in splits.items()
        }

    def dataset_of(self, frames: list[Tensor], targets: list[int]) -> Dataset:
        return SequenceDataset(frames, targets)

    def spec_of(self) -> DataSpec:
        return DataSpec(
            num_features=self.pipeline.num_features,
            num_classes=len(LABELS),
            labels=LABELS,
            class_counts=self.train_set.class_counts(len(LABELS)),
        )

    def collate_fn(self) -> PadCollate:
        return PadCollate(0)


class FSDDConnectedDataModule(FSDDBase):
    """Connected digits: utterances of one speaker's recordings -> digit strings (CTC)."""

    kind = "connected"

    def __init__(
        self,
        train_utterances: int = 4000,
        val_utterances: int = 400,
        test_utterances: int = 1000,
        min_digits: int = 1,
        max_digits: int = 7,
        min_pause: float = 0.05,
        max_pause: float = 0.3,
        noise: float = 1e-3,
        compose_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not 1 <= min_digits <= max_digits:
            raise ConfigError(
                f"data.min_digits={min_digits} and data.max_digits={max_digits} must satisfy "
                "1 <= min_digits <= max_digits"
            )
        if not 0.0 <= min_pause <= max_pause:
            raise ConfigError(
                f"data.min_pause={min_pause} and data.max_pause={max_pause} must satisfy "
                "0 <= min_pause <= max_pause (seconds)"
            )
        self.counts = {"train": train_utterances, "val": val_utterances, "test": test_utterances}
        for split, count in self.counts.items():
            if not isinstance(count, int) or count < 1:
                raise ConfigError(f"data.{split}_utterances must be a positive integer")
        self.compose = {
            "min_digits": min_digits,
            "max_digits": max_digits,
            "min_pause": min_pause,
            "max_pause": max_pause,
            "noise": noise,
            "compose_seed": compose_seed,
        }

    def compose_split(
        self, part: list[Recording], count: int, rng: np.random.Generator
    ) -> tuple[list[np.ndarray], list[str]]:
        """`count` utterances of one speaker each, from `part`'s recordings."""
        rate = self.pipeline.features.sample_rate
        pool: dict[str, dict[int, list[Recording]]] = {}
        for recording in part:
            pool.setdefault(recording.speaker, {}).setdefault(recording.digit, []).append(recording)
        speakers = sorted(pool)
        samples: dict[Path, np.ndarray] = {}
        options = self.compose

        def silence(low: float, high: float) -> np.ndarray:
            length = int(rng.uniform(low, high) * rate)
            return (options["noise"] * rng.standard_normal(length)).astype(np.float32)

        waves, texts = [], []
        for _ in range(count):
            by_digit = pool[speakers[rng.integers(len(speakers))]]
            digits = sorted(by_digit)
            pieces, text = [silence(0.0, options["max_pause"])], ""
            for position in range(rng.integers(options["min_digits"], options["max_digits"] + 1)):
                if position:
                    pieces.append(silence(options["min_pause"], options["max_pause"]))
                digit = digits[rng.integers(len(digits))]
                recording = by_digit[digit][rng.integers(len(by_digit[digit]))]
                if recording.path not in samples:
                    samples[recording.path] = read_wav(recording.path, rate)
                pieces.append(samples[recording.path])
                text += str(digit)
            pieces.append(silence(0.0, options["max_pause"]))
            waves.append(np.concatenate(pieces))
            texts.append(text)
        return waves, texts

    def raw_splits(self) -> dict[str, tuple[list[Tensor], list[str]]]:
        recordings = list_recordings(self.folder())
        seed = self.compose["compose_seed"]
        extra = {
            "compose": self.compose,
            "counts": self.counts,
            "test_speaker": self.test_speaker,
            "val_fraction": self.val_fraction,
        }

        def build(folder: Path) -> dict:
            splits = split_recordings(recordings, self.test_speaker, self.val_fraction, seed)
            extractor = FeatureExtractor(self.pipeline.features)
            rows = {}
            for number, split in enumerate(SPLITS):
                rng = np.random.default_rng([seed, number])
                waves, texts = self.compose_split(splits[split], self.counts[split], rng)
                save_frames(folder, split, [extractor(w) for w in waves])
                (folder / f"{split}.json").write_text(json.dumps(texts), encoding="utf-8")
                rows[split] = len(texts)
            return {"rows": rows}

        def load(folder: Path, manifest: dict) -> dict[str, tuple[list[Tensor], list[str]]]:
            loaded = {}
            for split, rows in manifest["rows"].items():
                texts = json.loads((folder / f"{split}.json").read_text(encoding="utf-8"))
                loaded[split] = (load_frames(folder, split, rows), texts)
            return loaded

        return self.cached(recordings, extra, build, load)

    def dataset_of(self, frames: list[Tensor], targets: list[str]) -> Dataset:
        return ConnectedDataset(frames, targets)

    def spec_of(self) -> DataSpec:
        return DataSpec(
            num_features=self.pipeline.num_features, num_classes=len(LABELS), labels=LABELS
        )

    def collate_fn(self):
        return collate_connected

    def data_state(self) -> dict[str, Any]:
        return super().data_state() | {"compose": self.compose, "counts": self.counts}
