"""A generative task plus its checkpoint is self-sufficient: no datamodule to sample or decode.

Each task is trained for a step on plain loaders (no datamodule exists anywhere), with its
callbacks drawing from the module alone, then restored with `Task.load_from_checkpoint(path)`
and asked for text; the oracle decodes the ids by hand with the token list given at training.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from rnnlab.callbacks import AttentionMap, TextSamples
from rnnlab.data.tokenizers import BOS, EOS, PAD, UNK, CharTokenizer, WordTokenizer
from rnnlab.predict import Generator
from rnnlab.tasks import LanguageModelTask, NameGenerationTask, TranslationTask
from rnnlab.tasks.translation import detokenize
from tests.conftest import ROOT

CHARS = [PAD, UNK, *"ROME: abcdg\n"]
NAME_CHARS = [PAD, UNK, BOS, EOS, *"abcdefgh"]
SOURCE_WORDS = [PAD, UNK, "ein", "mann", "hund", "läuft", "."]
TARGET_WORDS = [PAD, UNK, BOS, EOS, "a", "man", "dog", "runs", "."]


def fit_and_save(task: L.LightningModule, train, val, path: Path, callbacks=()) -> Path:
    """One training step and a validation on plain loaders; the checkpoint at `path`."""
    trainer = L.Trainer(
        max_steps=1,
        accelerator="cpu",
        logger=TensorBoardLogger(path.parent, name="", version=""),
        callbacks=list(callbacks),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(task, train_dataloaders=train, val_dataloaders=val)
    assert trainer.datamodule is None
    trainer.save_checkpoint(path)
    return path


def tags(folder: Path) -> dict:
    accumulator = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator.Tags()


def stream_batches(count: int = 2) -> DataLoader:
    torch.manual_seed(1)
    ids = torch.randint(2, len(CHARS), (count, 2, 7))
    windows = [{"inputs": window[:, :-1], "targets": window[:, 1:]} for window in ids]
    return DataLoader(windows, batch_size=None)


def test_stream_language_model_samples_text_from_its_checkpoint_alone(tmp_path):
    torch.manual_seed(0)
    task = LanguageModelTask(
        vocab_size=len(CHARS),
        model={"cell": "lstm", "hidden_size": 8},
        embedding_dim=6,
        tokens=CHARS,
        tokenizer=CharTokenizer().config(),
    )
    samples = TextSamples(prompt="ROMEO:", length=12)
    ckpt = fit_and_save(task, stream_batches(), stream_batches(), tmp_path / "lm.ckpt", [samples])
    assert "samples/text_summary" in tags(tmp_path)["tensors"]  # the callback needed no data
    restored = LanguageModelTask.load_from_checkpoint(ckpt, map_location="cpu")
    assert type(Generator(ckpt).task) is LanguageModelTask
    text = restored.generate_text("ROMEO:", 20, generator=torch.Generator().manual_seed(3))
    prompt_ids = [CHARS.index(c) for c in "ROMEO:"]
    ids = restored.generate(
        prompt_ids, 20, generator=torch.Generator().manual_seed(3), banned_ids=(1,)
    )
    assert text == "".join(CHARS[i] for i in ids) and len(text) == 20


def test_name_generator_samples_a_language_from_its_checkpoint_alone(tmp_path):
    torch.manual_seed(0)
    task = NameGenerationTask(
        vocab_size=len(NAME_CHARS),
        num_classes=2,
        labels=["French", "Greek"],
        condition_dim=3,
        model={"cell": "gru", "hidden_size": 8},
        embedding_dim=6,
        tokens=NAME_CHARS,
        tokenizer=CharTokenizer().config(),
    )
    batch = {
        "inputs": torch.tensor([[2, 4, 5, 3], [2, 6, 3, 0]]),
        "lengths": torch.tensor([4, 3]),
        "labels": torch.tensor([0, 1]),
    }
    loader = DataLoader([batch], batch_size=None)
    ckpt = fit_and_save(task, loader, loader, tmp_path / "names.ckpt")
    restored = NameGenerationTask.load_from_checkpoint(ckpt, map_location="cpu")
    # its hyperparameters include all of the stream model's: the scripts still tell them apart
    assert type(Generator(ckpt).task) is NameGenerationTask
    name = restored.generate_text(
        "ab", 8, generator=torch.Generator().manual_seed(5), condition="Greek"
    )
    ids = restored.generate(
        [2, 4, 5],
        8,
        generator=torch.Generator().manual_seed(5),
        banned_ids=(1, 2),
        condition=1,
        stop_id=3,
    )
    assert name == "".join(NAME_CHARS[i] for i in ids)
    assert set(name) <= set("abcdefgh")


def translation_batch(pairs: list[tuple[torch.Tensor, torch.Tensor, str]]) -> dict:
    """Items as the Multi30k dataset gives them: (source ids, target ids, reference)."""
    pad = torch.nn.utils.rnn.pad_sequence
    sources = [source for source, _, _ in pairs]
    return {
        "inputs": pad(sources, batch_first=True),
        "lengths": torch.tensor([len(s) for s in sources]),
        "targets": pad([target for _, target, _ in pairs], batch_first=True),
        "references": [reference for _, _, reference in pairs],
    }


def test_translation_decodes_text_from_its_checkpoint_alone(tmp_path):
    torch.manual_seed(0)
    task = TranslationTask(
        vocab_size=len(SOURCE_WORDS),
        target_vocab_size=len(TARGET_WORDS),
        model={"cell": "gru", "hidden_size": 8, "bidirectional": True},
        embedding_dim=6,
        attention_size=4,
        max_decode_len=6,
        beam_size=2,
        tokens=SOURCE_WORDS,
        target_tokens=TARGET_WORDS,
        tokenizer=WordTokenizer().config(),
    )
    pairs = [([2, 3, 5, 6], [2, 4, 5, 7, 8, 3], "A man runs."), ([4, 5], [2, 6, 7, 3], "Dog runs")]
    dataset = [(torch.tensor(s), torch.tensor(t), reference) for s, t, reference in pairs]
    val = DataLoader(dataset, batch_size=2, collate_fn=translation_batch)
    train = DataLoader(dataset, batch_size=2, collate_fn=translation_batch)
    ckpt = fit_and_save(task, train, val, tmp_path / "mt.ckpt", [AttentionMap(index=1)])
    assert "attention" in tags(tmp_path)["images"]  # drawn from the loader and the module
    restored = TranslationTask.load_from_checkpoint(ckpt, map_location="cpu").eval()
    source = restored.source_vocab.encode(restored.tokenizer("Ein Mann läuft."))
    assert source == [2, 3, 5, 6]
    (ids,), _ = restored.greedy(torch.tensor([source]), torch.tensor([len(source)]))
    assert restored.texts([ids]) == [detokenize([TARGET_WORDS[i] for i in ids])]


def test_no_task_or_callback_reads_the_datamodule():
    folders = [ROOT / "src/rnnlab/tasks", ROOT / "src/rnnlab/callbacks"]
    sources = [path for folder in folders for path in folder.glob("*.py")]
    assert len(sources) > 5
    assert [path.name for path in sources if "trainer.datamodule" in path.read_text()] == []


@pytest.mark.parametrize("tokens", [None, CHARS])
def test_a_model_without_its_text_pipeline_says_so(tokens):
    task = LanguageModelTask(vocab_size=len(CHARS), model={"hidden_size": 4}, tokens=tokens)
    with pytest.raises(ValueError, match="no vocabulary or tokeniser"):
        task.generate_text("ROMEO:", 5)
