"""Datamodules, batching and the DataSpec that carries sizes from data to model."""

from rnnlab.data.spec import DataSpec

__all__ = ["DataSpec"]
