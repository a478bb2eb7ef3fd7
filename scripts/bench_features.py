"""Speed and agreement of the two audio front ends on FSDD's recordings.

Usage: OMP_NUM_THREADS=1 python scripts/bench_features.py [data_dir] [kind=logmel|mfcc]

Times reading every wav (`wave`), rnnlab's features (torch.stft with librosa's mel filter bank,
`rnnlab.data.audio.FeatureExtractor`) and librosa's own `feature.melspectrogram` (+ MFCC) on the
same samples, and prints how far apart their values are (dB for log-mel, coefficients for MFCC).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import librosa
import numpy as np
import torch

from rnnlab.data.audio import FeatureConfig, FeatureExtractor, read_wav


def librosa_features(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """(T, F) features from librosa's own functions, with rnnlab's settings."""
    power = librosa.feature.melspectrogram(
        y=samples,
        sr=config.sample_rate,
        n_fft=config.n_fft,
        hop_length=config.hop_length,
        win_length=config.win_length,
        n_mels=config.n_mels,
        fmin=config.fmin,
        fmax=config.fmax,
    )
    log_mel = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
    if config.kind == "mfcc":
        return librosa.feature.mfcc(S=log_mel, n_mfcc=config.n_mfcc).T
    return log_mel.T


def main() -> None:
    arguments = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
    folders = [a for a in sys.argv[1:] if "=" not in a]
    root = Path(folders[0] if folders else os.environ.get("RNNLAB_DATA_DIR", "data")) / "fsdd"
    files = sorted((root / "recordings").glob("*.wav"))
    config = FeatureConfig(kind=arguments.get("kind", "logmel"))
    started = time.perf_counter()
    waves = [read_wav(path, config.sample_rate) for path in files]
    read_seconds = time.perf_counter() - started

    extractor = FeatureExtractor(config)
    librosa_features(waves[0], config)  # first call: librosa's lazy imports and caches
    timings = {}
    started = time.perf_counter()
    ours = [extractor(samples).numpy() for samples in waves]
    timings["torch.stft + librosa mel bank"] = time.perf_counter() - started
    started = time.perf_counter()
    theirs = [librosa_features(samples, config) for samples in waves]
    timings["librosa.feature"] = time.perf_counter() - started

    differences = np.concatenate([np.abs(a - b).ravel() for a, b in zip(ours, theirs, strict=True)])
    frames = sum(len(f) for f in ours)
    print(
        f"{len(files)} recordings, {frames} frames, kind={config.kind}, torch threads "
        f"{torch.get_num_threads()}; reading (wave): {read_seconds:.2f} s"
    )
    for name, seconds in timings.items():
        print(f"{name:32s} {seconds:6.2f} s  {frames / seconds:9.0f} frames/s")
    print(
        f"|difference|: max {differences.max():.2e}, mean {differences.mean():.2e}, "
        f"99.9th percentile {np.quantile(differences, 0.999):.2e}; value range "
        f"{min(f.min() for f in ours):.1f} .. {max(f.max() for f in ours):.1f}"
    )


if __name__ == "__main__":
    main()
