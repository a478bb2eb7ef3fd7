"""Log the attention of a translation model on a fixed validation sentence, as an image."""

from __future__ import annotations

import lightning as L
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402


class AttentionMap(L.Callback):
    """After each validation epoch: greedy-translate validation sentence `index` and log its
    attention weights (target token x source token) to TensorBoard as a heat map."""

    def __init__(self, index: int = 0) -> None:
        self.index = index

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if trainer.sanity_checking or not trainer.is_global_zero or not loggers:
            return
        datamodule = trainer.datamodule
        source, _, _ = datamodule.val_set[self.index]
        inputs = source[None].to(module.device)
        lengths = torch.tensor([len(source)])
        (ids,), weights = module.greedy(inputs, lengths)
        target_words = datamodule.target_vocab.decode(ids) + ["</s>"]
        source_words = datamodule.source_vocab.decode(source.tolist())
        matrix = weights[0, : len(target_words)].float().cpu().numpy()
        figure, axis = plt.subplots(
            figsize=(1 + 0.4 * len(source_words), 1 + 0.4 * len(target_words))
        )
        axis.imshow(matrix, cmap="viridis", vmin=0.0, vmax=1.0)
        axis.set_xticks(range(len(source_words)), source_words, rotation=90)
        axis.set_yticks(range(len(target_words)), target_words)
        figure.tight_layout()
        for logger in loggers:
            logger.experiment.add_figure("attention", figure, trainer.global_step)
        plt.close(figure)
