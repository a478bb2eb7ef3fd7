"""Polyphonic music: reading the .mat rolls, exact NLL under padding, MIDI, runs, bad input."""

from __future__ import annotations

import importlib.util
import math
import pickle
import subprocess
import sys

import lightning as L
import numpy as np
import pretty_midi
import pytest
import scipy.io
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnlab.data.music import CORPORA, MusicDataModule, collate_rolls, read_midi, write_midi
from rnnlab.errors import ConfigError
from rnnlab.tasks import PianoRollTask
from rnnlab.train import train
from tests.conftest import ROOT, shared_data

SIZES = {"traindata": 7, "validdata": 3, "testdata": 5}


def random_rolls(count: int, rng: np.random.Generator, width: int = 88) -> np.ndarray:
    """A 1 x N cell array of T x width binary rolls of unequal lengths, as scipy writes it."""
    cells = np.empty((1, count), dtype=object)
    for index in range(count):
        cells[0, index] = (rng.random((int(rng.integers(3, 15)), width)) < 0.08).astype(np.uint8)
    return cells


def write_mat(folder, name="JSB_Chorales.mat", keys=SIZES, width=88, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    content = {key: random_rolls(count, rng, width) for key, count in keys.items()}
    scipy.io.savemat(folder / name, content)
    return content


@pytest.fixture
def music_dir(tmp_path):
    write_mat(tmp_path / "data" / "music")
    return tmp_path / "data"


def music(data_dir, tmp_path, **kwargs) -> MusicDataModule:
    options = {"data_dir": str(data_dir), "cache_dir": str(tmp_path / "cache")} | kwargs
    dm = MusicDataModule(**options)
    dm.setup()
    return dm


def test_splits_are_the_files_and_batches_predict_the_next_frame(music_dir, tmp_path):
    content = scipy.io.loadmat(music_dir / "music" / "JSB_Chorales.mat")
    dm = music(music_dir, tmp_path, batch_size=4)
    assert {split: len(dm.datasets[split]) for split in ("train", "val", "test")} == {
        "train": 7,
        "val": 3,
        "test": 5,
    }
    assert dm.spec.num_features == 88
    batch = next(iter(dm.test_dataloader()))
    rolls = {tuple(map(tuple, r.astype(float))) for r in content["testdata"][0]}
    for inputs, targets, length in zip(
        batch["inputs"], batch["targets"], batch["lengths"], strict=True
    ):
        whole = torch.cat([inputs[:length], targets[length - 1 : length]])  # frames 0..T-1
        assert tuple(map(tuple, whole.tolist())) in rolls
        assert torch.equal(inputs[1:length], targets[: length - 1])  # shifted by one frame
        assert not inputs[length:].any() and not targets[length:].any()  # silent padding


def naive_nll(probabilities: torch.Tensor, targets: torch.Tensor) -> float:
    """Sum over frames and keys of -[y log p + (1 - y) log(1 - p)], written out."""
    total = 0.0
    for p_frame, y_frame in zip(probabilities.tolist(), targets.tolist(), strict=True):
        for p, y in zip(p_frame, y_frame, strict=True):
            total -= math.log(p) if y else math.log(1 - p)
    return total


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_padded_batches_score_each_sequence_alone(music_dir, tmp_path, cell):
    """The test NLL per frame over padded batches of unequal lengths equals the naive NLL of
    each sequence run alone, summed over every frame and divided by the frames."""
    torch.manual_seed(0)
    dm = music(music_dir, tmp_path, batch_size=3, eval_batch_size=3)
    task = PianoRollTask(model={"cell": cell, "hidden_size": 12}, **dm.spec.task_kwargs())
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    scored = trainer.test(task, datamodule=dm, verbose=False)[0]["test/loss"]
    task.eval()
    total, frames = 0.0, 0
    with torch.no_grad():
        for roll in dm.datasets["test"].rolls:
            logits, _ = task(roll[:-1].unsqueeze(0))  # alone: no padding, no lengths
            total += naive_nll(torch.sigmoid(logits[0].double()), roll[1:])
            frames += len(roll) - 1
    assert len({len(roll) for roll in dm.datasets["test"].rolls}) > 1  # batches were padded
    assert scored == pytest.approx(total / frames, rel=1e-5)


def test_a_padded_batch_gives_each_sequence_its_own_frame_nll(music_dir, tmp_path):
    dm = music(music_dir, tmp_path)
    task = PianoRollTask(model={"cell": "lstm", "hidden_size": 12}, **dm.spec.task_kwargs())
    task.eval()
    rolls = dm.datasets["train"].rolls[:4]
    with torch.no_grad():
        batched, valid = task.frame_nll(collate_rolls(rolls))
        for row, roll in enumerate(rolls):
            alone, _ = task.frame_nll(collate_rolls([roll]))
            length = len(roll) - 1
            assert int(valid[row].sum()) == length
            torch.testing.assert_close(batched[row, :length], alone[0])


def test_midi_reads_back_with_the_same_notes(tmp_path):
    rng = np.random.default_rng(1)
    roll = (rng.random((40, 88)) < 0.1).astype(np.float32)
    roll[:, 0] = 1  # one key held throughout: a single long note
    path = tmp_path / "out.mid"
    notes = write_midi(roll, path, frame_seconds=0.25)
    midi = pretty_midi.PrettyMIDI(str(path))
    read = read_midi(path, frame_seconds=0.25) > 0  # (frames, 88), MIDI 21-108
    expected = np.zeros((max(len(read), len(roll)), 88), dtype=bool)
    expected[: len(roll)] = roll > 0
    assert read.shape[1] == 88 and np.array_equal(read, expected[: len(read)])
    assert not expected[len(read) :].any()  # only trailing silence is not in the file
    runs = sum(
        int(np.sum(np.diff(np.concatenate([[0], roll[:, key], [0]])) == 1)) for key in range(88)
    )
    assert notes == runs == len(midi.instruments[0].notes)
    assert min(n.pitch for n in midi.instruments[0].notes) == 21


def test_fast_dev_run(make_cfg, music_dir):
    cfg = make_cfg(
        [
            "data=music",
            f"data.data_dir={music_dir}",
            "model.hidden_size=8",
            "trainer.fast_dev_run=true",
        ]
    )
    metrics = train(cfg)
    for key in ("test/loss", "val/loss_best", "train/loss_step"):  # a step's loss is logged too
        assert math.isfinite(metrics[key]), key


def test_a_run_draws_piano_rolls_and_generate_writes_its_sample_as_midi(
    make_cfg, music_dir, tmp_path
):
    cfg = make_cfg(
        [
            "data=music",
            f"data.data_dir={music_dir}",
            "model=gru",
            "model.hidden_size=8",
            "trainer.max_epochs=2",
            "callbacks.piano_roll.length=16",
        ]
    )
    train(cfg)
    events = EventAccumulator(str(next((tmp_path / "tensorboard").rglob("events.out.*")).parent))
    events.Reload()
    images = events.Images("samples/piano_roll")
    assert len(images) == 2  # one each epoch
    assert (images[0].width, images[0].height) == (1 + 16, 88)

    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    midi = tmp_path / "sample.mid"
    command = [
        sys.executable,
        "scripts/generate.py",
        f"ckpt_path={ckpt}",
        f"midi={midi}",
        "prime=60,64,67",
        "length=24",
        "seed=5",
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    assert str(midi) in result.stdout
    # the same sample in this process: the script sampled from the checkpoint with that seed
    task = PianoRollTask.load_from_checkpoint(ckpt, map_location="cpu")
    primer = torch.zeros(1, 88)
    primer[0, [60 - 21, 64 - 21, 67 - 21]] = 1
    roll = task.generate(primer, 24, generator=torch.Generator().manual_seed(5)).numpy() > 0
    read = pretty_midi.PrettyMIDI(str(midi)).get_piano_roll(fs=4)[21:109].T > 0
    assert len(roll) == 25 and np.array_equal(read, roll[: len(read)])
    assert not roll[len(read) :].any()
    # its own sample back as the primer: the opening 8 frames, then 4 sampled after them
    again = tmp_path / "again.mid"
    primed = [
        *command[:3],
        f"midi={again}",
        f"prime={midi}",
        "prime_frames=8",
        "length=4",
        "seed=1",
    ]
    result = subprocess.run(primed, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "12 frames (8 primer)" in result.stdout
    primer = torch.from_numpy(read_midi(midi)[:8])
    roll = task.generate(primer, 4, generator=torch.Generator().manual_seed(1)).numpy()
    read = read_midi(again)
    assert np.array_equal(read, roll[: len(read)]) and not roll[len(read) :].any()
    # a text model's options would be ignored here: refused by name
    refused = subprocess.run([*command, "top_k=5", "prompt=x"], cwd=ROOT, capture_output=True)
    assert refused.returncode != 0
    assert refused.stderr.decode().strip().splitlines()[-1] == (
        "error: prompt, top_k are for a text checkpoint; ckpt_path is a music one, which takes "
        "prime=, midi="
    )


def test_bad_mat_files_and_names_are_errors_naming_the_file_or_key(tmp_path):
    folder = tmp_path / "data" / "music"
    write_mat(folder, keys={"traindata": 2, "validdata": 2})
    with pytest.raises(ConfigError, match=r"JSB_Chorales\.mat lacks the key\(s\) testdata"):
        music(tmp_path / "data", tmp_path)
    write_mat(folder, width=87)
    with pytest.raises(ConfigError, match=r"JSB_Chorales\.mat: traindata\[0\] has shape .*88"):
        music(tmp_path / "data", tmp_path)
    (folder / "JSB_Chorales.mat").write_bytes(b"not a mat file")
    with pytest.raises(ConfigError, match=r"JSB_Chorales\.mat is not a readable MATLAB"):
        music(tmp_path / "data", tmp_path)
    with pytest.raises(ConfigError, match="data.name='bach' is not one of jsb, nottingham"):
        MusicDataModule(name="bach")


def pitches_of(roll: np.ndarray) -> list[list[int]]:
    """A piano roll as the authors' pickles hold it: each frame the list of MIDI pitches."""
    return [[21 + int(key) for key in np.flatnonzero(frame)] for frame in roll]


def test_the_authors_pickle_reads_as_the_same_rolls_as_the_mat(tmp_path):
    content = write_mat(tmp_path / "mat" / "music")
    splits = {
        "train": [pitches_of(roll) for roll in content["traindata"][0]],
        # numpy arrays and scalars as frames and pitches, tuples: they read alike
        "valid": [
            [np.array(f, dtype=np.int64) for f in pitches_of(roll)]
            for roll in content["validdata"][0]
        ],
        "test": [[tuple(f) for f in pitches_of(roll)] for roll in content["testdata"][0]],
    }
    folder = tmp_path / "pickle" / "music"
    folder.mkdir(parents=True)
    (folder / "JSB Chorales.pickle").write_bytes(pickle.dumps(splits, protocol=2))
    from_mat, from_pickle = music(tmp_path / "mat", tmp_path), music(tmp_path / "pickle", tmp_path)
    assert from_pickle.path().name == "JSB Chorales.pickle"
    for split in ("train", "val", "test"):
        ours, theirs = from_mat.datasets[split].rolls, from_pickle.datasets[split].rolls
        assert len(ours) == len(theirs) > 0
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True)), split
    # with both files there, the .mat (Bai et al.'s copy) is the one read
    (tmp_path / "mat" / "music" / "JSB Chorales.pickle").write_bytes(b"unread")
    assert music(tmp_path / "mat", tmp_path).path().name == "JSB_Chorales.mat"


def test_a_python_2_pickle_reads_and_a_bad_pickle_is_refused_naming_file_and_key(tmp_path):
    folder = tmp_path / "data" / "music"
    folder.mkdir(parents=True)
    path = folder / "Nottingham.pickle"
    # Python 2's pickle.dumps({'train': [[[60, 64], []]], ...}, 0): byte-string keys
    frames = b"(lp2\n(lp3\n(lp4\nI60\naI64\naa(lp5\naa"
    path.write_bytes(
        b"(dp0\nS'train'\np1\n"
        + frames
        + b"sS'valid'\np6\n"
        + frames
        + b"sS'test'\np7\n"
        + frames
        + b"s."
    )
    dm = music(tmp_path / "data", tmp_path, name="nottingham")
    roll = dm.datasets["test"].rolls[0]
    assert roll.shape == (2, 88) and roll[0, [60 - 21, 64 - 21]].tolist() == [1, 1]
    assert roll.sum() == 2

    class Payload:
        def __reduce__(self):
            return (print, ("ran",))

    bad = {
        "names builtins.print; a music pickle holds only lists of MIDI pitches": Payload(),
        "lacks the key\\(s\\) valid, test": {"train": []},
        r"valid\[1\] is not a list of frames": {"train": [], "valid": [[[60]], [60]], "test": []},
        r"train\[0\]\[1\] holds 20; a frame lists MIDI pitches 21-108": {
            "train": [[[60], [20]]],
            "valid": [],
            "test": [],
        },
    }
    for message, content in bad.items():
        path.write_bytes(pickle.dumps(content))
        with pytest.raises(ConfigError, match=f"Nottingham.pickle.*{message}"):
            music(tmp_path / "data", tmp_path, name="nottingham")


def test_a_primer_that_is_no_midi_or_has_no_note_is_refused_naming_it(tmp_path):
    spec = importlib.util.spec_from_file_location("generate", ROOT / "scripts" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    bad = tmp_path / "bad.mid"
    bad.write_bytes(b"not a midi file")
    with pytest.raises(ConfigError, match=r"bad\.mid is not a readable MIDI file: MThd not found"):
        generate.read_primer(str(bad), 0.25, None)
    roll = np.zeros((12, 88), dtype=np.float32)
    roll[6:, 39] = 1  # middle C from the seventh frame on
    write_midi(roll, tmp_path / "late.mid")
    with pytest.raises(ConfigError, match=r"late\.mid: no note sounds in its first 6 frames"):
        generate.read_primer(str(tmp_path / "late.mid"), 0.25, 6)
    assert generate.read_primer(str(tmp_path / "late.mid"), 0.25, 7)[6, 39] == 1
    with pytest.raises(ConfigError, match="prime='C,E' is neither MIDI pitches"):
        generate.read_primer("C,E", 0.25, None)


def test_a_bidirectional_music_model_is_refused():
    with pytest.raises(ConfigError, match="model.bidirectional"):
        PianoRollTask(88, {"cell": "lstm", "hidden_size": 8, "bidirectional": True})


@pytest.mark.slow
def test_the_published_files_read_with_their_split_sizes(tmp_path):
    data_dir = shared_data("music").parent
    expected = {
        "jsb": (229, 76, 77),
        "nottingham": (694, 173, 170),
        "musedata": (524, 135, 124),
        "piano": (87, 12, 25),
    }
    assert set(expected) == set(CORPORA)
    for name, sizes in expected.items():
        dm = music(data_dir, tmp_path, name=name)
        assert tuple(len(dm.datasets[s]) for s in ("train", "val", "test")) == sizes
