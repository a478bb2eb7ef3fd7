"""Log a sampled piano roll from a music model to TensorBoard after every validation epoch."""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor

from rnnlab.data.music import LOWEST_PITCH, NUM_KEYS


def primer_frame(pitches: Sequence[int]) -> Tensor:
    """One (1, 88) frame sounding the given MIDI pitches (21-108)."""
    frame = torch.zeros(1, NUM_KEYS)
    for pitch in pitches:
        if not LOWEST_PITCH <= pitch < LOWEST_PITCH + NUM_KEYS:
            raise ValueError(
                f"pitch {pitch} is not a piano key (MIDI {LOWEST_PITCH}-"
                f"{LOWEST_PITCH + NUM_KEYS - 1})"
            )
        frame[0, pitch - LOWEST_PITCH] = 1.0
    return frame


def roll_image(roll: Tensor, primer_frames: int) -> Tensor:
    """(T, 88) roll -> (88, T) grey image, high keys on top; the primer drawn at half intensity."""
    image = roll.t().flip(0).float()  # (88, T)
    image[:, :primer_frames] *= 0.5
    return image


class PianoRollSamples(L.Callback):
    """Samples `length` frames after a primer chord (`prime`: MIDI pitches; the default is a C
    major triad) with the module's own `generate`, so it needs nothing from the datamodule."""

    def __init__(
        self,
        prime: Sequence[int] = (60, 64, 67),
        length: int = 128,
        temperature: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.primer = primer_frame(prime)
        self.length = length
        self.temperature = temperature
        self.seed = seed

    def sample(self, module: L.LightningModule) -> Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        return module.generate(self.primer, self.length, self.temperature, generator)

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        image = roll_image(self.sample(module), len(self.primer)).numpy()
        for logger in loggers:
            logger.experiment.add_image(
                "samples/piano_roll", image, trainer.global_step, dataformats="HW"
            )
