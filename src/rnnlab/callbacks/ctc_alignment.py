"""Draw one validation utterance's input frames and CTC alignment to TensorBoard every epoch."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import Tensor


class CTCAlignment(L.Callback):
    """Keeps one utterance of the middle batch of the trainer's validation loader (batches are
    sorted by length, so a median-length one) and draws, under `val/ctc_alignment`: its input
    frames, the module's per-frame posteriors (blank first) and the best path, titled with the
    reference and the greedy decoding. Needs only the batch and the module (`CTCTask`)."""

    def __init__(self, utterance: int = 0) -> None:
        self.utterance = utterance
        self.kept: dict[str, Tensor] | None = None

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        outputs: Any,
        batch: dict[str, Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or dataloader_idx != 0:
            return
        batches = trainer.num_val_batches[0] if trainer.num_val_batches else 1
        if batch_idx != int(batches) // 2:
            return
        index = min(self.utterance, len(batch["lengths"]) - 1)
        length = int(batch["lengths"][index])
        self.kept = {
            "inputs": batch["inputs"][index, :length].detach().cpu(),
            "target": batch["targets"][index, : int(batch["target_lengths"][index])].cpu(),
        }

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        kept, self.kept = self.kept, None
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        if kept is None or not loggers:
            return
        inputs = kept["inputs"].to(module.device)
        lengths = torch.tensor([len(inputs)])
        with torch.no_grad():
            log_probs = module(inputs.unsqueeze(0), lengths.to(module.device))[0].cpu()
        figure = self.draw(module, kept, log_probs)
        for logger in loggers:
            logger.experiment.add_figure("val/ctc_alignment", figure, trainer.global_step)

    @staticmethod
    def draw(module: L.LightningModule, kept: dict[str, Tensor], log_probs: Tensor):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        labels = ["_", *module.labels]  # blank first
        reference = "".join(module.labels[int(i)] for i in kept["target"])
        decoded = module.decode(log_probs.unsqueeze(0), torch.tensor([len(log_probs)]))[0]
        steps = len(log_probs)
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        top.imshow(kept["inputs"].t().numpy(), aspect="auto", origin="lower", cmap="magma")
        top.set_ylabel("input features")
        top.set_title(f"reference {reference}   greedy {decoded or '(nothing)'}")
        bottom.imshow(
            log_probs.exp().t().numpy(), aspect="auto", origin="lower", cmap="Blues", vmin=0, vmax=1
        )
        best = log_probs.argmax(dim=-1).numpy()
        bottom.plot(range(steps), best, color="tab:red", linewidth=1, label="best path")
        bottom.set_yticks(range(len(labels)), labels)
        bottom.set_ylabel("posterior")
        bottom.set_xlabel("step")
        bottom.legend(loc="upper right")
        figure.tight_layout()
        return figure
