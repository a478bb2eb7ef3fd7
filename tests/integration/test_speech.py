"""Speech (FSDD): wav reading, features, both protocols, runs of both tasks, transcribe.py and
bad input, on tone recordings synthesised into tmp_path (a pitch per digit, several speakers)."""

from __future__ import annotations

import subprocess
import sys
import wave

import librosa
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rnnlab.data.audio import FeatureConfig, FeatureExtractor, read_wav, write_wav
from rnnlab.data.fsdd import FSDDConnectedDataModule, FSDDDataModule
from rnnlab.errors import ConfigError
from rnnlab.predict import Transcriber
from rnnlab.train import train
from tests.conftest import ROOT

RATE = 8000
SPEAKERS = ("alice", "bob", "carol")
INDICES = range(8)  # 0-4: the dataset's own test split


def tone(digit: int, speaker: int, index: int) -> np.ndarray:
    """A digit's pitch, a speaker's timbre (second harmonic) and a length varying with index."""
    seconds = 0.12 + 0.02 * ((index + digit) % 5)
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 300.0 + 150.0 * digit
    return 0.4 * np.sin(2 * np.pi * pitch * t) + 0.1 * speaker * np.sin(4 * np.pi * pitch * t)


def write_fsdd(root):
    folder = root / "fsdd" / "recordings"
    folder.mkdir(parents=True)
    for s, speaker in enumerate(SPEAKERS):
        for digit in range(10):
            for index in INDICES:
                write_wav(folder / f"{digit}_{speaker}_{index}.wav", tone(digit, s, index), RATE)
    return folder


@pytest.fixture
def fsdd_dir(tmp_path):
    write_fsdd(tmp_path / "data")
    return tmp_path / "data"


def isolated(data_dir, tmp_path, **kwargs) -> FSDDDataModule:
    dm = FSDDDataModule(data_dir=str(data_dir), cache_dir=str(tmp_path / "cache"), **kwargs)
    dm.setup()
    return dm


CONNECTED = {"train_utterances": 24, "val_utterances": 8, "test_utterances": 8}


def test_features_equal_librosas_own_on_a_written_recording(fsdd_dir):
    path = fsdd_dir / "fsdd" / "recordings" / "3_bob_2.wav"
    samples = read_wav(path, RATE)
    assert np.abs(samples - tone(3, 1, 2)).max() < 1e-4  # 16-bit round trip
    for kind in ("logmel", "mfcc"):
        config = FeatureConfig(kind=kind)
        ours = FeatureExtractor(config)(samples).numpy()
        power = librosa.feature.melspectrogram(
            y=samples, sr=RATE, n_fft=256, hop_length=80, win_length=200, n_mels=40
        )
        theirs = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
        if kind == "mfcc":
            theirs = librosa.feature.mfcc(S=theirs, n_mfcc=13)
        assert ours.shape == theirs.T.shape
        # float32 against float64: apart by 1e-4 relative at -100 dB, where power is 1e-10
        np.testing.assert_allclose(ours, theirs.T, rtol=1e-3, atol=1e-3)


def test_own_split_tests_indices_0_to_4(fsdd_dir, tmp_path):
    dm = isolated(fsdd_dir, tmp_path, batch_size=8)
    assert dm.sizes == {"train": 81, "val": 9, "test": 150}  # 3 x 10 x 3 carved 90/10
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape[-1] == dm.spec.num_features == 40
    assert dm.spec.num_classes == 10


def test_speaker_independent_split_never_trains_or_validates_on_the_held_out_speaker(
    fsdd_dir, tmp_path
):
    dm = FSDDDataModule(
        data_dir=str(fsdd_dir), cache_dir=str(tmp_path / "cache"), test_speaker="bob"
    )
    from rnnlab.data.fsdd import list_recordings, split_recordings

    recordings = list_recordings(fsdd_dir / "fsdd" / "recordings")
    for seed in range(5):
        splits = split_recordings(recordings, "bob", 0.1, seed)
        assert {r.speaker for r in splits["test"]} == {"bob"}
        assert len(splits["test"]) == 80  # every recording of bob
        for part in ("train", "val"):
            assert "bob" not in {r.speaker for r in splits[part]}
    dm.setup()
    assert dm.sizes["test"] == 80 and dm.sizes["train"] + dm.sizes["val"] == 160


def test_connected_utterances_are_one_speakers_digits_with_pauses(fsdd_dir, tmp_path):
    dm = FSDDConnectedDataModule(
        data_dir=str(fsdd_dir),
        cache_dir=str(tmp_path / "cache"),
        test_speaker="carol",
        stack_frames=2,
        **CONNECTED,
    )
    dm.setup()
    assert dm.spec.num_features == 80
    for split in ("train", "val", "test"):
        assert all(1 <= len(text) <= 7 and text.isdigit() for text in dm.datasets[split].digits)
    batch = next(iter(dm.val_dataloader()))
    assert batch["targets"].shape[0] == batch["target_lengths"].shape[0]
    # the same utterances for another run seed: drawn with compose_seed
    other = FSDDConnectedDataModule(
        data_dir=str(fsdd_dir),
        cache_dir=str(tmp_path / "cache"),
        test_speaker="carol",
        stack_frames=2,
        seed=7,
        **CONNECTED,
    )
    other.setup()
    assert other.test_set.digits == dm.test_set.digits


@pytest.mark.parametrize("data", ["fsdd", "fsdd_connected"])
def test_fast_dev_run_of_both_tasks(fsdd_dir, make_cfg, data):
    overrides = [
        f"data={data}",
        f"data.data_dir={fsdd_dir}",
        "model=bigru",
        "model.hidden_size=8",
        "trainer.fast_dev_run=true",
        "trainer.accelerator=cpu",
        "data.batch_size=4",
    ]
    if data == "fsdd_connected":
        overrides += [f"data.{key}={value}" for key, value in CONNECTED.items()]
        overrides += ["task.beam_size=3"]
    metrics = train(make_cfg(overrides))
    for key in ("test/acc" if data == "fsdd" else "test/der", "train/loss_step"):
        assert key in metrics and np.isfinite(metrics[key]), key


def test_transcribe_uses_only_the_checkpoint(fsdd_dir, make_cfg, tmp_path):
    """A CTC checkpoint trained with training-statistics normalisation: transcribe.py reads
    features, statistics and stacking from it and decodes as the model does on the data."""
    cfg = make_cfg(
        [
            "data=fsdd_connected",
            f"data.data_dir={fsdd_dir}",
            "data.normalisation=train",
            "data.stack_frames=2",
            "model.hidden_size=8",
            "trainer.max_epochs=1",
            "trainer.accelerator=cpu",
            "data.batch_size=8",
            "callbacks=none",
            *[f"data.{key}={value}" for key, value in CONNECTED.items()],
        ]
    )
    train(cfg)
    checkpoint = next(tmp_path.rglob("*.ckpt"))
    files = [fsdd_dir / "fsdd" / "recordings" / name for name in ("4_alice_1.wav", "9_bob_3.wav")]
    joined = tmp_path / "49.wav"
    write_wav(joined, np.concatenate([read_wav(f, RATE) for f in files]), RATE)
    transcriber = Transcriber(checkpoint)
    dm = FSDDConnectedDataModule(
        data_dir=str(fsdd_dir),
        cache_dir=cfg.data.cache_dir,
        normalisation="train",
        stack_frames=2,
        **CONNECTED,
    )
    dm.setup()
    assert transcriber.pipeline.statistics == dm.pipeline.statistics
    expected_frames = dm.pipeline(read_wav(joined, RATE))
    expected = transcriber.task.transcribe(
        expected_frames.unsqueeze(0), torch.tensor([len(expected_frames)]), 1
    )
    result = subprocess.run(
        [
            sys.executable,
            "scripts/transcribe.py",
            f"ckpt_path={checkpoint}",
            f"audio={joined}",
            f"audio={files[0]}",
            "beam_size=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = result.stdout.splitlines()
    assert lines[0] == f"{expected[0]}\t{joined}"
    assert len(lines) == 2 and lines[1].endswith(f"\t{files[0]}")


def test_the_ctc_alignment_of_a_validation_utterance_is_drawn_each_epoch(
    fsdd_dir, make_cfg, tmp_path
):
    cfg = make_cfg(
        [
            "data=fsdd_connected",
            f"data.data_dir={fsdd_dir}",
            "model.hidden_size=8",
            "trainer.max_epochs=2",
            "trainer.accelerator=cpu",
            "data.batch_size=8",
            "test=false",
            *[f"data.{key}={value}" for key, value in CONNECTED.items()],
        ]
    )
    train(cfg)
    events = EventAccumulator(str(next((tmp_path / "tensorboard").rglob("events.out.*")).parent))
    events.Reload()
    assert len(events.Images("val/ctc_alignment")) == 2  # one each epoch, none at the sanity check


def write_raw(path, channels=1, rate=RATE, samples=800):
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(np.zeros(samples * channels, dtype="<i2").tobytes())


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("1_bob_9.wav", lambda p: write_raw(p, rate=16000), "sampled at 16000 Hz"),
        ("1_bob_9.wav", lambda p: write_raw(p, channels=2), "2 channels"),
        ("1_bob_9.wav", lambda p: p.write_bytes(b""), "not a readable PCM wav"),
        ("1_bob_9.wav", lambda p: write_raw(p, samples=0), "holds no samples"),
        (
            "1_bob_9.wav",
            lambda p: (write_raw(p), p.write_bytes(p.read_bytes()[:-400])),
            "is truncated",
        ),
        ("one_bob_9.wav", lambda p: write_raw(p), "{digit}_{speaker}_{index}.wav"),
    ],
)
def test_bad_recordings_name_the_file(fsdd_dir, tmp_path, name, make, message):
    path = fsdd_dir / "fsdd" / "recordings" / name
    make(path)
    with pytest.raises(ConfigError, match="^" + str(path).replace(".", r"\.")) as error:
        isolated(fsdd_dir, tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_recording_to_transcribe_at_another_rate_is_resampled(tmp_path):
    t = np.arange(16000) / 16000  # one second of 440 Hz at 16 kHz
    write_wav(tmp_path / "a.wav", 0.5 * np.sin(2 * np.pi * 440 * t), 16000)
    with pytest.raises(ConfigError, match="sampled at 16000 Hz"):
        read_wav(tmp_path / "a.wav", RATE)
    samples = read_wav(tmp_path / "a.wav", RATE, resample=True)
    assert len(samples) == RATE
    spectrum = np.abs(np.fft.rfft(samples))
    assert int(np.argmax(spectrum)) == 440  # 1 Hz bins over one second: the pitch is kept


def test_unknown_test_speaker_lists_the_speakers(fsdd_dir, tmp_path):
    with pytest.raises(ConfigError, match="data.test_speaker='zoe'.*alice, bob, carol"):
        isolated(fsdd_dir, tmp_path, test_speaker="zoe")


def test_two_processes_build_the_feature_cache_once(fsdd_dir, tmp_path):
    code = (
        "import sys; from rnnlab.data.fsdd import FSDDDataModule as M; "
        "m = M(data_dir=sys.argv[1], cache_dir=sys.argv[2]); m.setup(); print(m.sizes)"
    )
    cache = tmp_path / "cache"
    runs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(fsdd_dir), str(cache)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    try:
        outputs = [run.communicate(timeout=600)[0] for run in runs]
    finally:
        for run in runs:
            run.kill()
    assert all(run.returncode == 0 for run in runs) and outputs[0] == outputs[1]
    built = [p for p in cache.iterdir() if p.is_dir()]
    assert len(built) == 1 and not list(cache.glob(".*.tmp"))
