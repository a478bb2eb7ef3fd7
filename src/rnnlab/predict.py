"""Use a trained checkpoint on new text: classify it, or continue it by sampling.

The vocabulary and tokeniser settings travel inside the checkpoint (the datamodule's
`state_dict`), so neither needs Hydra nor the training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rnnlab.data.collate import PadCollate
from rnnlab.data.tokenizers import BOS, EOS, Vocabulary, tokenizer_from_config
from rnnlab.tasks import ClassificationTask, LanguageModelTask
from rnnlab.utils import read_checkpoint


@dataclass
class Prediction:
    label: str
    probability: float


def text_state(ckpt_path: str | Path) -> dict:
    """The datamodule state (vocabulary, tokeniser, labels) stored in a checkpoint."""
    checkpoint = read_checkpoint(ckpt_path)
    for value in checkpoint.values():
        if isinstance(value, dict) and value.get("vocab") and "tokenizer" in value:
            return value
    raise ValueError(f"{ckpt_path} holds no vocabulary: it was not trained on text data")


class Classifier:
    """A classification checkpoint plus the text pipeline it was trained with."""

    def __init__(self, ckpt_path: str | Path) -> None:
        state = text_state(ckpt_path)
        self.tokenizer = tokenizer_from_config(state["tokenizer"])
        self.vocab = Vocabulary(state["vocab"])
        self.labels = state["labels"]
        self.max_len = state.get("max_len")
        self.task = ClassificationTask.load_from_checkpoint(ckpt_path, map_location="cpu")
        self.task.eval()

    def encode(self, text: str) -> torch.Tensor:
        ids = self.vocab.encode(self.tokenizer(text))[: self.max_len]
        if not ids:
            raise ValueError(f"text {text!r} is empty or tokenises to nothing")
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


class Generator:
    """A language-model checkpoint that continues a prompt, one character at a time.

    Stream models (Tiny Shakespeare) continue the prompt for `length` characters. Sequence
    models (names: a vocabulary with `<s>` and `</s>`) start after `<s>`, stop at `</s>`, and,
    when conditional, need the `condition` (a label such as "Russian").
    """

    def __init__(self, ckpt_path: str | Path) -> None:
        state = text_state(ckpt_path)
        self.tokenizer = tokenizer_from_config(state["tokenizer"])
        self.vocab = Vocabulary(state["vocab"])
        self.labels = list(state.get("labels") or [])
        self.task = LanguageModelTask.load_from_checkpoint(ckpt_path, map_location="cpu")
        self.task.eval()
        self.sequences = BOS in self.vocab.index and EOS in self.vocab.index
        self.conditional = self.task.condition is not None

    @property
    def default_prompt(self) -> str:
        return "" if self.sequences else "\n"

    def __call__(
        self,
        prompt: str,
        length: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        seed: int | None = None,
        condition: str | None = None,
    ) -> str:
        tokens = self.tokenizer(prompt)
        unknown = sorted({t for t in tokens if t not in self.vocab.index})
        if unknown:
            raise ValueError(f"prompt characters {unknown} are not in the model's vocabulary")
        if self.sequences:
            tokens = [BOS, *tokens]
        if not tokens:
            raise ValueError("prompt= must not be empty for this model")
        condition_id = None
        if self.conditional:
            if condition not in self.labels:
                raise ValueError(f"language={condition!r}: choose one of {self.labels}")
            condition_id = self.labels.index(condition)
        elif condition:
            raise ValueError("this model is not conditional: leave out language=")
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        specials = [self.vocab.index[t] for t in (BOS,) if self.sequences]
        ids = self.task.generate(
            self.vocab.encode(tokens),
            length,
            temperature,
            top_k,
            generator,
            banned_ids=(self.vocab.unk_id, *specials),
            condition=condition_id,
            stop_id=self.vocab.index[EOS] if self.sequences else None,
        )
        return "".join(self.vocab.decode(ids))
