"""Log a text sample from a generative task to TensorBoard after every validation epoch."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger


class TextSamples(L.Callback):
    """Samples `length` characters after `prompt` with the module's own vocabulary and tokeniser
    (`generate_text`), so it needs nothing from the datamodule."""

    def __init__(
        self,
        prompt: str = "\n",
        length: int = 300,
        temperature: float = 0.8,
        top_k: int | None = None,
        seed: int = 0,
    ) -> None:
        self.prompt = prompt
        self.length = length
        self.temperature = temperature
        self.top_k = top_k
        self.seed = seed

    def sample(self, module: L.LightningModule) -> str:
        generator = torch.Generator().manual_seed(self.seed)
        return self.prompt + module.generate_text(
            self.prompt, self.length, self.temperature, self.top_k, generator
        )

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if not loggers:
            return
        text = self.sample(module)
        for logger in loggers:
            # Markdown: indent by four spaces so line breaks survive.
            logger.experiment.add_text(
                "samples", "    " + text.replace("\n", "\n    "), trainer.global_step
            )
