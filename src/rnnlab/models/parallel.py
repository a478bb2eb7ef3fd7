"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): recurrent cells whose gates
read only the input, so a whole sequence trains with one parallel scan.

With gates that do not depend on h_{t-1}, the recurrence is linear in h::

    h_t = a_t * h_{t-1} + b_t        a_t = 1 - z_t (minGRU) or f'_t (minLSTM), b_t >= 0

    h_t = A_t (h_0 + sum_{s<=t} b_s / A_s),   A_t = a_1 * ... * a_t

Two scans compute it over a whole padded batch:

- the log-space scan (`logcumsumexp`, the paper's appendix): every term is positive (the
  candidate goes through g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise), so the logarithms
  exist; an initial state enters linearly, outside the logarithms. It is a handful of
  vectorised passes, which suits a GPU;
- a chunked scan in linear space: the T steps are cut into about sqrt(T) chunks of about sqrt(T)
  steps; every chunk runs its steps from a zero state at once, a pass over the chunks carries
  the state from one to the next, and a second pass over the steps writes each chunk's outputs
  from its true start, so about 3 sqrt(T) vectorised steps replace T. It multiplies coefficients
  in (0, 1) and adds non-negative values, never divides or takes a logarithm, so it is as stable
  as the step-by-step loop, and its backward pass is the same scan run in reverse. On CPU it
  trains several times faster than the log-space scan (`scripts/bench_cells.py
  --cells lstm mingru:chunked mingru:log`).

`scan="auto"` takes the chunked scan on CPU and the log-space scan on CUDA, where it was
measured (the README's table). Generation and truncated BPTT carry h one step at a time
(`sequential=True`, or any call with one step) and give the same outputs up to float32
rounding, which in the log-space scan accumulates with length (largest difference for minGRU,
H=16, unit-scale inputs: 7e-6 at T=64, 4e-4 at T=4000). Right padding only follows a sequence's
valid steps, so outputs at valid steps are exact, as for the fused kernels (RecurrentBackbone
handles the backward direction and the final state at length - 1 the same way for every
cell). The paper's deep models wrap each layer in normalisation, a residual connection and an
MLP; the backbone's `residual=True` gives the first two (measured in the README).

Each module mirrors a single-layer `nn.GRU(batch_first=True)`: `forward(x, h0) -> (out, h_n)`
with x (B, T, F), h0 and h_n (1, B, H), so the backbone stacks them like torch's cells.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

SCANS = ("auto", "chunked", "log")


def _g(x: Tensor) -> Tensor:
    """g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0): positive, continuous, grows linearly."""
    return torch.where(x >= 0, F.relu(x) + 0.5, torch.sigmoid(x))


def log_g(x: Tensor) -> Tensor:
    """log g(x), computed without forming g."""
    return torch.where(x >= 0, torch.log(F.relu(x) + 0.5), -F.softplus(-x))


def parallel_scan_log(log_coeffs: Tensor, log_values: Tensor, h0: Tensor | None) -> Tensor:
    """h_t = exp(log a_t) h_{t-1} + exp(log b_t) over dim 1, from h_0 (B, H) or zero.

    log_coeffs, log_values: (B, T, H). Returns (B, T, H). The recurrence is linear, so h_0 (of
    any sign: a decoder may start from a projection) adds A_t h_0 outside the log-space sum.
    """
    a_star = torch.cumsum(log_coeffs, dim=1)  # log A_t
    out = torch.exp(a_star + torch.logcumsumexp(log_values - a_star, dim=1))
    if h0 is not None:
        out = out + torch.exp(a_star) * h0.unsqueeze(1)
    return out


def _linear_scan(a: Tensor, b: Tensor, h0: Tensor | None, reverse: bool = False) -> Tensor:
    """h_t = a_t h_{t-1} + b_t over dim 1 of (B, T, H), chunked; no autograd (see LinearScan).

    `reverse` runs from the last step to the first (h_t = a_t h_{t+1} + b_t): the backward pass.
    """
    batch, steps, size = b.shape
    if steps == 0:
        return b.clone()
    length = max(1, math.isqrt(steps - 1) + 1)  # steps a chunk: ceil(sqrt(T))
    chunks = -(-steps // length)
    if pad := chunks * length - steps:  # steps past the end: they follow the last one, unread
        a = F.pad(a, (0, 0, 0, pad), value=1.0)
        b = F.pad(b, (0, 0, 0, pad))
    a, b = a.view(batch, chunks, length, size), b.view(batch, chunks, length, size)
    order = range(length - 1, -1, -1) if reverse else range(length)
    first, *rest = order
    # every chunk from a zero state, with the product of its coefficients
    state, product = b[:, :, first].clone(), a[:, :, first].clone()
    for j in rest:
        state.mul_(a[:, :, j]).add_(b[:, :, j])
        product.mul_(a[:, :, j])
    # the state entering each chunk
    starts = torch.empty_like(state)
    carry = torch.zeros_like(state[:, 0]) if h0 is None else h0
    for c in range(chunks - 1, -1, -1) if reverse else range(chunks):
        starts[:, c] = carry
        carry = torch.addcmul(state[:, c], product[:, c], carry)
    # each chunk's steps again, from its true start
    out = torch.empty_like(b)
    previous = starts
    for j in order:
        previous = torch.addcmul(b[:, :, j], a[:, :, j], previous, out=out[:, :, j])
    return out.view(batch, chunks * length, size)[:, :steps].contiguous()  # a copy if padded


class LinearScan(torch.autograd.Function):
    """h_t = a_t h_{t-1} + b_t from h_0, chunked in linear space, with a hand-written backward.

    With g_t = dL/dh_t + a_{t+1} g_{t+1} (the same recurrence, backwards in time):
    dL/db_t = g_t, dL/da_t = g_t h_{t-1}, dL/dh_0 = a_1 g_1. Autograd through the chunked loops
    would keep every step's intermediates; this keeps a and the outputs only. It is
    differentiable once: second-order gradients need `scan="log"`.
    """

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor, h0: Tensor | None) -> Tensor:
        a, b = a.contiguous(), b.contiguous()
        out = _linear_scan(a, b, h0)
        ctx.save_for_backward(a, out, h0)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        a, out, h0 = ctx.saved_tensors
        a_next = F.pad(a[:, 1:], (0, 0, 0, 1))  # a_{t+1}; nothing follows the last step
        grad = _linear_scan(a_next, grad_out.contiguous(), None, reverse=True)
        start = torch.zeros_like(out[:, :1]) if h0 is None else h0.unsqueeze(1)
        grad_a = grad * torch.cat([start, out[:, :-1]], dim=1)  # g_t h_{t-1}
        grad_h0 = None if h0 is None else a[:, 0] * grad[:, 0]
        return grad_a, grad, grad_h0


class _MinimalCell(nn.Module):
    """Shared shape handling: subclasses give the per-step coefficient and value, in linear space
    (`terms`, for the chunked scan and the step mode) and in log space (`log_terms`)."""

    gates: int

    def __init__(
        self, input_size: int, hidden_size: int, batch_first: bool = True, scan: str = "auto"
    ) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("minimal cells take batch-first input")
        if scan not in SCANS:
            raise ValueError(f"scan={scan!r}: choose one of {', '.join(SCANS)}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.scan = scan
        # one projection for the gates and the candidate: (F) -> (gates * H)
        self.linear = nn.Linear(input_size, self.gates * hidden_size)

    def terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def log_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(
        self, x: Tensor, h0: Tensor | None = None, sequential: bool = False
    ) -> tuple[Tensor, Tensor]:
        """x: (B, T, F); h0: (1, B, H) or None (zeros). Returns (B, T, H) and (1, B, H)."""
        step_mode = sequential or x.size(1) == 1
        if self.scan not in SCANS:  # set after construction (scripts/bench_cells.py does)
            raise ValueError(f"scan={self.scan!r}: choose one of {', '.join(SCANS)}")
        scan = self.scan if self.scan != "auto" else ("log" if x.is_cuda else "chunked")
        # the scan runs in float32 also under bf16 autocast: products over many steps (and
        # exp/log of sums) lose too much in bf16
        coeffs, values = self.log_terms(x) if scan == "log" and not step_mode else self.terms(x)
        dtype = torch.promote_types(values.dtype, torch.float32)
        coeffs, values = coeffs.to(dtype), values.to(dtype)
        start = None if h0 is None else h0[0].to(dtype)
        if step_mode:
            out = self.sequential(coeffs, values, start)
        elif scan == "log":
            out = parallel_scan_log(coeffs, values, start)
        else:
            out = LinearScan.apply(coeffs, values, start)
        return out, out[:, -1:].transpose(0, 1).contiguous()

    @staticmethod
    def sequential(coeffs: Tensor, values: Tensor, h0: Tensor | None) -> Tensor:
        """The same recurrence one step at a time (generation, and the scans' check)."""
        h = torch.zeros_like(values[:, 0]) if h0 is None else h0
        outputs = []
        for t in range(values.size(1)):
            h = torch.addcmul(values[:, t], coeffs[:, t], h)
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class MinGRU(_MinimalCell):
    """h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t), z_t = sigmoid(W_z x_t)."""

    gates = 2  # update gate z, candidate

    def terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, candidate = self.linear(x).chunk(2, dim=-1)  # (B, T, H) each
        return torch.sigmoid(-k), torch.sigmoid(k) * _g(candidate)  # 1 - z, z g

    def log_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, candidate = self.linear(x).chunk(2, dim=-1)
        log_keep = -F.softplus(k)  # log(1 - z)
        log_z = -F.softplus(-k)  # log z
        return log_keep, log_z + log_g(candidate)


class MinLSTM(_MinimalCell):
    """h_t = f'_t h_{t-1} + i'_t g(W_h x_t), with f', i' = f, i normalised to sum to one."""

    gates = 3  # forget gate f, input gate i, candidate

    def terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_forget, k_input, candidate = self.linear(x).chunk(3, dim=-1)
        # f / (f + i) = sigmoid(log f - log i): no 0 / 0 where both gates underflow
        difference = F.softplus(-k_input) - F.softplus(-k_forget)  # log f - log i
        return torch.sigmoid(difference), torch.sigmoid(-difference) * _g(candidate)

    def log_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_forget, k_input, candidate = self.linear(x).chunk(3, dim=-1)
        # log f' = log f - log(f + i) = -softplus(log i - log f)
        difference = F.softplus(-k_forget) - F.softplus(-k_input)  # log i - log f
        return -F.softplus(difference), -F.softplus(-difference) + log_g(candidate)
