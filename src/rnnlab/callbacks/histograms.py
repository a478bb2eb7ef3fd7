"""Weight and gradient histograms in TensorBoard (opt-in: callbacks=... +callbacks.histograms)."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger


class Histograms(L.Callback):
    """Every `every_n_epochs` epochs: a histogram of each parameter and of its last gradient."""

    def __init__(self, every_n_epochs: int = 1) -> None:
        self.every_n_epochs = every_n_epochs
        self._gradients: dict = {}

    def on_before_optimizer_step(self, trainer, module, optimizer) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self._gradients = {
                name: p.grad.detach().float().cpu()
                for name, p in module.named_parameters()
                if p.grad is not None
            }

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if (trainer.current_epoch + 1) % self.every_n_epochs or not trainer.is_global_zero:
            return
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for name, parameter in module.named_parameters():
                    logger.experiment.add_histogram(
                        f"weights/{name}", parameter.detach().float().cpu(), trainer.current_epoch
                    )
                    if name in self._gradients:
                        logger.experiment.add_histogram(
                            f"gradients/{name}", self._gradients[name], trainer.current_epoch
                        )
