"""LightningModules, one per sequence shape: each owns its loss, metrics and optimisation."""

from rnnlab.tasks.classification import ClassificationTask
from rnnlab.tasks.ctc import CTCTask
from rnnlab.tasks.forecasting import ForecastingTask
from rnnlab.tasks.language_model import CharacterModel, LanguageModelTask
from rnnlab.tasks.music import PianoRollTask
from rnnlab.tasks.name_generation import NameGenerationTask
from rnnlab.tasks.regression import RegressionTask
from rnnlab.tasks.sequence_labeling import SequenceLabelingTask
from rnnlab.tasks.translation import TranslationTask

__all__ = [
    "CharacterModel",
    "CTCTask",
    "ClassificationTask",
    "ForecastingTask",
    "LanguageModelTask",
    "NameGenerationTask",
    "PianoRollTask",
    "RegressionTask",
    "SequenceLabelingTask",
    "TranslationTask",
]
