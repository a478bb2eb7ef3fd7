"""LightningModules, one per sequence shape: each owns its loss, metrics and optimisation."""

from rnnlab.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]
