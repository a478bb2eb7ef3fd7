"""What a checkpoint holds, checked against what a command does with it.

Every consumer of a checkpoint (eval, resume, predict, generate, translate) first checks that
the checkpoint's task is the one the command runs, then encodes data as the checkpointed run
did: the datamodule takes the seed stored in the checkpoint's data state before `setup` (it
picked the split the vocabulary and scaling statistics come from), and after `setup` its state
must equal the stored one (vocabulary, tokeniser, labels, scaling statistics), or the consumer
stops with an error that names what differs. Lightning stores `datamodule.state_dict()` under
the datamodule's class name.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np

from rnnlab.errors import ConfigError
from rnnlab.tasks import (
    ClassificationTask,
    CTCTask,
    ForecastingTask,
    LanguageModelTask,
    NameGenerationTask,
    PianoRollTask,
    RegressionTask,
    SequenceLabelingTask,
    TranslationTask,
)

# the task kind in words, and the data configs and script that use a checkpoint of it
TASK_USES: dict[type[L.LightningModule], tuple[str, str]] = {
    ClassificationTask: ("classification", "data=recall, imdb or names; scripts/predict.py"),
    LanguageModelTask: ("language model", "data=shakespeare; scripts/generate.py"),
    NameGenerationTask: ("name generation", "data=names_gen; scripts/generate.py"),
    ForecastingTask: ("forecasting", "data=ett or sine"),
    TranslationTask: ("translation", "data=multi30k; scripts/translate.py"),
    RegressionTask: ("regression", "data=adding"),
    SequenceLabelingTask: ("sequence labelling", "data=copy"),
    PianoRollTask: ("piano-roll music", "data=music; scripts/generate.py"),
    CTCTask: ("CTC recognition", "data=fsdd_connected; scripts/transcribe.py"),
}


def task_of(checkpoint: dict[str, Any]) -> type[L.LightningModule] | None:
    """The task class whose constructor takes exactly the checkpoint's stored hyperparameters.

    Lightning stores a module's arguments, not its class; every rnnlab task saves all of its
    arguments, so one task's argument names equal the stored ones (the name generator takes all
    of the stream model's and more). Otherwise the one task that could take them; None when no
    task, or several, fit.
    """
    stored = set(checkpoint.get("hyper_parameters") or {})
    fits, exact = [], []
    for task_class in TASK_USES:
        parameters = {
            name: p
            for name, p in inspect.signature(task_class.__init__).parameters.items()
            if name != "self"
        }
        required = {name for name, p in parameters.items() if p.default is inspect.Parameter.empty}
        if required <= stored <= set(parameters):
            fits.append(task_class)
            if stored == set(parameters):
                exact.append(task_class)
    for found in (exact, fits):
        if len(found) == 1:
            return found[0]
    return None


def require_task(
    checkpoint: dict[str, Any], expected: type, ckpt_path: str | Path, key: str = "ckpt_path"
) -> None:
    """A checkpoint of another task is an error that says which task it is and what uses it."""
    found = task_of(checkpoint)
    if found is None or issubclass(found, expected):
        return
    kind, uses = TASK_USES[found]
    # a family (the character models) in the words of its tasks
    wanted = " or ".join(
        name for task, (name, _) in TASK_USES.items() if issubclass(task, expected)
    )
    raise ConfigError(
        f"{key}={str(ckpt_path)!r} is a {kind} checkpoint, not a {wanted} one; use it with {uses}"
    )


def adopt_data_state(
    datamodule: L.LightningDataModule, checkpoint: dict[str, Any], ckpt_path: str | Path
) -> dict[str, Any] | None:
    """Before `setup`: hand the checkpoint's data state to the datamodule; return that state.

    A checkpoint whose data state was written by another datamodule class was trained on
    other data: an error naming it.
    """
    name = type(datamodule).__qualname__
    stored = checkpoint.get(name)
    if stored is None:
        others = sorted(key for key in checkpoint if key.endswith("DataModule"))
        if others:
            raise ConfigError(
                f"ckpt_path={str(ckpt_path)!r} was trained on {others[0]} data, but this "
                f"config's data is {name}: pass the data=... the checkpoint was trained with"
            )
        return None
    datamodule.load_state_dict(stored)
    return stored


def check_data_state(
    datamodule: L.LightningDataModule, stored: dict[str, Any] | None, ckpt_path: str | Path
) -> None:
    """After `setup`: the datamodule must encode exactly as the checkpointed run did."""
    if not stored:
        return
    current = datamodule.state_dict()
    differences = [
        difference
        for key in sorted(stored)
        if (difference := describe_difference(key, stored[key], current.get(key))) is not None
    ]
    if differences:
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r} was trained on other data than this config gives "
            f"({'; '.join(differences)}): pass the training run's data options and seed (its "
            "config_resolved.yaml lists them)"
        )


def describe_difference(key: str, stored: Any, current: Any) -> str | None:
    """None when equal (floats to 1e-9 relative, as statistics recomputed from the same rows
    are); otherwise a short description of both values."""
    if stored == current or (floats(stored) and floats(current) and same_floats(stored, current)):
        return None
    if isinstance(stored, list) and isinstance(current, list) and len(stored) > 10:
        same = sum(x == y for x, y in zip(stored, current, strict=False))
        return (
            f"{key}: {len(stored)} entries there, {len(current)} here, "
            f"{same} of them equal at the same index"
        )
    return f"{key}: {shorten(stored)} there, {shorten(current)} here"


def floats(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(x, float) for x in value)


def same_floats(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and bool(np.allclose(a, b, rtol=1e-9, atol=0.0))


def shorten(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
