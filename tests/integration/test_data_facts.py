"""What a task needs of its data travels in the spec and the batch: vocabularies, the
tokeniser, references, and nanoGPT's estimator windows as an evaluation loader of their own."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import pytest
import torch

from rnnlab.data.multi30k import Multi30kDataModule
from rnnlab.data.names import NameGenerationDataModule
from rnnlab.data.shakespeare import ShakespeareDataModule
from rnnlab.data.tokenizers import tokenizer_from_config
from tests.integration.test_language_model import TEXT
from tests.integration.test_text_data import write_names
from tests.integration.test_translation import PAIRS, write_multi30k


def shakespeare(tmp_path, **kwargs) -> ShakespeareDataModule:
    folder = tmp_path / "data" / "tinyshakespeare"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.txt").write_text(TEXT, encoding="utf-8")
    options = {"batch_size": 4, "bptt": 16, "val_batch_size": 2} | kwargs
    dm = ShakespeareDataModule(
        data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "c"), **options
    )
    dm.setup()
    return dm


def test_shakespeare_spec_decodes_and_encodes_the_text(tmp_path):
    dm = shakespeare(tmp_path)
    tokens, split = dm.spec.tokens, len(dm.train_ids)
    assert "".join(tokens[i] for i in dm.train_ids.tolist()) == TEXT[:split]
    tokenizer = tokenizer_from_config(dm.spec.tokenizer)
    index = {token: i for i, token in enumerate(tokens)}
    assert [index[c] for c in tokenizer(TEXT[split:])] == dm.val_ids.tolist()


def test_name_generation_spec_decodes_its_sequences(tmp_path):
    write_names(tmp_path / "data" / "names")
    dm = NameGenerationDataModule(data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "c"))
    dm.setup()
    names = sorted(
        "".join(dm.spec.tokens[i] for i in sequence.tolist()) for sequence in dm.train_set.sequences
    )
    expected = sorted(f"<s>{dm.pairs[i][0]}</s>" for i in dm.split_index["train"])
    assert names == expected
    assert tokenizer_from_config(dm.spec.tokenizer).config() == dm.tokenizer.config()


def test_translation_batches_carry_their_own_references(tmp_path):
    write_multi30k(tmp_path / "data" / "multi30k")
    dm = Multi30kDataModule(
        data_dir=str(tmp_path / "data"), cache_dir=str(tmp_path / "c"), batch_size=3, min_freq=1
    )
    dm.setup()
    spec = dm.spec
    tokenizer = tokenizer_from_config(spec.tokenizer)
    target_of = dict(PAIRS)
    for split, rows in (("val", PAIRS[:4]), ("test", PAIRS[4:8])):
        seen = []
        for batch in dm.loader(split):  # sorted by source length: not the file's order
            assert "index" not in batch and len(batch["references"]) == len(batch["inputs"])
            for row, reference in enumerate(batch["references"]):
                source_ids = batch["inputs"][row, : batch["lengths"][row]].tolist()
                source_words = [spec.tokens[i] for i in source_ids]
                source = next(s for s, _ in rows if tokenizer(s) == source_words)
                assert reference == target_of[source]
                target_ids = batch["targets"][row, : batch["target_lengths"][row]].tolist()
                assert [spec.target_tokens[i] for i in target_ids] == [
                    "<s>",
                    *tokenizer(reference),
                    "</s>",
                ]
                seen.append(reference)
        assert Counter(seen) == Counter(t for _, t in rows)


def nanogpt_windows(ids: torch.Tensor, window: int, count: int) -> torch.Tensor:
    """The estimator's windows as nanoGPT's `get_batch` (and rnnlab before) drew them."""
    generator = torch.Generator().manual_seed(0)
    starts = torch.randint(0, len(ids) - window - 1, (count,), generator=generator)
    return torch.stack([ids[s : s + window + 1] for s in starts.tolist()])  # inputs + last target


def windows_of(loader) -> list[torch.Tensor]:
    batches = list(loader)
    for batch in batches:
        assert batch["inputs"].dtype == torch.long and len(batch["inputs"]) <= 64
        assert torch.equal(batch["inputs"][:, 1:], batch["targets"][:, :-1])
    return [torch.cat([b["inputs"], b["targets"][:, -1:]], dim=1) for b in batches]


@pytest.mark.parametrize("split", ["val", "test"])
def test_estimator_windows_are_nanogpts_over_the_validation_text(tmp_path, split):
    dm = shakespeare(tmp_path, estimate_windows=150, estimate_window=32)
    streams, windows = getattr(dm, f"{split}_dataloader")()
    assert len(list(streams)) == len(list(dm.stream_loader(split)))
    batches = windows_of(windows)
    assert torch.equal(torch.cat(batches), nanogpt_windows(dm.val_ids, 32, 150))


def test_estimator_windows_are_shared_out_over_ranks_without_duplicates(tmp_path):
    dm = shakespeare(tmp_path, estimate_windows=150, estimate_window=32)
    per_rank = []
    for rank in range(3):
        dm.trainer = SimpleNamespace(global_rank=rank, world_size=3)
        per_rank.append(windows_of(dm.val_dataloader()[1]))
    assert len({len(batches) for batches in per_rank}) == 1  # every rank steps as often
    drawn = [tuple(w.tolist()) for batches in per_rank for b in batches for w in b]
    expected = [tuple(w.tolist()) for w in nanogpt_windows(dm.val_ids, 32, 150)]
    assert Counter(drawn) == Counter(expected)


def test_without_the_estimator_evaluation_has_one_loader(tmp_path):
    dm = shakespeare(tmp_path, estimate_windows=0)
    assert not isinstance(dm.val_dataloader(), list)
    assert not isinstance(dm.test_dataloader(), list)


def test_estimator_window_longer_than_the_validation_text_names_the_keys(tmp_path):
    with pytest.raises(ValueError, match=r"data.estimate_window=400: lower it.*estimate_windows=0"):
        shakespeare(tmp_path, estimate_windows=10, estimate_window=400)
