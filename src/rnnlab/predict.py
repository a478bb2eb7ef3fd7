"""Classify new text with a trained checkpoint, reusing its exact tokeniser and vocabulary.

The vocabulary and tokeniser settings travel inside the checkpoint (the datamodule's
`state_dict`), so prediction needs neither Hydra nor the training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from rnnlab.data.collate import PadCollate
from rnnlab.data.tokenizers import Vocabulary, tokenizer_from_config
from rnnlab.tasks import ClassificationTask


@dataclass
class Prediction:
    label: str
    probability: float


class Classifier:
    """A checkpoint's task plus the text pipeline it was trained with."""

    def __init__(self, ckpt_path: str | Path) -> None:
        ckpt_path = Path(ckpt_path)
        if not ckpt_path.is_file():
            raise FileNotFoundError(f"ckpt_path={str(ckpt_path)!r} is not a file")
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        state = next(
            (
                value
                for value in checkpoint.values()
                if isinstance(value, dict) and "vocab" in value and "tokenizer" in value
            ),
            None,
        )
        if state is None or state["vocab"] is None:
            raise ValueError(f"{ckpt_path} holds no vocabulary: it was not trained on text data")
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
