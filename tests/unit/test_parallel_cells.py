"""minGRU and minLSTM: the parallel scan against a naive loop, step mode, carried state, chrono.

Exactness under padding is tested with the other cells in test_backbone.py.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from rnnlab.models import RecurrentBackbone
from rnnlab.models.parallel import LinearScan, MinGRU, MinLSTM

MIN_CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}


def naive(cell, x, h0=None):
    """The paper's recurrence written plainly, one step at a time, outside log space."""
    size = cell.hidden_size
    weight, bias = cell.linear.weight, cell.linear.bias
    h = torch.zeros(x.size(0), size, dtype=x.dtype) if h0 is None else h0
    outputs = []
    for t in range(x.size(1)):
        projected = x[:, t] @ weight.T + bias
        candidate = projected[:, -size:]
        g = torch.where(candidate >= 0, candidate + 0.5, torch.sigmoid(candidate))
        if isinstance(cell, MinGRU):
            z = torch.sigmoid(projected[:, :size])
            h = (1 - z) * h + z * g
        else:
            f = torch.sigmoid(projected[:, :size])
            i = torch.sigmoid(projected[:, size : 2 * size])
            h = f / (f + i) * h + i / (f + i) * g
        outputs.append(h)
    return torch.stack(outputs, dim=1)


SCANS = ["chunked", "log"]


@pytest.mark.parametrize(
    ("name", "scan", "with_state", "steps"),
    [
        *itertools.product(MIN_CELLS, SCANS, [False, True], [40]),
        # chunks of ceil(sqrt(T)) steps: T a square, one past it, prime, and 2 (chunks of one)
        *itertools.product(MIN_CELLS, ["chunked"], [True], [2, 3, 17, 49, 50]),
    ],
)
def test_parallel_scan_and_its_gradients_equal_a_naive_loop(name, scan, with_state, steps):
    torch.manual_seed(0)
    cell = MIN_CELLS[name](5, 8, scan=scan).double()
    x = torch.randn(3, steps, 5, dtype=torch.float64, requires_grad=True)
    # any sign: a decoder may start from a projection of the encoder's state
    h0 = torch.randn(3, 8, dtype=torch.float64, requires_grad=True) if with_state else None
    weights = torch.randn(3, steps, 8, dtype=torch.float64)

    out, h_n = cell(x, None if h0 is None else h0.unsqueeze(0))
    (out * weights).sum().backward()
    ours = [x.grad.clone(), cell.linear.weight.grad.clone()] + (
        [h0.grad.clone()] if h0 is not None else []
    )
    x.grad = None
    cell.zero_grad()
    if h0 is not None:
        h0.grad = None

    expected = naive(cell, x, h0)
    (expected * weights).sum().backward()
    theirs = [x.grad, cell.linear.weight.grad] + ([h0.grad] if h0 is not None else [])
    torch.testing.assert_close(out, expected, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(h_n[0], expected[:, -1], atol=1e-10, rtol=1e-10)
    for a, b in zip(ours, theirs, strict=True):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


@pytest.mark.parametrize(("name", "scan"), itertools.product(MIN_CELLS, SCANS))
def test_step_mode_equals_the_parallel_scan_in_float32(name, scan):
    torch.manual_seed(0)
    cell = MIN_CELLS[name](5, 16, scan=scan)
    x = torch.randn(4, 64, 5)
    parallel, _ = cell(x)
    sequential, _ = cell(x, sequential=True)
    torch.testing.assert_close(parallel, sequential, atol=1e-5, rtol=1e-5)
    # one step at a time, carrying the state (generation, truncated BPTT)
    h = None
    steps = []
    for t in range(64):
        out, h = cell(x[:, t : t + 1], h)
        steps.append(out)
    torch.testing.assert_close(torch.cat(steps, dim=1), parallel, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", MIN_CELLS)
def test_the_chunked_scan_stays_finite_where_the_gates_saturate(name):
    """Gate pre-activations of +-200: sigmoid underflows to 0 in float32 (minLSTM's f / (f + i)
    would be 0 / 0), yet outputs and gradients stay finite and equal the step-by-step loop's."""
    torch.manual_seed(0)
    cell = MIN_CELLS[name](4, 6, scan="chunked")
    with torch.no_grad():
        cell.linear.weight.mul_(200.0)
    x = torch.randn(2, 30, 4, requires_grad=True)
    out, _ = cell(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    torch.testing.assert_close(out, cell(x, sequential=True)[0])


def test_an_unknown_scan_is_named():
    with pytest.raises(ValueError, match="scan='fast'"):
        MinGRU(3, 4, scan="fast")
    cell = MinGRU(3, 4)
    cell.scan = "LOG"  # set after construction, as scripts/bench_cells.py does
    with pytest.raises(ValueError, match="scan='LOG'"):
        cell(torch.randn(2, 5, 3))


@pytest.mark.parametrize("steps", [16, 17])
def test_scan_outputs_are_contiguous_and_empty_sequences_pass(steps):
    """T=17 pads the chunks to 5 x 4 steps: the outputs are still one contiguous tensor."""
    out, _ = MinGRU(3, 4)(torch.randn(2, steps, 3))
    assert out.is_contiguous() and out.view(-1, 4).shape == (2 * steps, 4)
    a, b = torch.rand(2, 0, 4), torch.rand(2, 0, 4)
    assert LinearScan.apply(a, b, None).shape == (2, 0, 4)


@pytest.mark.parametrize("cell", MIN_CELLS)
def test_chrono_init_spreads_the_keep_gate_over_2_to_t_max_steps(cell):
    torch.manual_seed(0)
    backbone = RecurrentBackbone(3, 256, cell, chrono_t_max=100)
    module = backbone.layers[0][0]
    x = torch.zeros(1, 1, 3)  # no input: the gates are their biases
    log_keep, _ = module.log_terms(x)
    timescale = 1 / (1 - log_keep.exp().view(-1))
    assert timescale.min() >= 2 - 1e-4 and timescale.max() <= 100 + 1e-3
    assert timescale.max() > 80 and timescale.min() < 20


def test_scan_cells_have_no_packed_kernel_and_mask_instead():
    assert RecurrentBackbone(3, 4, "mingru", padding="pack").strategy(torch.device("cpu")) == "mask"
