"""What every task shares: a backbone built from plain config values, and optimisation.

Tasks take only plain values (ints, strings, dicts), store them with `save_hyperparameters`, and
build their modules from them, so `Task.load_from_checkpoint(path)` works without Hydra. The
optimizer and scheduler are Hydra `_partial_` dicts, instantiated here with the parameters.
"""

from __future__ import annotations

import inspect
from typing import Any

import lightning as L

from rnnlab.models import InputEncoder, RecurrentBackbone
from rnnlab.utils import build

DEFAULT_OPTIMIZER = {"_target_": "torch.optim.AdamW", "_partial_": True, "lr": 1e-3}


class BaseTask(L.LightningModule):
    """Builds `self.encoder` (ids or features -> vectors) and `self.backbone` from plain config."""

    def build_encoder_and_backbone(
        self,
        model: dict[str, Any],
        embedding_dim: int,
        vocab_size: int | None,
        num_features: int | None,
        pad_id: int,
        embedding_dropout: float,
        extra_inputs: int = 0,
    ) -> None:
        """`extra_inputs`: features the task concatenates to the encoded input (a condition)."""
        self.encoder = InputEncoder(
            embedding_dim, vocab_size, num_features, pad_id, embedding_dropout
        )
        self.backbone = RecurrentBackbone(self.encoder.output_size + extra_inputs, **model)

    def configure_optimizers(self) -> Any:
        optimizer = build(self.hparams.optimizer or DEFAULT_OPTIMIZER)(params=self.parameters())
        if not self.hparams.get("scheduler"):
            return optimizer
        scheduler_cfg = dict(self.hparams.scheduler)
        interval = scheduler_cfg.pop("interval", "epoch")
        scheduler_factory = build(scheduler_cfg)
        extra = {}
        # Schedules over the whole run (OneCycleLR) get its length from the Trainer.
        if "total_steps" in inspect.signature(scheduler_factory.func).parameters and (
            scheduler_cfg.get("total_steps") is None
        ):
            extra["total_steps"] = int(self.trainer.estimated_stepping_batches)
        scheduler = scheduler_factory(optimizer=optimizer, **extra)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": interval,
                "monitor": self.hparams.monitor,
            },
        }
