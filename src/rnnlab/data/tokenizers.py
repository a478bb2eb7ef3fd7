"""Tokenisers and vocabularies for word- and character-level text.

A `Vocabulary` is a list of tokens whose index is the id: `<pad>` = 0, `<unk>` = 1, then the
training tokens by descending frequency (ties alphabetical, so builds are reproducible).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from rnnlab.data.storage import atomic_write_text
from rnnlab.errors import ConfigError

PAD, UNK = "<pad>", "<unk>"
# start and end of a sequence, for models that generate whole sequences (names)
BOS, EOS = "<s>", "</s>"
WORD_PATTERN = re.compile(r"[^\W_]+(?:'[^\W_]+)*|[^\w\s]")
HTML_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)


class WordTokenizer:
    """Lower-cased words with `<br />` removed and punctuation split off ("don't" stays whole)."""

    def __init__(self, lowercase: bool = True) -> None:
        self.lowercase = lowercase

    def __call__(self, text: str) -> list[str]:
        text = HTML_BREAK.sub(" ", text)
        if self.lowercase:
            text = text.lower()
        return WORD_PATTERN.findall(text)

    def config(self) -> dict:
        return {"kind": "word", "lowercase": self.lowercase}


class CharTokenizer:
    """Characters, Unicode kept; `ascii_fold` strips accents (Ślusarski -> Slusarski)."""

    def __init__(self, ascii_fold: bool = False) -> None:
        self.ascii_fold = ascii_fold

    def __call__(self, text: str) -> list[str]:
        if self.ascii_fold:
            text = "".join(
                c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn"
            )
        return list(text)

    def config(self) -> dict:
        return {"kind": "char", "ascii_fold": self.ascii_fold}


def tokenizer_from_config(config: dict) -> WordTokenizer | CharTokenizer:
    """Rebuild a tokeniser from its `config()` (as stored in checkpoints)."""
    settings = {key: value for key, value in config.items() if key != "kind"}
    if config["kind"] == "word":
        return WordTokenizer(**settings)
    if config["kind"] == "char":
        return CharTokenizer(**settings)
    raise ValueError(f"unknown tokenizer kind {config['kind']!r}")


class Vocabulary:
    """Token <-> id mapping with `<pad>` = 0 and `<unk>` = 1."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if list(tokens[:2]) != [PAD, UNK]:
            raise ValueError(f"a vocabulary starts with {PAD!r}, {UNK!r}; got {list(tokens[:2])}")
        self.tokens = list(tokens)
        self.index = {token: i for i, token in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise ValueError("a vocabulary must not repeat a token")

    pad_id = 0
    unk_id = 1

    @classmethod
    def build(
        cls,
        tokenized: Iterable[Sequence[str]],
        max_size: int | None = None,
        min_freq: int = 1,
        specials: Sequence[str] = (),
    ) -> Vocabulary:
        """From tokenised training texts: the `max_size` most frequent with count >= min_freq.

        `specials` (e.g. `<s>`, `</s>`) follow `<pad>` and `<unk>`: ids 2, 3, ...
        """
        counts = Counter()
        for tokens in tokenized:
            counts.update(tokens)
        for token in (PAD, UNK, *specials):
            counts.pop(token, None)
        ranked = sorted(
            (item for item in counts.items() if item[1] >= min_freq),
            key=lambda item: (-item[1], item[0]),
        )
        if max_size is not None:
            ranked = ranked[: max(0, max_size - 2 - len(specials))]
        return cls([PAD, UNK, *specials, *(token for token, _ in ranked)])

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, tokens: Iterable[str]) -> list[int]:
        return [self.index.get(token, self.unk_id) for token in tokens]

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.tokens[i] for i in ids]

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.tokens, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | Path) -> Vocabulary:
        try:
            tokens = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as error:  # cut short by an older writer, a full disk or a hand edit
            raise ConfigError(
                f"{path} is not a complete vocabulary ({error}): delete it, or the cache folder "
                "holding it, to rebuild it"
            ) from error
        return cls(tokens)
