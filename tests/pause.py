"""A callback for tests that kill a training run at a known point, whatever the machine's load."""

from __future__ import annotations

import os
import time
from pathlib import Path

import lightning as L


class PauseAt(L.Callback):
    """At the start of training step `step` (every checkpoint of the steps before it written),
    write `marker` and wait to be killed. A DDP rank whose parent died (the killed main process)
    goes on; none waits longer than `limit` seconds."""

    def __init__(self, step: int, marker: str, limit: float = 600.0) -> None:
        self.step, self.marker, self.limit = step, Path(marker), limit

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != self.step:
            return
        self.marker.write_text(str(self.step))
        parent, start = os.getppid(), time.monotonic()
        while os.getppid() == parent and time.monotonic() - start < self.limit:
            time.sleep(0.05)
