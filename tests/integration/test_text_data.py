"""IMDb, names and Shakespeare text files: tiny fixtures of the real formats, and the full data."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import Counter

import datasets
import pandas as pd
import pytest
import torch

from rnnlab.data import names as names_module
from rnnlab.data.imdb import ImdbDataModule
from rnnlab.data.names import NamesDataModule, group_split
from rnnlab.data.shakespeare import ShakespeareDataModule
from rnnlab.train import train
from tests.conftest import ROOT, shared_data

POSITIVE = ["A wonderful, moving film.<br /><br />Loved it!", "Great acting and a great story."]
NEGATIVE = ["Dull. Boring plot, awful dialogue.", "I hated every minute of this mess."]


def write_imdb(folder, rows=32, empty=0, extra_label=None):
    """A parquet copy in the hub's schema: text, label (0/1), rating."""
    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test", "unsupervised"):
        texts = [(POSITIVE if i % 2 else NEGATIVE)[i % 2 == 0] + f" take {i}" for i in range(rows)]
        labels = [i % 2 for i in range(rows)] if split != "unsupervised" else [-1] * rows
        for i in range(empty):
            texts[i] = "   "
        if extra_label is not None and split == "train":
            labels[0] = extra_label
        pd.DataFrame(
            {"text": texts, "label": labels, "rating": [8 if y else 2 for y in labels]}
        ).astype({"label": "int64", "rating": "int8"}).to_parquet(folder / f"{split}.parquet")
    return folder


def write_names(folder, blank_lines=False):
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "English": [
            "Smith",
            "Jones",
            "Taylor",
            "Brown",
            "Abel",
            "Smith",
            "Wilson",
            "Evans",
            "Walker",
            "Wright",
            "Green",
            "Hall",
        ],
        "French": [
            "Abel",
            "Dubois",
            "Moreau",
            "Laurent",
            "Simon",
            "Michel",
            "Lefebvre",
            "Leroy",
            "Roux",
            "David",
        ],
        "Polish": [
            "Ślusarski",
            "Nowak",
            "Kowalski",
            "Wiśniewski",
            "Wójcik",
            "Kamiński",
            "Lewandowski",
            "Zieliński",
            "Szymański",
            "Woźniak",
        ],
    }
    for language, names in files.items():
        text = "\n".join(names) + "\n"
        if blank_lines:
            text = "\n\n" + text + "\n  \n"
        (folder / f"{language}.txt").write_text(text, encoding="utf-8")
    return folder


def imdb_module(tmp_path, **kwargs):
    defaults = dict(
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "cache"),
        batch_size=4,
        val_fraction=0.25,
        seed=0,
        min_freq=1,
    )
    return ImdbDataModule(**{**defaults, **kwargs})


def test_imdb_loads_a_local_copy_and_splits_train_only(tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    dm = imdb_module(tmp_path)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (24, 8, 32)
    assert Counter(dm.val_set.labels.tolist()) == {0: 4, 1: 4}  # stratified
    assert dm.spec.num_classes == 2 and dm.spec.pad_id == 0
    assert dm.vocab.tokens[:2] == ["<pad>", "<unk>"]
    assert "<br" not in dm.vocab.index and "br" not in dm.vocab.index
    batch = next(iter(dm.train_dataloader()))
    assert batch["inputs"].shape[1] == int(batch["lengths"].max())


def test_imdb_validation_is_a_seeded_stratified_part_of_train(tmp_path):
    write_imdb(tmp_path / "data" / "imdb", rows=40)  # review i: "... take i", label i % 2
    held_out = {}
    for run, seed in enumerate((0, 0, 1)):
        dm = imdb_module(tmp_path, seed=seed, cache_dir=str(tmp_path / f"cache{run}"))
        dm.setup()
        train = []  # min_freq=1: every training review's number is in the vocabulary
        for sequence in dm.train_set.sequences:
            words = dm.vocab.decode(sequence.tolist())
            train.append(int(words[words.index("take") + 1]))
        val = sorted(set(range(40)) - set(train))
        assert sorted(train) != list(range(30)) and len(set(train)) == 30 == len(train)
        assert Counter(i % 2 for i in val) == {0: 5, 1: 5}  # val_fraction of each label
        assert Counter(dm.val_set.labels.tolist()) == {0: 5, 1: 5} and len(dm.val_set) == 10
        held_out.setdefault(seed, []).append(val)
    assert held_out[0][0] == held_out[0][1] and held_out[0][0] != held_out[1][0]


def test_imdb_validation_too_small_for_every_label_names_the_key(tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    with pytest.raises(ValueError, match=r"data.val_fraction=0.01 of each label"):
        imdb_module(tmp_path, val_fraction=0.01).setup()


def test_imdb_vocabulary_comes_from_the_training_part_only(tmp_path):
    folder = write_imdb(tmp_path / "data" / "imdb")
    test = pd.read_parquet(folder / "test.parquet")
    test.loc[0, "text"] = "zyzzyva appears only in test"
    test.to_parquet(folder / "test.parquet")
    dm = imdb_module(tmp_path)
    dm.setup()
    assert "zyzzyva" not in dm.vocab.index
    assert dm.vocab.unk_id in dm.test_set.sequences[0].tolist()


def test_imdb_cache_is_reused_and_keyed_by_settings(tmp_path, monkeypatch):
    write_imdb(tmp_path / "data")  # data_dir may also be the imdb folder itself
    first = imdb_module(tmp_path)
    first.setup()
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a))
    second = imdb_module(tmp_path)
    second.setup()
    assert calls == []  # read from the cache: no loading, no tokenising
    assert all(
        torch.equal(a, b)
        for a, b in zip(first.train_set.sequences, second.train_set.sequences, strict=True)
    )
    assert imdb_module(tmp_path, vocab_size=10).cache_path != first.cache_path


def test_imdb_truncates_when_asked(tmp_path):
    write_imdb(tmp_path / "data")
    dm = imdb_module(tmp_path, max_len=3)
    dm.setup()
    assert int(dm.train_set.lengths.max()) == 3


def test_imdb_drops_and_counts_empty_reviews(tmp_path, caplog):
    write_imdb(tmp_path / "data", empty=2)
    dm = imdb_module(tmp_path)
    dm.setup()
    assert len(dm.train_set) + len(dm.val_set) == 30 and len(dm.test_set) == 30
    assert "tokenise to nothing" in caplog.text
    assert int(dm.train_set.lengths.min()) > 0


def test_imdb_rejects_unknown_labels(tmp_path):
    write_imdb(tmp_path / "data", extra_label=7)
    with pytest.raises(ValueError, match="labels \\[7\\]"):
        imdb_module(tmp_path).setup()


def test_imdb_missing_column_is_named(tmp_path):
    folder = write_imdb(tmp_path / "data")
    frame = pd.read_parquet(folder / "train.parquet").drop(columns=["label"])
    frame.to_parquet(folder / "train.parquet")
    with pytest.raises(ValueError, match="lacks column"):
        imdb_module(tmp_path).setup()


def test_imdb_from_the_hub_when_there_is_no_local_copy(tmp_path, monkeypatch):
    local = write_imdb(tmp_path / "elsewhere")
    real_load = datasets.load_dataset
    requested = []

    def fake_hub(path, *args, **kwargs):
        requested.append(path)
        files = {s: str(local / f"{s}.parquet") for s in ("train", "test", "unsupervised")}
        return real_load("parquet", data_files=files, cache_dir=kwargs.get("cache_dir"))

    monkeypatch.setattr(datasets, "load_dataset", fake_hub)
    dm = imdb_module(tmp_path, data_dir=None)
    dm.setup()
    assert requested == ["stanfordnlp/imdb"] and len(dm.test_set) == 32


def test_imdb_offline_without_a_local_copy_names_both_fixes(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(FileNotFoundError, match="RNNLAB_DATA_DIR") as error:
        imdb_module(tmp_path, data_dir=str(tmp_path / "empty")).setup()
    assert "data.data_dir" in str(error.value) and "hub" in str(error.value)


def test_names_deduplicates_and_never_puts_a_test_name_in_train(tmp_path):
    write_names(tmp_path / "names")
    dm = NamesDataModule(
        data_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        val_fraction=0.2,
        test_fraction=0.2,
        seed=3,
    )
    dm.setup()
    assert len(dm.pairs) == 31  # "Smith" twice in English counts once; "Abel" is in two files
    names = {split: {dm.pairs[i][0] for i in index} for split, index in dm.split_index.items()}
    assert not names["train"] & names["test"] and not names["train"] & names["val"]
    assert dm.spec.num_classes == 3 and dm.spec.labels == ("English", "French", "Polish")
    assert "Ś" in dm.vocab.index  # Unicode kept
    for split in ("val", "test"):
        assert len({dm.pairs[i][1] for i in dm.split_index[split]}) == 3  # every language


def test_group_split_is_seeded_and_stratified():
    pairs = [(f"n{i}", "A") for i in range(100)] + [(f"m{i}", "B") for i in range(20)]
    a = group_split(pairs, (0.1, 0.1), seed=1)
    assert a == group_split(pairs, (0.1, 0.1), seed=1)
    test_languages = Counter(pairs[i][1] for i in a["test"])
    assert test_languages == {"A": 10, "B": 2}


def test_names_blank_lines_are_dropped_and_counted(tmp_path, caplog):
    write_names(tmp_path / "names", blank_lines=True)
    dm = NamesDataModule(data_dir=str(tmp_path / "names"), cache_dir=str(tmp_path / "c"))
    dm.setup()
    assert len(dm.pairs) == 31
    assert "dropped 12 blank line(s)" in caplog.text


def test_names_undecodable_bytes_name_file_and_line(tmp_path):
    folder = write_names(tmp_path / "names")
    (folder / "French.txt").write_bytes(b"Dubois\nMor\xe9au\n")
    dm = NamesDataModule(data_dir=str(folder), cache_dir=str(tmp_path / "c"))
    with pytest.raises(ValueError, match="French.txt line 2 is not valid UTF-8"):
        dm.setup()


def test_names_ascii_folding(tmp_path):
    write_names(tmp_path / "names")
    dm = NamesDataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"), ascii_fold=True)
    dm.setup()
    assert "Ś" not in dm.vocab.index and "S" in dm.vocab.index


def test_imdb_zero_row_parquet_names_the_file(tmp_path):
    folder = write_imdb(tmp_path / "data" / "imdb")
    pd.read_parquet(folder / "test.parquet").iloc[:0].to_parquet(folder / "test.parquet")
    with pytest.raises(ValueError, match=r"test.parquet holds no rows.*\(data.data_dir\)"):
        imdb_module(tmp_path).setup()


def test_names_byte_order_mark_is_not_a_character(tmp_path):
    folder = write_names(tmp_path / "names")
    english = folder / "English.txt"
    english.write_bytes(b"\xef\xbb\xbf" + english.read_bytes())  # "Smith" first, and again later
    dm = NamesDataModule(data_dir=str(folder), cache_dir=str(tmp_path / "c"))
    dm.setup()
    assert len(dm.pairs) == 31  # the two Smiths are one pair, as without the mark
    assert ("Smith", "English") in dm.pairs
    assert "\ufeff" not in dm.vocab.index


def test_names_files_that_are_not_languages_are_left_out_and_named(tmp_path, caplog):
    folder = write_names(tmp_path / "names")
    (folder / "README.txt").write_text("Names by language\nfrom the PyTorch tutorial\n")
    dm = NamesDataModule(data_dir=str(folder), cache_dir=str(tmp_path / "c"))
    dm.setup()
    assert dm.languages == ["English", "French", "Polish"] and dm.spec.num_classes == 3
    assert "README.txt" in caplog.text and "left out" in caplog.text
    (folder / "English.txt").unlink()
    (folder / "French.txt").unlink()
    (folder / "Polish.txt").unlink()
    again = NamesDataModule(data_dir=str(folder), cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match=r"no name files .*README.txt"):
        again.setup()


def test_empty_names_folder_is_the_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setattr(names_module, "NAMES_URL", (tmp_path / "nowhere.zip").as_uri())
    (tmp_path / "data" / "names").mkdir(parents=True)
    dm = NamesDataModule(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "c"))
    with pytest.raises(FileNotFoundError, match=r"names holds no <Language>.txt") as error:
        dm.setup()
    assert "data.data_dir" in str(error.value) and "download" not in str(error.value).split(":")[0]


def test_a_text_too_short_for_the_streams_names_the_file_and_key(tmp_path):
    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_text("To be, or?")
    dm = ShakespeareDataModule(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c"), batch_size=16)
    with pytest.raises(ValueError, match=r"input.txt: .*data.batch_size=16 streams"):
        dm.setup()
        dm.train_dataloader()


@pytest.mark.parametrize("data", ["imdb", "names"])
def test_fast_dev_run(make_cfg, tmp_path, data):
    write_imdb(tmp_path / "data" / "imdb")
    write_names(tmp_path / "data" / "names")
    metrics = train(
        make_cfg(
            [
                f"data={data}",
                f"paths.data_dir={tmp_path / 'data'}",
                f"paths.cache_dir={tmp_path / 'cache'}",
                "debug=fdr",
                "model.hidden_size=8",
                "data.batch_size=4",
            ]
        )
    )
    assert math.isfinite(metrics["test/loss"])


def test_predict_script_reuses_the_checkpoint_vocabulary(make_cfg, tmp_path):
    write_imdb(tmp_path / "data" / "imdb")
    cfg = make_cfg(
        [
            "data=imdb",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "trainer.max_epochs=1",
            "model.hidden_size=8",
            "data.batch_size=4",
            "logger=csv",
            "~callbacks.progress_bar",
        ]
    )
    train(cfg)
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    result = subprocess.run(
        [sys.executable, "scripts/predict.py", f"ckpt_path={ckpt}"],
        input="A wonderful film!\nAwful, boring.\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [line[2] for line in lines] == ["A wonderful film!", "Awful, boring."]
    assert all(line[0] in ("neg", "pos") and 0.5 <= float(line[1]) <= 1 for line in lines)
    empty = subprocess.run(
        [sys.executable, "scripts/predict.py", f"ckpt_path={ckpt}", "text= "],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert empty.returncode != 0 and "tokenises to nothing" in empty.stderr


def test_full_imdb_has_the_published_sizes(tmp_path):
    dm = ImdbDataModule(data_dir=str(shared_data("imdb")), cache_dir=str(tmp_path), seed=0)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (22500, 2500, 25000)
    assert Counter(dm.test_set.labels.tolist()) == {0: 12500, 1: 12500}


def test_full_names_deduplicated_majority_is_russian(tmp_path):
    dm = NamesDataModule(data_dir=str(shared_data("names")), cache_dir=str(tmp_path), seed=0)
    dm.setup()
    assert len(dm.pairs) < 20074 and dm.spec.num_classes == 18
    counts = Counter(dm.test_set.labels.tolist())
    assert dm.languages[max(counts, key=counts.get)] == "Russian"
