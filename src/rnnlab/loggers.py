"""TensorBoard's SCALARS and HPARAMS tabs as rnnlab's runs want them.

Lightning's TensorBoardLogger opens SCALARS on an `epoch` card (Lightning adds that scalar to
every epoch-level log call; the x axis already counts steps), writes the metrics given to
`log_hyperparams` again as scalars (copies of the run's final metrics under new tags), and, via
torch's summary, records booleans as 0.0 / 1.0 (`bool` is an `int` in Python). This logger
leaves the `epoch` scalar out, points the HPARAMS metric columns at tags the run already logs,
and keeps booleans booleans.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger as LightningTensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from tensorboard.compat.proto.summary_pb2 import Summary
from tensorboard.plugins.hparams.api_pb2 import DataType
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from torch.utils.tensorboard.summary import hparams as hparams_summaries


class TensorBoardLogger(LightningTensorBoardLogger):
    """`log_hyperparams(params, metrics)`: `params` a flat dict of plain values; `metrics` names
    scalar tags of this run (their values are not written again): HPARAMS reads each column's
    value as the last point of its tag."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        super().log_metrics({k: v for k, v in metrics.items() if k != "epoch"}, step)

    @rank_zero_only
    def log_hyperparams(
        self,
        params: dict[str, Any],
        metrics: Iterable[str] | None = None,
        step: int | None = None,
    ) -> None:
        super().log_hyperparams(params, step=step)  # kept for hparams.yaml; no summary yet
        if not metrics:
            return
        plain = {
            k: v if isinstance(v, bool | int | float | str) else str(v) for k, v in params.items()
        }
        writer = self.experiment._get_file_writer()
        for summary in hparams_summaries(plain, dict.fromkeys(metrics, 0.0)):
            writer.add_summary(keep_booleans(summary, plain), step)


def keep_booleans(summary: Summary, params: dict[str, Any]) -> Summary:
    """The hparams summary with each boolean hyperparameter typed and stored as a boolean."""
    booleans = {k: v for k, v in params.items() if isinstance(v, bool)}
    plugin_data = summary.value[0].metadata.plugin_data
    data = HParamsPluginData.FromString(plugin_data.content)
    for info in data.experiment.hparam_infos:
        if info.name in booleans:
            info.type = DataType.DATA_TYPE_BOOL
    if data.HasField("session_start_info"):
        for name, value in booleans.items():
            data.session_start_info.hparams[name].bool_value = value
    plugin_data.content = data.SerializeToString()
    return summary
