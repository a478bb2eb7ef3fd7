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
        # the first validation loader's dataset: items are (source ids, target ids, reference)
        loaders = trainer.val_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        source = loader.dataset[self.index][0]
        inputs = source[None].to(module.device)
        lengths = torch.tensor([len(source)])
        (ids,), weights = module.greedy(inputs, lengths)
        target_words = module.target_vocab.decode(ids) + ["</s>"]
        source_words = module.source_vocab.decode(source.tolist())
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
