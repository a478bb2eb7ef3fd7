"""Weight decay reaches weight matrices only: biases, norms and (by default) embeddings keep
their initialisation under AdamW's decoupled decay."""

from __future__ import annotations

import pytest
import torch

from rnnlab.tasks import ClassificationTask, ForecastingTask

LR, DECAY = 0.1, 0.5


def step_with_zero_gradients(task: torch.nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One optimizer step where every gradient is zero: only the decay moves a tensor."""
    before = {name: p.detach().clone() for name, p in task.named_parameters()}
    optimizer = task.configure_optimizers()
    for parameter in task.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    return {name: (before[name], p.detach()) for name, p in task.named_parameters()}


def classification(decay_embeddings: bool | None, cell: str = "lstm") -> ClassificationTask:
    optimizer = {
        "_target_": "torch.optim.AdamW",
        "_partial_": True,
        "lr": LR,
        "weight_decay": DECAY,
    }
    if decay_embeddings is not None:
        optimizer["decay_embeddings"] = decay_embeddings
    torch.manual_seed(0)
    return ClassificationTask(
        num_classes=3,
        vocab_size=11,
        model={
            "cell": cell,
            "hidden_size": 6,
            "num_layers": 2,
            "bidirectional": True,
            "chrono_t_max": 20 if cell in ("lstm", "gru") else None,
        },
        optimizer=optimizer,
        scheduler=None,
    )


@pytest.mark.parametrize("cell", ["lstm", "gru", "mingru"])
@pytest.mark.parametrize("decay_embeddings", [None, False, True])
def test_decay_shrinks_weight_matrices_only(cell, decay_embeddings):
    task = classification(decay_embeddings, cell)
    moved = step_with_zero_gradients(task)
    shrink = 1 - LR * DECAY
    embedding = "encoder.encode.weight"
    assert embedding in moved
    for name, (before, after) in moved.items():
        decays = before.ndim >= 2 and (name != embedding or decay_embeddings)
        expected = before * shrink if decays else before
        torch.testing.assert_close(after, expected, msg=name)
    biases = [name for name in moved if "bias" in name]
    assert any("backbone" in name for name in biases)  # the gate biases are among them


def test_chrono_and_forget_biases_survive_decay():
    task = classification(None, "lstm")
    moved = step_with_zero_gradients(task)
    gate_biases = [b for name, (b, a) in moved.items() if "backbone" in name and "bias" in name]
    assert gate_biases and any(b.abs().max() > 1 for b in gate_biases)  # chrono: log U(1, T-1)
    for name, (before, after) in moved.items():
        if "bias" in name:
            assert torch.equal(before, after), name


def test_norm_affine_parameters_are_not_decayed():
    torch.manual_seed(0)
    task = ForecastingTask(
        num_features=2,
        horizon=4,
        model={"cell": "gru", "hidden_size": 5},
        revin_affine=True,
        optimizer={
            "_target_": "torch.optim.AdamW",
            "_partial_": True,
            "lr": LR,
            "weight_decay": DECAY,
        },
        scheduler=None,
    )
    moved = step_with_zero_gradients(task)
    vectors = [name for name, (before, _) in moved.items() if before.ndim < 2]
    assert vectors
    for name in vectors:
        before, after = moved[name]
        assert torch.equal(before, after), name
