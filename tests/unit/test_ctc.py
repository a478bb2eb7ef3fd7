"""CTC: the loss under padding, greedy decoding and prefix beam search against enumeration."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rnnlab.tasks import CTCTask
from rnnlab.tasks.ctc import greedy_decode, prefix_beam_search

MODEL = {"cell": "lstm", "hidden_size": 8, "num_layers": 1, "bidirectional": True}


def one_hot_path(path: list[int], classes: int) -> torch.Tensor:
    return F.one_hot(torch.tensor(path), classes).float().clamp(min=1e-4).log()


def collapse(path: tuple[int, ...]) -> tuple[int, ...]:
    """The labelling of an alignment, written out: merge repeats, drop blanks (class 0)."""
    merged = [c for i, c in enumerate(path) if i == 0 or c != path[i - 1]]
    return tuple(c - 1 for c in merged if c != 0)


def enumerate_labellings(log_probs: torch.Tensor) -> dict[tuple[int, ...], float]:
    """Probability of every labelling, summed over all of its alignments (brute force)."""
    steps, classes = log_probs.shape
    totals: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(classes), repeat=steps):
        probability = math.exp(sum(float(log_probs[t, c]) for t, c in enumerate(path)))
        key = collapse(path)
        totals[key] = totals.get(key, 0.0) + probability
    return totals


def test_greedy_collapses_repeats_drops_blanks_and_stops_at_the_length():
    # class 0 is blank, class 1 + d is digit d; frames after the length are never read
    path = [0, 2, 2, 0, 2, 3, 3, 0, 4]
    log_probs = one_hot_path(path, 5).unsqueeze(0)
    assert greedy_decode(log_probs, torch.tensor([9])) == [[1, 1, 2, 3]]
    assert greedy_decode(log_probs, torch.tensor([5])) == [[1, 1]]


def test_prefix_beam_search_with_a_wide_beam_finds_the_most_probable_labelling():
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        log_probs = torch.randn(4, 3, generator=generator).log_softmax(dim=-1)
        totals = enumerate_labellings(log_probs)
        best = max(totals, key=totals.get)
        labels, score = prefix_beam_search(log_probs, beam_size=100)
        assert tuple(labels) == best
        assert math.exp(score) == pytest.approx(totals[best], rel=1e-9)


def test_ctc_loss_is_minus_log_of_the_enumerated_labelling_probability():
    generator = torch.Generator().manual_seed(1)
    log_probs = torch.randn(4, 3, generator=generator).log_softmax(dim=-1)
    totals = enumerate_labellings(log_probs)
    for target in [(0,), (0, 1), (1, 1), (0, 0)]:
        loss = F.ctc_loss(
            log_probs.unsqueeze(1), torch.tensor([[t + 1 for t in target]]), [4], [len(target)]
        )
        # reduction="mean" divides by the target length
        assert float(loss) * len(target) == pytest.approx(-math.log(totals[target]), rel=1e-5)


def test_beam_of_one_equals_greedy_on_confident_frames():
    generator = torch.Generator().manual_seed(2)
    for _ in range(50):
        path = torch.randint(0, 4, (12,), generator=generator)
        logits = 8.0 * F.one_hot(path, 4).float() + torch.randn(12, 4, generator=generator)
        log_probs = logits.log_softmax(dim=-1)
        greedy = greedy_decode(log_probs.unsqueeze(0), torch.tensor([12]))[0]
        assert prefix_beam_search(log_probs, beam_size=1)[0] == greedy


def test_beam_of_one_is_not_best_path_on_flat_frames():
    # after "a" (p=1), frame 2 gives blank .3, a .3, b .4: best path emits b, but the prefix "a"
    # (blank or a again: .6) outweighs "ab" (.4), so a beam of one keeps "a"
    log_probs = torch.tensor([[0.0, 1.0, 0.0], [0.3, 0.3, 0.4]]).clamp(min=1e-12).log()
    assert greedy_decode(log_probs.unsqueeze(0), torch.tensor([2])) == [[0, 1]]
    assert prefix_beam_search(log_probs, beam_size=1)[0] == [0]
    assert prefix_beam_search(log_probs, beam_size=5)[0] == [0]


def test_a_padded_batch_gives_each_utterance_its_own_loss():
    torch.manual_seed(0)
    task = CTCTask(num_classes=4, model=MODEL, num_features=5).eval()
    lengths = [9, 4, 7]
    targets = [[1, 2, 2], [3], [0, 1]]
    frames = [torch.randn(n, 5) for n in lengths]
    batch = {
        "inputs": torch.nn.utils.rnn.pad_sequence(frames, batch_first=True),
        "lengths": torch.tensor(lengths),
        "targets": torch.nn.utils.rnn.pad_sequence(
            [torch.tensor(t) for t in targets], batch_first=True
        ),
        "target_lengths": torch.tensor([len(t) for t in targets]),
    }
    with torch.no_grad():
        together = task.ctc_losses(task(batch["inputs"], batch["lengths"]), batch)
        for i, (x, target) in enumerate(zip(frames, targets, strict=True)):
            alone = {
                "inputs": x.unsqueeze(0),
                "lengths": torch.tensor([len(x)]),
                "targets": torch.tensor([target]),
                "target_lengths": torch.tensor([len(target)]),
            }
            single = task.ctc_losses(task(alone["inputs"], alone["lengths"]), alone)
            assert float(together[i]) == pytest.approx(float(single[0]), rel=1e-5, abs=1e-6)
        # the greedy decoding of the padded batch is each utterance's own
        decoded = task.decode(task(batch["inputs"], batch["lengths"]), batch["lengths"])
        for x, text in zip(frames, decoded, strict=True):
            assert (
                task.decode(task(x.unsqueeze(0), torch.tensor([len(x)])), torch.tensor([len(x)]))[0]
                == text
            )
