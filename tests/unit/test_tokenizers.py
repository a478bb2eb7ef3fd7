"""Tokenisers and vocabularies: splitting rules, reproducible builds, round-trips."""

from __future__ import annotations

import pytest

from rnnlab.data.tokenizers import (
    PAD,
    UNK,
    CharTokenizer,
    Vocabulary,
    WordTokenizer,
    tokenizer_from_config,
)


def test_word_tokenizer_lowercases_strips_breaks_and_splits_punctuation():
    tokens = WordTokenizer()("Great film!<br /><br />I didn't LIKE the end...")
    assert tokens == ["great", "film", "!", "i", "didn't", "like", "the", "end", ".", ".", "."]


def test_word_tokenizer_can_keep_case():
    assert WordTokenizer(lowercase=False)("Hi, Bob") == ["Hi", ",", "Bob"]


def test_char_tokenizer_keeps_unicode_or_folds_to_ascii():
    assert CharTokenizer()("Ślusarski")[0] == "Ś"
    assert "".join(CharTokenizer(ascii_fold=True)("Ślusarski Müller")) == "Slusarski Muller"


def test_tokenizer_rebuilds_from_its_config():
    for tokenizer in (WordTokenizer(lowercase=False), CharTokenizer(ascii_fold=True)):
        rebuilt = tokenizer_from_config(tokenizer.config())
        assert rebuilt.config() == tokenizer.config()


def test_vocabulary_orders_by_frequency_and_respects_limits():
    texts = [["b", "a", "a"], ["c", "a", "b"], ["d"]]
    vocab = Vocabulary.build(texts)
    assert vocab.tokens == [PAD, UNK, "a", "b", "c", "d"]
    assert Vocabulary.build(texts, min_freq=2).tokens == [PAD, UNK, "a", "b"]
    assert Vocabulary.build(texts, max_size=3).tokens == [PAD, UNK, "a"]


def test_vocabulary_round_trip_and_unknown_tokens(tmp_path):
    vocab = Vocabulary.build([["x", "y"]])
    assert vocab.decode(vocab.encode(["y", "x"])) == ["y", "x"]
    assert vocab.encode(["never-seen"]) == [vocab.unk_id]
    vocab.save(tmp_path / "vocab.json")
    assert Vocabulary.load(tmp_path / "vocab.json").tokens == vocab.tokens


def test_vocabulary_rejects_a_bad_layout():
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", PAD, UNK])
