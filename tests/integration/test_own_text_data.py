"""data=text: any text-classification data set by config alone, its bad inputs, and IMDb as a
preset of it (the same ids, split and batch order as the ImdbDataModule it replaced)."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import subprocess
import sys
from collections import Counter

import datasets
import pandas as pd
import pytest
import torch

from rnnlab.data.imdb import ImdbDataModule
from rnnlab.data.text_classification import SEP, TextClassificationDataModule
from rnnlab.errors import ConfigError
from rnnlab.predict import Classifier
from rnnlab.train import evaluate, train
from rnnlab.utils import build, read_checkpoint
from tests.conftest import ROOT, shared_data
from tests.integration.test_text_data import imdb_module, write_imdb

WORDS = {
    "business": "market shares profit bank",
    "sci": "atom physics cell experiment",
    "sports": "goal match team score",
    "world": "election border minister treaty",
}
TINY = ["model.hidden_size=8", "data.batch_size=4", "data.min_freq=1"]


def sentences(rows: int, offset: int = 0) -> pd.DataFrame:
    """GLUE's SST-2 layout: sentence, label (0/1), idx; the label's words decide the class."""
    texts = [
        ("a dull , tedious mess" if i % 2 == 0 else "a warm and lovely film") + f" no {i}"
        for i in range(offset, offset + rows)
    ]
    return pd.DataFrame({"sentence": texts, "label": [i % 2 for i in range(rows)], "idx": rows})


def write_glue(folder, test_labels: int | None = None):
    """train.parquet and validation.parquet (column `sentence`), and a test.parquet with all
    labels `test_labels` when given (GLUE's test labels are -1)."""
    folder.mkdir(parents=True, exist_ok=True)
    sentences(32).to_parquet(folder / "train.parquet")
    sentences(8, offset=100).to_parquet(folder / "validation.parquet")
    if test_labels is not None:
        sentences(8, offset=200).assign(label=test_labels).to_parquet(folder / "test.parquet")
    return folder


def news(rows: int, seed: int) -> pd.DataFrame:
    """Four topics as string labels, in a fixed but shuffled order."""
    topics = sorted(WORDS)
    labels = [topics[(i * 3 + seed) % 4] for i in range(rows)]
    return pd.DataFrame(
        {"text": [f"{WORDS[t]} story {i}" for i, t in enumerate(labels)], "topic": labels}
    )


def module(tmp_path, **kwargs) -> TextClassificationDataModule:
    options = {"cache_dir": str(tmp_path / "cache"), "batch_size": 4, "min_freq": 1, "seed": 0}
    return TextClassificationDataModule(**(options | kwargs))


def run_config(make_cfg, tmp_path, overrides: list[str]) -> dict:
    cfg = make_cfg(["data=text", *TINY, f"paths.cache_dir={tmp_path / 'cache'}", *overrides])
    return train(cfg)


# --- three formats, trained by config alone


def test_glue_like_parquet_folder_without_test_split_trains_and_reports_validation(
    make_cfg, tmp_path, caplog
):
    caplog.set_level(logging.INFO, logger="rnnlab")
    folder = write_glue(tmp_path / "sst2")
    metrics = run_config(
        make_cfg,
        tmp_path,
        [f"data.path={folder}", "data.text_column=sentence", "debug=fdr"],
    )
    assert metrics["reported_split"] == "val" and not any(k.startswith("test/") for k in metrics)
    assert math.isfinite(metrics["val/loss"]) and 0 <= metrics["val/acc"] <= 1
    assert "test split skipped: the source has no 'test' split" in caplog.text
    assert json.loads((tmp_path / "metrics.json").read_text())["reported_split"] == "val"


def test_glue_test_labels_of_minus_one_are_skipped_and_the_best_checkpoint_validated(
    make_cfg, tmp_path, caplog
):
    """A hub id read from its local copy (data_dir/glue/sst2/<split>.parquet), as GLUE ships:
    the test split's labels are all -1. The run reports the best checkpoint's validation."""
    caplog.set_level(logging.INFO, logger="rnnlab")
    write_glue(tmp_path / "data" / "glue" / "sst2", test_labels=-1)
    overrides = ["data.path=glue", "data.name=sst2", "data.text_column=sentence"]
    overrides += [f"paths.data_dir={tmp_path / 'data'}", "trainer.max_epochs=2", "logger=none"]
    metrics = run_config(make_cfg, tmp_path, [*overrides, "~callbacks.progress_bar"])
    assert "test split skipped: the test split 'test' has no labels" in caplog.text
    assert metrics["reported_split"] == "val" and "test/acc" not in metrics
    # the reported val/acc is the best epoch's (validated again from its checkpoint)
    assert metrics["val/acc"] == pytest.approx(metrics["val/acc_best"])
    summary = json.loads((tmp_path / "run.json").read_text())
    assert summary["reported_split"] == "val" and summary["test"] == {}
    best = next((tmp_path / "checkpoints").glob("epoch_*.ckpt"))
    evaluated = evaluate(make_cfg(["data=text", *overrides, *TINY, f"ckpt_path={best}"], "eval"))
    assert evaluated["reported_split"] == "val"
    assert evaluated["val/acc"] == pytest.approx(metrics["val/acc"], abs=1e-6)
    # prediction reads the vocabulary and class names from the checkpoint alone
    predictions = Classifier(best)(["a warm and lovely film", "a dull mess"])
    assert [p.label in ("0", "1") and 0.5 <= p.probability <= 1 for p in predictions] == [True] * 2


def test_csv_with_four_string_labels(make_cfg, tmp_path):
    train_file, test_file = tmp_path / "train.csv", tmp_path / "test.csv"
    news(48, seed=0).to_csv(train_file, index=False)
    test_frame = news(12, seed=1)
    test_frame.to_csv(test_file, index=False)
    files = f"data.data_files={{train:'{train_file}',test:'{test_file}'}}"
    overrides = ["data.path=csv", files, "data.label_column=topic", "debug=fdr"]
    metrics = run_config(make_cfg, tmp_path, overrides)
    assert math.isfinite(metrics["test/loss"]) and "reported_split" not in metrics

    files = {"train": str(train_file), "test": str(test_file)}
    dm = module(tmp_path, path="csv", data_files=files, label_column="topic")
    dm.setup()
    assert dm.labels == ["business", "sci", "sports", "world"] and dm.spec.num_classes == 4
    # the test split keeps its order: its class ids name its rows' topics
    assert [dm.labels[i] for i in dm.test_set.labels.tolist()] == test_frame["topic"].tolist()
    # validation carved from train: 10 % of 48, every class in it
    assert len(dm.val_set) == 5 and set(dm.val_set.labels.tolist()) == {0, 1, 2, 3}


def test_json_lines_at_character_level(make_cfg, tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    for split, rows in (("train", 24), ("validation", 8), ("test", 8)):
        frame = pd.DataFrame(
            {"review": [f"{'good' if i % 3 else 'bad'} {i}" for i in range(rows)]}
        ).assign(stars=[1 + i % 3 for i in range(rows)])
        frame.to_json(folder / f"{split}.jsonl", orient="records", lines=True)
    files = {s: str(folder / f"{s}.jsonl") for s in ("train", "validation", "test")}
    options = ["data.path=json", "data.text_column=review", "data.label_column=stars"]
    files_override = "data.data_files={" + ",".join(f"{s}:'{p}'" for s, p in files.items()) + "}"
    metrics = run_config(make_cfg, tmp_path, [*options, files_override, "data.level=char"])
    assert math.isfinite(metrics["test/acc"]) and metrics["epochs"] >= 1

    char = module(
        tmp_path,
        path="json",
        data_files=files,
        text_column="review",
        label_column="stars",
        level="char",
    )
    char.setup()
    assert char.labels == ["1", "2", "3"]  # the sorted integer values, as ids 0..2
    assert char.test_set.labels.tolist() == [i % 3 for i in range(8)]
    assert char.vocab.decode(char.test_set.sequences[0].tolist()) == list("bad 0")
    assert char.data_state()["tokenizer"]["kind"] == "char"


def test_sentence_pairs_are_joined_by_a_separator(tmp_path):
    folder = tmp_path / "pairs"
    folder.mkdir()
    frame = pd.DataFrame(
        {
            "premise": ["the cat sat", "a dog ran", "it rains", "sun is out"] * 4,
            "hypothesis": ["a cat sat", "nobody ran", "it is wet", "it is dark"] * 4,
            "label": [0, 1, 0, 1] * 4,
        }
    )
    frame.to_parquet(folder / "train.parquet")
    frame.iloc[:4].to_parquet(folder / "test.parquet")
    dm = module(tmp_path, path=str(folder), text_column="premise", text_pair_column="hypothesis")
    dm.setup()
    assert dm.vocab.tokens[2] == SEP and dm.data_state()["text_pair_separator"] == SEP
    words = dm.vocab.decode(dm.test_set.sequences[0].tolist())
    assert words == ["the", "cat", "sat", SEP, "a", "cat", "sat"]


# --- bad input: one error naming the key


def glue_module(tmp_path, **kwargs) -> TextClassificationDataModule:
    folder = write_glue(tmp_path / "glue")
    return module(tmp_path, path=str(folder), text_column="sentence", **kwargs)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (
            {"text_column": "text"},
            r"lacks column data.text_column='text'; its columns: \['sentence', 'label', 'idx'\]",
        ),
        ({"label_column": "gold"}, r"lacks column data.label_column='gold'; its columns: \["),
        (
            {"text_pair_column": "sentence2"},
            r"lacks column data.text_pair_column='sentence2'",
        ),
        (
            {"train_split": "training"},
            r"data.train_split='training' is not a split .*"
            r"its splits: \['train', 'validation'\]",
        ),
        ({"validation_split": "dev"}, r"data.validation_split='dev' is not a split"),
        ({"test_split": "test"}, r"data.test_split='test' is not a split"),
    ],
)
def test_missing_columns_and_splits_are_named_with_what_exists(tmp_path, options, message):
    options = {"text_column": "sentence", **options}
    folder = write_glue(tmp_path / "glue")
    with pytest.raises(ConfigError, match=message):
        module(tmp_path, path=str(folder), **options).setup()


def test_float_labels_are_refused(tmp_path):
    folder = write_glue(tmp_path / "glue")
    for split in ("train", "validation"):
        frame = pd.read_parquet(folder / f"{split}.parquet")
        frame.assign(label=frame["label"] * 0.5).to_parquet(folder / f"{split}.parquet")
    with pytest.raises(ConfigError, match=r"data.label_column='label' holds float64 values"):
        module(tmp_path, path=str(folder), text_column="sentence").setup()


def test_an_empty_training_split_is_refused(tmp_path, monkeypatch):
    """A hub data set with an empty training split (files with no rows fail inside datasets,
    named below), and a training split whose texts are all blank."""
    empty = datasets.Dataset.from_dict({"text": [], "label": []})
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: datasets.DatasetDict(train=empty))
    with pytest.raises(
        ConfigError, match=r"data.train_split='train' of data.path='org/set' is empty"
    ):
        module(tmp_path, path="org/set").setup()
    monkeypatch.undo()
    header_only = tmp_path / "train.csv"
    header_only.write_text("text,label\n")
    with pytest.raises(ConfigError, match=r"could not read data.path='csv' data.data_files="):
        module(tmp_path, path="csv", data_files=str(header_only)).setup()
    blank = tmp_path / "blank.csv"
    frame = pd.DataFrame({"text": ["<br />", ""] * 8, "label": [0, 1] * 8})
    frame.to_csv(blank, index=False)  # "" is read back as a missing value
    with pytest.raises(ConfigError, match=r"tokenises to nothing: check data.text_column='text'"):
        module(tmp_path, path="csv", data_files=str(blank)).setup()


def test_one_class_and_unknown_labels_are_refused(tmp_path):
    folder = write_glue(tmp_path / "glue")
    pd.read_parquet(folder / "train.parquet").assign(label=1).to_parquet(folder / "train.parquet")
    with pytest.raises(ConfigError, match=r"data.label_column='label' holds one class"):
        module(tmp_path, path=str(folder), text_column="sentence").setup()
    write_glue(folder)
    frame = pd.read_parquet(folder / "validation.parquet")
    frame.assign(label=frame["label"] + 5).to_parquet(folder / "validation.parquet")
    with pytest.raises(ConfigError, match=r"the val split's .* has labels \[5, 6\]"):
        module(tmp_path, path=str(folder), text_column="sentence").setup()


def test_missing_files_and_paths_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"data.path='\./nowhere/texts' does not exist"):
        module(tmp_path, path="./nowhere/texts").setup()
    missing = str(tmp_path / "absent.csv")
    with pytest.raises(ConfigError, match=r"could not read data.path='csv' data.data_files="):
        module(tmp_path, path="csv", data_files=missing).setup()


def test_no_path_and_no_test_split_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"data.path is required"):
        module(tmp_path).setup()
    dm = glue_module(tmp_path)
    dm.setup()
    with pytest.raises(ConfigError, match=r"has no labelled test split \(data.test_split\)"):
        dm.test_dataloader()


def test_offline_without_a_local_copy_names_both_fixes(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    dm = module(tmp_path, path="glue", name="sst2", data_dir=str(tmp_path / "empty"))
    with pytest.raises(FileNotFoundError, match="RNNLAB_DATA_DIR") as error:
        dm.setup()
    message = str(error.value)
    assert "data.data_dir" in message and "hub" in message and "glue/sst2/train.parquet" in message


def test_a_bad_column_is_one_line_on_the_command_line(tmp_path):
    folder = write_glue(tmp_path / "glue")
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "data=text",
            f"data.path={folder}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
            "logger=none",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: the train split of data.path="
    ) and "lacks column data.text_column='text'; its columns: ['sentence', 'label', 'idx']" in (
        result.stderr
    )


# --- IMDb, a preset of data=text

# Computed on this fixture by ImdbDataModule before IMDb became a preset (its own loading,
# splitting and encoding code): review numbers of the training part in order, the first
# epoch's batches (as review numbers) and a digest of every id of the three parts.
OLD_IMDB_TRAIN = [3, 27, 10, 0, 6, 20, 29, 13, 17, 28, 22, 18, 24, 21, 12, 5, 11, 4, 14, 23, 1, 8]
OLD_IMDB_TRAIN += [25, 9]
OLD_IMDB_EPOCH0 = [[3, 25, 27, 1], [4, 12, 14, 22], [8, 6, 18, 24], [5, 21, 23, 13]]
OLD_IMDB_EPOCH0 += [[10, 0, 28, 20], [9, 17, 11, 29]]
OLD_IMDB_IDS = "ecbfe74ca9beebbc8ea64e11a802e33359ea52e7671a6273559598f196bfdf01"


def test_imdb_preset_encodes_splits_and_batches_as_before(tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    dm = imdb_module(tmp_path, bucket_size_multiplier=400, length_noise=0.01)
    dm.setup()

    def number(sequence: torch.Tensor) -> int:
        words = dm.vocab.decode(sequence.tolist())
        return int(words[words.index("take") + 1])

    train_numbers = [number(sequence) for sequence in dm.train_set.sequences]
    assert train_numbers == OLD_IMDB_TRAIN
    assert sorted(set(range(32)) - set(train_numbers)) == [2, 7, 15, 16, 19, 26, 30, 31]
    assert dm.train_set.labels.tolist() == [n % 2 for n in train_numbers]
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(0)
    batches = [[train_numbers[i] for i in batch] for batch in loader.batch_sampler]
    assert batches == OLD_IMDB_EPOCH0
    digest = hashlib.sha256()
    for split in ("train", "val", "test"):
        for sequence in dm.datasets[split].sequences:
            digest.update(sequence.numpy().tobytes() + b"|")
    assert digest.hexdigest() == OLD_IMDB_IDS
    assert len(dm.vocab) == 43 and dm.vocab.tokens[:6] == ["<pad>", "<unk>", ".", "take", "!", ","]
    assert dm.spec.labels == ("neg", "pos") and dm.test_set.labels.tolist() == [
        i % 2 for i in range(32)
    ]


def test_imdb_preset_and_data_text_read_the_same_copy_alike(make_cfg, tmp_path):
    """data=imdb is data=text with IMDb's path and label names: the same ids either way; its
    checkpoints keep the state the old ImdbDataModule wrote, under its name."""
    write_imdb(tmp_path / "data" / "imdb")
    common = [f"paths.data_dir={tmp_path / 'data'}", "debug=fdr"]
    preset = make_cfg(["data=imdb", *TINY, *common, f"paths.cache_dir={tmp_path / 'c1'}"])
    generic = make_cfg(
        ["data=text", "data.path=stanfordnlp/imdb", "data.test_split=test", *TINY, *common]
    )
    modules = []
    for cfg in (preset, generic):
        dm = build(cfg.data)
        dm.setup()
        modules.append(dm)
    assert isinstance(modules[0], ImdbDataModule) and not isinstance(modules[1], ImdbDataModule)
    assert modules[0].vocab.tokens == modules[1].vocab.tokens
    assert all(
        torch.equal(a, b)
        for a, b in zip(modules[0].test_set.sequences, modules[1].test_set.sequences, strict=True)
    )
    assert modules[1].labels == ["0", "1"]  # no label_names: the values themselves


def test_imdb_checkpoint_keeps_the_old_data_state(make_cfg, tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    paths = [f"paths.data_dir={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    overrides = ["data=imdb", *TINY, *paths, "logger=none"]
    train(make_cfg([*overrides, "trainer.max_epochs=1", "~callbacks.progress_bar"]))
    state = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["ImdbDataModule"]
    assert sorted(state) == ["labels", "max_len", "seed", "tokenizer", "vocab"]
    assert state["labels"] == ["neg", "pos"]
    assert state["tokenizer"] == {"kind": "word", "lowercase": True}


@pytest.mark.slow
def test_full_imdb_through_local_parquet_files(tmp_path):
    """The hub's parquet files passed as a packaged builder's files give IMDb's sizes."""
    folder = shared_data("imdb")
    files = {split: str(folder / f"{split}.parquet") for split in ("train", "test")}
    dm = module(tmp_path, path="parquet", data_files=files, min_freq=2)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (22500, 2500, 25000)
    assert dm.labels == ["0", "1"] and Counter(dm.test_set.labels.tolist()) == {0: 12500, 1: 12500}


def test_missing_labels_are_named_not_blamed_on_the_dtype(tmp_path):
    """One empty label cell turns a CSV's integer labels into floats (and string labels into
    None): the error names the missing values and their row, not the dtype."""
    frame = pd.DataFrame({"text": [f"word {i}" for i in range(16)], "label": [0, 1] * 8})
    for labels, name in ((frame["label"], "ints"), (frame["label"].map({0: "neg", 1: "pos"}), "s")):
        path = tmp_path / f"{name}.csv"
        frame.assign(label=labels.astype(object).where(frame.index != 5, None)).to_csv(
            path, index=False
        )
        with pytest.raises(
            ConfigError,
            match=r"the train split .* has 1 missing data.label_column='label' values, "
            r"the first in row 5: fill or drop them",
        ):
            module(tmp_path, path="csv", data_files=str(path)).setup()


def test_a_local_file_as_data_path_is_read_by_its_extension(tmp_path):
    """data.path=news.csv (one file, as the docs allow) reads it with the csv builder instead
    of asking the hub for a data set called news.csv; a TSV keeps its tab separator."""
    frame = news(80, seed=1)
    frame.to_csv(tmp_path / "news.csv", index=False)
    frame.to_csv(tmp_path / "news.tsv", index=False, sep="\t")
    for name in ("news.csv", "news.tsv"):
        data = module(tmp_path, path=str(tmp_path / name), label_column="topic")
        data.setup()
        assert data.labels == sorted(WORDS)
        assert len(data.train_set) + len(data.val_set) == 80
    (tmp_path / "news.xyz").write_text("text,label\n")
    with pytest.raises(ConfigError, match=r"data.path=.*news.xyz.*name its builder"):
        module(tmp_path, path=str(tmp_path / "news.xyz")).setup()
