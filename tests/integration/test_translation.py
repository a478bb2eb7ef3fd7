"""Translation: Multi30k loading, masked attention, greedy and beam decoding, BLEU, scripts."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from torchmetrics.text import SacreBLEUScore

from rnnlab.data.multi30k import Multi30kDataModule, collate_pairs
from rnnlab.tasks import TranslationTask
from rnnlab.tasks.translation import detokenize
from rnnlab.train import train
from tests.conftest import ROOT, shared_data

PAIRS = [
    ("Ein Mann fährt Fahrrad.", "A man rides a bike."),
    ("Eine Frau liest ein Buch.", "A woman reads a book."),
    ("Zwei Hunde spielen im Schnee.", "Two dogs play in the snow."),
    ("Ein Kind isst einen Apfel.", "A child eats an apple."),
    ("Ein Mann spielt Gitarre.", "A man plays guitar."),
    ("Eine Frau trägt ein rotes T-Shirt.", "A woman wears a red t-shirt."),
    ("Drei Männer stehen auf der Straße.", "Three men stand on the street."),
    ("Ein Hund läuft.", "A dog runs."),
    ("Eine Gruppe von Menschen tanzt.", "A group of people dances."),
    ("Ein Junge springt ins Wasser.", "A boy jumps into the water."),
]


def write_multi30k(folder, pairs=PAIRS, trailing_blank=True):
    folder.mkdir(parents=True, exist_ok=True)
    for stem, rows in (("train", pairs * 2), ("val", pairs[:4]), ("test2016", pairs[4:8])):
        end = "\n\n" if trailing_blank and stem == "train" else "\n"
        (folder / f"{stem}.de").write_text("\n".join(s for s, _ in rows) + end)
        (folder / f"{stem}.en").write_text("\n".join(t for _, t in rows) + end)


@pytest.fixture
def data_dir(tmp_path):
    write_multi30k(tmp_path / "data" / "multi30k")
    return tmp_path / "data"


def module(data_dir, tmp_path, **kwargs):
    dm = Multi30kDataModule(
        data_dir=str(data_dir), cache_dir=str(tmp_path / "c"), batch_size=4, min_freq=1, **kwargs
    )
    dm.setup()
    return dm


def test_pairs_vocabularies_and_specials(data_dir, tmp_path):
    dm = module(data_dir, tmp_path)
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [20, 4, 4]
    assert dm.target_vocab.tokens[2:4] == ["<s>", "</s>"]
    source, target, index = dm.train_set[0]
    assert dm.source_vocab.decode(source.tolist()) == ["ein", "mann", "fährt", "fahrrad", "."]
    assert dm.target_vocab.decode(target.tolist())[0] == "<s>"
    assert dm.target_vocab.decode(target.tolist())[-1] == "</s>"
    assert dm.references("test")[0] == "A man plays guitar."


def test_vocabularies_come_from_train_only(tmp_path):
    write_multi30k(tmp_path / "d" / "multi30k")
    (tmp_path / "d" / "multi30k" / "val.de").write_text("Ein Zebra.\n" * 4)
    dm = module(tmp_path / "d", tmp_path)
    assert "zebra" not in dm.source_vocab.index


def test_mismatched_line_counts_are_a_clear_error(tmp_path):
    folder = tmp_path / "d" / "multi30k"
    write_multi30k(folder)
    (folder / "val.en").write_text("One line.\n")
    with pytest.raises(ValueError, match="val.de has 4 lines but .*val.en has 1"):
        module(tmp_path / "d", tmp_path)


def make_task(attention="luong", cell="gru", bidirectional=True):
    torch.manual_seed(0)
    return TranslationTask(
        vocab_size=30,
        target_vocab_size=25,
        model={"cell": cell, "hidden_size": 16, "bidirectional": bidirectional},
        embedding_dim=12,
        attention=attention,
        attention_size=10,
        max_decode_len=12,
    ).eval()


def padded_batch():
    sources = [torch.tensor([5, 6, 7, 8, 9]), torch.tensor([10, 11]), torch.tensor([12, 13, 14])]
    targets = [torch.tensor([2, 5, 6, 3])] * 3
    return collate_pairs([(s, t, i) for i, (s, t) in enumerate(zip(sources, targets, strict=True))])


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_attention_ignores_padding_and_batches_equal_single_sentences(attention, cell):
    task = make_task(attention, cell)
    batch = padded_batch()
    batch["inputs"][1, 2:] = 29  # garbage in the padding must change nothing
    sequences, weights = task.greedy(batch["inputs"], batch["lengths"])
    for row, length in enumerate(batch["lengths"].tolist()):
        assert torch.all(weights[row, :, length:] == 0)
        torch.testing.assert_close(weights[row].sum(-1), torch.ones(weights.size(1)))
        alone, alone_weights = task.greedy(
            batch["inputs"][row : row + 1, :length], torch.tensor([length])
        )
        assert alone[0] == sequences[row]
        steps = alone_weights.size(1)
        torch.testing.assert_close(alone_weights[0], weights[row, :steps, :length])
    beams = task.beam_search(batch["inputs"], batch["lengths"], beam_size=3)
    for row, length in enumerate(batch["lengths"].tolist()):
        single = task.beam_search(
            batch["inputs"][row : row + 1, :length], torch.tensor([length]), 3
        )
        assert single[0] == beams[row]


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
def test_beam_of_one_equals_greedy(attention):
    task = make_task(attention)
    batch = padded_batch()
    greedy, _ = task.greedy(batch["inputs"], batch["lengths"])
    assert task.beam_search(batch["inputs"], batch["lengths"], beam_size=1) == greedy


def test_decoding_stops_at_end_and_respects_the_maximum_length():
    task = make_task()
    batch = padded_batch()
    with torch.no_grad():
        task.decoder.out.bias.zero_()
        task.decoder.out.bias[7] = 50.0  # always "word 7": never ends
    greedy, _ = task.greedy(batch["inputs"], batch["lengths"], max_len=6)
    assert greedy == [[7] * 6] * 3
    assert task.beam_search(batch["inputs"], batch["lengths"], 2, max_len=6) == [[7] * 6] * 3
    with torch.no_grad():
        task.decoder.out.bias[3] = 100.0  # "</s>" first
    assert task.greedy(batch["inputs"], batch["lengths"])[0] == [[], [], []]
    assert task.beam_search(batch["inputs"], batch["lengths"], 2) == [[], [], []]


def test_teacher_forced_luong_equals_step_by_step_decoding():
    task = make_task("luong")
    batch = padded_batch()
    fused = task(batch["inputs"], batch["lengths"], batch["targets"])
    task.decoder.feed_context = False
    memory, keys, mask, state = task.encode(batch["inputs"], batch["lengths"])
    steps = []
    for t in range(batch["targets"].size(1) - 1):
        logits, state, _ = task.decoder.step(batch["targets"][:, t], state, memory, keys, mask)
        steps.append(logits)
    torch.testing.assert_close(fused, torch.stack(steps, 1), rtol=1e-4, atol=1e-5)


def test_bleu_of_references_against_themselves_is_100():
    references = [t for _, t in PAIRS]
    bleu = SacreBLEUScore(tokenize="13a", lowercase=True)
    tokens = [
        detokenize(t.lower().replace(".", " .").replace("-", " - ").split()) for t in references
    ]
    assert float(bleu(tokens, [[r] for r in references])) == pytest.approx(1.0)


def test_fast_dev_run_and_translate_script(make_cfg, data_dir, tmp_path):
    cfg = make_cfg(
        [
            "data=multi30k",
            f"paths.data_dir={data_dir}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            "data.min_freq=1",
            "data.batch_size=4",
            "data.max_src_len=8",
            "model=bigru",
            "model.hidden_size=16",
            "task.embedding_dim=12",
            "task.beam_size=2",
            "trainer.max_epochs=2",
            "logger=tensorboard",
            "~callbacks.progress_bar",
        ]
    )
    metrics = train(cfg)
    assert 0.0 <= metrics["test/bleu_greedy"] <= 100.0 and 0.0 <= metrics["test/bleu_beam"] <= 100
    assert math.isfinite(metrics["val/ppl"])
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    result = subprocess.run(
        [sys.executable, "scripts/translate.py", f"ckpt_path={ckpt}", "beam_size=2"],
        input="Ein Mann fährt Fahrrad.\n\nEin Zebra läuft.\n",
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.split("\n")
    assert len(lines) == 4 and lines[1] == ""  # the empty source translates to ""
    assert "read as <unk>: zebra" in result.stderr
    long = subprocess.run(
        [sys.executable, "scripts/translate.py", f"ckpt_path={ckpt}", "text=" + "Hund " * 9],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert long.returncode != 0 and "data.max_src_len=8" in long.stderr


def test_full_multi30k_has_the_published_sizes(tmp_path):
    folder = shared_data("multi30k")
    dm = Multi30kDataModule(data_dir=str(folder.parent), cache_dir=str(tmp_path))
    dm.setup()
    assert [len(dm.train_set), len(dm.val_set), len(dm.test_set)] == [29000, 1014, 1000]
