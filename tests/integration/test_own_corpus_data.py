"""data=corpus: language modelling on any text by config alone; Shakespeare as its preset;
word-level vocabulary, tied embeddings, perplexity, word-level sampling and bad inputs."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from rnnlab.data.corpus import LINE_END
from rnnlab.data.tokenizers import WordTokenizer
from rnnlab.errors import ConfigError
from rnnlab.tasks import LanguageModelTask
from rnnlab.train import train
from tests.conftest import ROOT
from tests.integration.test_own_series_data import datamodule

LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "A stitch in time saves nine, they say; the dog agrees.",
    "Where the river bends, the old mill turns and turns.",
    "Every fox has its day, and every dog its night.",
]
TEXT = "\n".join(LINES * 40) + "\n"  # about 8 KB


@pytest.fixture
def corpus(tmp_path):
    """The text as one file, and as train / validation / test files."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "all.txt").write_text(TEXT, encoding="utf-8")
    (folder / "train.txt").write_text("\n".join(LINES * 30) + "\n", encoding="utf-8")
    (folder / "valid.txt").write_text("\n".join(LINES[::-1] * 5) + "\n", encoding="utf-8")
    test = "\n".join(LINES[1:] * 5) + "\nAn unseen zebra line.\n"
    (folder / "test.txt").write_text(test, encoding="utf-8")
    return folder


def small(*extra):
    return [
        "data=corpus",
        "model=lstm",
        "model.hidden_size=16",
        "task.embedding_dim=16",
        "data.batch_size=4",
        "data.val_batch_size=2",
        "data.bptt=16",
        "trainer.max_epochs=1",
        "logger=none",
        *extra,
    ]


def word_stream(text):
    """Words of each line, then <eos>: the word_language_model example's layout, by hand."""
    tokenize = WordTokenizer()
    return [t for line in text.split("\n")[:-1] for t in [*tokenize(line), LINE_END]]


@pytest.mark.parametrize("level", ["char", "word"])
def test_one_file_trains_by_config_alone_and_reports_perplexity(make_cfg, corpus, level):
    path = corpus / "all.txt"
    metrics = train(make_cfg(small(f"data.path={path}", f"data.level={level}")))
    for split in ("val", "test"):
        assert metrics[f"{split}/ppl"] == pytest.approx(math.exp(metrics[f"{split}/loss"]))
        # bits per character only where a token is a character
        assert (f"{split}/bpc" in metrics) == (level == "char")
    assert ("train/bpc" in metrics) == (level == "char")


def test_the_split_ratios_cut_the_token_stream_where_a_hand_computation_does(make_cfg, corpus):
    path = corpus / "all.txt"
    dm = datamodule(make_cfg, small(f"data.path={path}", "data.split_ratios=[0.8,0.1,0.1]"))
    n = len(TEXT)
    train_end, test_start = int(n * 0.8), n - int(n * 0.1)
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [
        train_end,
        test_start - train_end,
        n - test_start,
    ]
    decode = dm.vocab.decode
    assert "".join(decode(dm.datasets["val"].tolist())) == TEXT[train_end:test_start]
    assert "".join(decode(dm.datasets["test"].tolist())) == TEXT[test_start:]
    assert dm.spec.vocab_size == len(set(TEXT[:train_end])) + 2  # <pad>, <unk>


def test_three_files_test_on_the_test_file_with_the_training_vocabulary(make_cfg, corpus):
    files = [
        f"data.{k}_path={corpus / f}" for k, f in [("train", "train.txt"), ("val", "valid.txt")]
    ]
    files.append(f"data.test_path={corpus / 'test.txt'}")
    dm = datamodule(make_cfg, small(*files, "data.level=word"))
    for split, name in [("train", "train.txt"), ("val", "valid.txt"), ("test", "test.txt")]:
        expected = word_stream((corpus / name).read_text())
        assert dm.vocab.decode(dm.datasets[split].tolist()) == [
            t if t in dm.vocab.index else "<unk>" for t in expected
        ]
    # "an unseen zebra line" is only in the test file: four <unk>, none in the vocabulary
    assert "zebra" not in dm.vocab.index and int((dm.datasets["test"] == 1).sum()) == 4
    metrics = train(make_cfg(small(*files, "data.level=word")))
    assert metrics["test/loss"] != pytest.approx(metrics["val/loss"])  # another text


def test_without_a_test_part_the_test_split_is_the_validation_text(make_cfg, corpus):
    path = corpus / "all.txt"
    dm = datamodule(make_cfg, small(f"data.path={path}", "data.split_ratios=[0.9,0.1,0]"))
    assert dm.datasets["test"] is dm.datasets["val"]
    assert len(dm.datasets["train"]) + len(dm.datasets["val"]) == len(TEXT)


def test_word_vocabulary_is_capped_by_training_frequency_with_unk(make_cfg, corpus):
    path = corpus / "all.txt"
    dm = datamodule(make_cfg, small(f"data.path={path}", "data.level=word", "data.max_vocab=12"))
    train_tokens = word_stream(TEXT)[: len(dm.datasets["train"])]
    counts = Counter(t for t in train_tokens if t != LINE_END)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    # <pad>, <unk>, <eos>, then the 9 most frequent training words (ties alphabetical)
    assert dm.vocab.tokens == ["<pad>", "<unk>", LINE_END, *(w for w, _ in ranked[:9])]
    rare = ranked[9][0]
    position = train_tokens.index(rare)
    assert int(dm.datasets["train"][position]) == 1  # a word past the cap reads as <unk>
    assert dm.spec.tokenizer == {"kind": "word", "lowercase": True}


def test_a_literal_unk_in_the_text_is_the_unknown_word(make_cfg, corpus):
    (corpus / "ptb.txt").write_text(" the <unk> fox <unk>.\n" * 60, encoding="utf-8")
    dm = datamodule(make_cfg, small(f"data.path={corpus / 'ptb.txt'}", "data.level=word"))
    assert dm.vocab.decode(dm.datasets["train"][:6].tolist()) == [
        "the",
        "<unk>",
        "fox",
        "<unk>",
        ".",
        LINE_END,
    ]
    assert "unk" not in dm.vocab.index and dm.vocab.tokens[1] == "<unk>"


def test_tied_embeddings_share_one_parameter_and_one_gradient():
    torch.manual_seed(0)
    tied = LanguageModelTask(
        vocab_size=11, model={"cell": "lstm", "hidden_size": 8}, embedding_dim=8, tie_weights=True
    )
    assert tied.decoder.weight is tied.encoder.encode.weight
    assert tied.decoder.weight.data_ptr() == tied.encoder.encode.weight.data_ptr()
    # the oracle: an untied copy with the same values in both tables; the tied gradient is
    # the sum of the embedding's and the output layer's
    untied = LanguageModelTask(
        vocab_size=11, model={"cell": "lstm", "hidden_size": 8}, embedding_dim=8, tie_weights=False
    )
    untied.load_state_dict(tied.state_dict())
    size = sum(p.numel() for p in untied.parameters()) - 11 * 8  # one table fewer
    assert sum(p.numel() for p in tied.parameters()) == size
    inputs = torch.randint(2, 11, (3, 7))
    targets = torch.randint(2, 11, (3, 7))
    for task in (tied, untied):
        task.eval()
        logits, _ = task(inputs)
        F.cross_entropy(logits.flatten(0, 1), targets.flatten()).backward()
    expected = untied.encoder.encode.weight.grad + untied.decoder.weight.grad
    torch.testing.assert_close(tied.encoder.encode.weight.grad, expected)


def test_tied_embeddings_stay_tied_through_a_checkpoint(make_cfg, corpus, tmp_path):
    path = corpus / "all.txt"
    train(make_cfg(small(f"data.path={path}", "data.level=word", "task.tie_weights=true")))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    restored = LanguageModelTask.load_from_checkpoint(ckpt, map_location="cpu")
    assert restored.decoder.weight is restored.encoder.encode.weight
    saved = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    torch.testing.assert_close(restored.decoder.weight, saved["encoder.encode.weight"])


def test_tied_embeddings_of_another_size_name_both_keys():
    with pytest.raises(
        ConfigError,
        match=r"task.tie_weights.*model.hidden_size \(16\).*"
        r"task.embedding_dim \(8\)",
    ):
        LanguageModelTask(
            vocab_size=11,
            model={"cell": "gru", "hidden_size": 16},
            embedding_dim=8,
            tie_weights=True,
        )


def test_a_word_level_checkpoint_samples_spaced_words(make_cfg, corpus, tmp_path):
    path = corpus / "all.txt"
    train(make_cfg(small(f"data.path={path}", "data.level=word")))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    task = LanguageModelTask.load_from_checkpoint(ckpt, map_location="cpu")
    # the prompt is read with the checkpoint's tokeniser and vocabulary ("Zebra" is unknown)
    prompt_ids = task.vocab.encode(["the", "quick", "<unk>"])
    ids = task.generate(prompt_ids, 12, generator=torch.Generator().manual_seed(4), banned_ids=(1,))
    text = task.generate_text("The quick Zebra", 12, generator=torch.Generator().manual_seed(4))
    words = task.vocab.decode(ids)
    expected = "".join("\n" if w == LINE_END else f" {w}" for w in words).replace("\n ", "\n")
    assert text == expected and len(words) == 12
    result = subprocess.run(
        [
            sys.executable,
            "scripts/generate.py",
            f"ckpt_path={ckpt}",
            "prompt=the dog",
            "length=15",
            "seed=0",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    sampled = result.stdout.removeprefix("the dog").split()
    assert sampled and set(sampled) <= set(task.vocab.tokens)


def test_the_shakespeare_preset_is_data_corpus_at_character_level(make_cfg, tmp_path):
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True)
    (folder / "input.txt").write_text(TEXT, encoding="utf-8")
    options = ["data.batch_size=4", "data.bptt=16", "data.estimate_windows=0"]
    preset = datamodule(
        make_cfg, ["data=shakespeare", f"paths.data_dir={tmp_path / 'data'}", *options]
    )
    generic = datamodule(
        make_cfg,
        [
            "data=corpus",
            f"data.path={folder / 'input.txt'}",
            "data.split_ratios=[0.9,0.1,0]",
            *options,
        ],
    )
    assert len(preset.train_ids) == int(len(TEXT) * 0.9)  # nanoGPT's split
    for split in ("train", "val", "test"):
        assert torch.equal(preset.datasets[split], generic.datasets[split])
    assert preset.datasets["test"] is preset.datasets["val"]
    assert preset.state_dict() == generic.state_dict()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.path=nowhere.txt"], r"data.path='nowhere.txt': no such file"),
        (["data.split_ratios=[0.8,0.1,0.2]"], r"data.split_ratios must be .* sum to 1"),
        (["data.split_ratios=[0.9,0.1]"], r"data.split_ratios must be three"),
        (
            ["data.bptt=2000"],
            r"validation part \(402 characters\) is shorter than one "
            r"window of data.bptt=2000",
        ),
        (["data.level=sentence"], r"data.level must be one of \['char', 'word'\]"),
        (["data.train_path=x.txt"], r"data.path .* or data.train_path"),
    ],
    ids=["missing-file", "ratios-sum", "ratios-length", "short", "level", "both-sources"],
)
def test_bad_corpus_configs_are_one_line_errors_naming_the_key(
    make_cfg, corpus, overrides, message
):
    with pytest.raises(ConfigError, match=message) as error:
        datamodule(make_cfg, small(f"data.path={corpus / 'all.txt'}", *overrides))
    assert "\n" not in str(error.value)


def test_a_split_shorter_than_one_window_names_its_file(make_cfg, corpus):
    (corpus / "valid.txt").write_text("Too short.\n", encoding="utf-8")
    files = [f"data.train_path={corpus / 'train.txt'}", f"data.val_path={corpus / 'valid.txt'}"]
    with pytest.raises(
        ConfigError,
        match=r"valid.txt: its validation part \(11 characters\) "
        r"is shorter than one window of data.bptt=16",
    ):
        datamodule(make_cfg, small(*files, "data.val_batch_size=1"))
    (corpus / "valid.txt").write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"valid.txt is empty \(data.val_path\)"):
        datamodule(make_cfg, small(*files))
