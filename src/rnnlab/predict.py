"""Use a trained checkpoint on new text: classify it, or continue it by sampling.

The vocabulary and tokeniser travel inside the checkpoint (a generative task's own
hyperparameters; a classifier's datamodule `state_dict`), so neither needs Hydra nor the
training data.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch

from rnnlab.checkpoints import require_task, task_of
from rnnlab.data.audio import FramePipeline, read_wav
from rnnlab.data.collate import PadCollate
from rnnlab.data.tokenizers import Vocabulary, tokenizer_from_config
from rnnlab.errors import ConfigError
from rnnlab.tasks import CharacterModel, ClassificationTask, CTCTask, TranslationTask
from rnnlab.utils import read_checkpoint


@dataclass
class Prediction:
    label: str
    probability: float


def parse_options(arguments: list[str], defaults: dict[str, str | None]) -> dict[str, str]:
    """`key=value` command-line arguments; `ckpt_path` is required; exits on anything else."""
    options = dict(defaults)
    for argument in arguments:
        key, sep, value = argument.partition("=")
        if not sep or key not in (*defaults, "ckpt_path"):
            sys.exit(f"unknown argument {argument!r}; keys: ckpt_path, {', '.join(defaults)}")
        options[key] = value
    if "ckpt_path" not in options:
        sys.exit("ckpt_path=PATH is required")
    return options


def number_option(
    options: dict[str, str | None], key: str, kind: type = int, above: float | None = None
) -> int | float | None:
    """`options[key]` as an int or float (None when empty), greater than `above` if given."""
    raw = options[key]
    if raw is None or raw == "":
        return None
    try:
        value = kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise ConfigError(f"{key}={raw!r} is not {what}") from None
    if above is not None and not value > above:  # `not >` also refuses NaN
        raise ConfigError(f"{key} must be greater than {above}, got {raw}")
    return value


def text_state(ckpt_path: str | Path, task_class: type[L.LightningModule], vocab_key: str) -> dict:
    """The datamodule state (vocabularies, tokeniser, labels) stored in a checkpoint of
    `task_class`; a checkpoint of another task is an error saying what it is."""
    checkpoint = read_checkpoint(ckpt_path)
    require_task(checkpoint, task_class, ckpt_path)
    for value in checkpoint.values():
        if isinstance(value, dict) and value.get(vocab_key) and "tokenizer" in value:
            return value
    raise ConfigError(
        f"ckpt_path={str(ckpt_path)!r} holds no {vocab_key}: it was not trained on text"
    )


class Classifier:
    """A classification checkpoint plus the text pipeline it was trained with."""

    def __init__(self, ckpt_path: str | Path) -> None:
        state = text_state(ckpt_path, ClassificationTask, "vocab")
        self.tokenizer = tokenizer_from_config(state["tokenizer"])
        self.vocab = Vocabulary(state["vocab"])
        self.labels = state["labels"]
        self.max_len = state.get("max_len")
        self.task = ClassificationTask.load_from_checkpoint(ckpt_path, map_location="cpu")
        self.task.eval()

    def encode(self, text: str) -> torch.Tensor:
        ids = self.vocab.encode(self.tokenizer(text))[: self.max_len]
        if not ids:
            raise ConfigError(f"text {text!r} is empty or tokenises to nothing")
        return torch.tensor(ids)

    def __call__(self, texts: list[str]) -> list[Prediction]:
        encoded = [(self.encode(text), torch.tensor(0)) for text in texts]
        batch = PadCollate(self.vocab.pad_id)(encoded)
        probabilities = self.task.predict_proba(batch["inputs"], batch["lengths"])
        best = probabilities.max(dim=-1)
        return [
            Prediction(self.labels[int(i)], float(p))
            for p, i in zip(best.values, best.indices, strict=True)
        ]


def load_task(ckpt_path: str | Path, task_class: type[L.LightningModule]) -> L.LightningModule:
    """The checkpoint's task (`task_class` or a subclass) in evaluation mode; another task's
    checkpoint, or one whose task this version does not know, is an error saying so."""
    checkpoint = read_checkpoint(ckpt_path)
    require_task(checkpoint, task_class, ckpt_path)
    found = task_of(checkpoint)
    if found is None:
        raise ConfigError(
            f"ckpt_path={str(ckpt_path)!r}: its hyperparameters fit no task of this version of "
            "rnnlab (an older run's checkpoint?): retrain it"
        )
    task = found.load_from_checkpoint(ckpt_path, map_location="cpu")
    task.eval()
    return task


class Generator:
    """A language-model checkpoint that continues a prompt with its own vocabulary.

    Stream models (Tiny Shakespeare) continue the prompt for `length` characters. Sequence
    models (names) start after `<s>`, stop at `</s>`, and, when conditional, need the
    `condition` (a label such as "Russian").
    """

    def __init__(self, ckpt_path: str | Path) -> None:
        self.task = load_task(ckpt_path, CharacterModel)

    @property
    def default_prompt(self) -> str:
        return "" if self.task.whole_sequences else "\n"

    def __call__(
        self,
        prompt: str,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        condition: str | None = None,
    ) -> str:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        return self.task.generate_text(prompt, length, temperature, top_k, generator, condition)


class Translator:
    """A translation checkpoint with its tokeniser and both vocabularies."""

    def __init__(self, ckpt_path: str | Path) -> None:
        self.max_src_len = text_state(ckpt_path, TranslationTask, "source_vocab")["max_src_len"]
        self.task = load_task(ckpt_path, TranslationTask)
        if self.task.source_vocab is None or self.task.tokenizer is None:
            raise ConfigError(
                f"ckpt_path={str(ckpt_path)!r} holds no source vocabulary or tokeniser in its "
                "model: retrain it with this version of rnnlab"
            )
        self.tokenizer = self.task.tokenizer
        self.source_vocab = self.task.source_vocab

    def unknown_words(self, text: str) -> list[str]:
        """Source words the model has no embedding for (they are read as `<unk>`)."""
        return sorted({w for w in self.tokenizer(text) if w not in self.source_vocab.index})

    def __call__(
        self, texts: list[str], beam_size: int = 1, length_penalty: float | None = None
    ) -> list[str]:
        """Translations in input order; an empty source translates to an empty string."""
        encoded = []
        for text in texts:
            ids = self.source_vocab.encode(self.tokenizer(text))
            if len(ids) > self.max_src_len:
                raise ConfigError(
                    f"a source of {len(ids)} words is longer than data.max_src_len="
                    f"{self.max_src_len}: split it into sentences"
                )
            encoded.append(ids)
        todo = [i for i, ids in enumerate(encoded) if ids]
        results = [""] * len(texts)
        if not todo:
            return results
        batch = PadCollate(self.source_vocab.pad_id)(
            [(torch.tensor(encoded[i]), torch.tensor(0)) for i in todo]
        )
        if beam_size > 1:
            outputs = self.task.beam_search(
                batch["inputs"], batch["lengths"], beam_size, length_penalty
            )
        else:
            outputs, _ = self.task.greedy(batch["inputs"], batch["lengths"])
        for i, text in zip(todo, self.task.texts(outputs), strict=True):
            results[i] = text
        return results


class Transcriber:
    """A speech checkpoint plus the audio front end it was trained with (features, normalisation
    statistics, frame stacking: its datamodule state). A CTC model (data=fsdd_connected) gives a
    digit string per recording, an isolated-digit classifier (data=fsdd) one digit. Recordings
    at another sample rate are resampled to the checkpoint's."""

    def __init__(self, ckpt_path: str | Path) -> None:
        checkpoint = read_checkpoint(ckpt_path)
        states = [v for v in checkpoint.values() if isinstance(v, dict) and "stack_frames" in v]
        task_class = task_of(checkpoint)
        if not states or task_class not in (CTCTask, ClassificationTask):
            raise ConfigError(
                f"ckpt_path={str(ckpt_path)!r} holds no speech model: train one with "
                "data=fsdd_connected (or data=fsdd)"
            )
        self.pipeline = FramePipeline.from_state(states[0])
        self.labels = states[0]["labels"]
        self.task = task_class.load_from_checkpoint(ckpt_path, map_location="cpu")
        self.task.eval()

    def __call__(self, paths: list[str | Path], beam_size: int | None = None) -> list[str]:
        rate = self.pipeline.features.sample_rate
        frames = [self.pipeline(read_wav(path, rate, resample=True)) for path in paths]
        batch = PadCollate(0)([(f, torch.tensor(0)) for f in frames])
        if isinstance(self.task, CTCTask):
            return self.task.transcribe(batch["inputs"], batch["lengths"], beam_size)
        best = self.task.predict_proba(batch["inputs"], batch["lengths"]).argmax(dim=-1)
        return [self.labels[int(i)] for i in best]
