"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): recurrent cells whose gates
read only the input, so a whole sequence trains with one parallel scan.

With gates that do not depend on h_{t-1}, the recurrence is linear in h::

    h_t = a_t * h_{t-1} + b_t        a_t = 1 - z_t (minGRU) or f'_t (minLSTM), b_t >= 0

    h_t = A_t (h_0 + sum_{s<=t} b_s / A_s),   A_t = a_1 * ... * a_t

computed in log space (`logcumsumexp`) for stability, as the paper's appendix does: every term is
positive (the candidate goes through g(x) = x + 0.5 for x >= 0, sigmoid(x) otherwise), so the
logarithms exist; an initial state enters linearly, outside the logarithms. Training runs the
scan over the padded batch; generation and truncated BPTT carry h one step at a time
(`sequential=True`, or any call with one step) and give the same outputs up to float32
rounding, which accumulates with length (largest difference for minGRU, H=16, unit-scale
inputs: 7e-6 at T=64, 4e-4 at T=4000). Right padding only follows a sequence's valid steps, so
outputs at valid steps are exact, as for the fused kernels
(RecurrentBackbone handles the backward direction and the final state at length - 1 the same
way for every cell). The paper's deep models wrap each layer in normalisation, a residual
connection and an MLP; the backbone stacks the cells plainly, as it stacks torch's.

Each module mirrors a single-layer `nn.GRU(batch_first=True)`: `forward(x, h0) -> (out, h_n)`
with x (B, T, F), h0 and h_n (1, B, H), so the backbone stacks them like torch's cells.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def log_g(x: Tensor) -> Tensor:
    """log of g(x) = x + 0.5 (x >= 0), sigmoid(x) (x < 0): positive, continuous, grows linearly."""
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


class _MinimalCell(nn.Module):
    """Shared shape handling: subclasses give the per-step coefficient and value in log space."""

    gates: int

    def __init__(self, input_size: int, hidden_size: int, batch_first: bool = True) -> None:
        super().__init__()
        if not batch_first:
            raise ValueError("minimal cells take batch-first input")
        self.input_size = input_size
        self.hidden_size = hidden_size
        # one projection for the gates and the candidate: (F) -> (gates * H)
        self.linear = nn.Linear(input_size, self.gates * hidden_size)

    def log_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def forward(
        self, x: Tensor, h0: Tensor | None = None, sequential: bool = False
    ) -> tuple[Tensor, Tensor]:
        """x: (B, T, F); h0: (1, B, H) or None (zeros). Returns (B, T, H) and (1, B, H)."""
        # the scan runs in float32 also under bf16 autocast: exp/log of sums lose too much in bf16
        log_coeffs, log_values = self.log_terms(x)
        dtype = torch.promote_types(log_values.dtype, torch.float32)
        log_coeffs, log_values = log_coeffs.to(dtype), log_values.to(dtype)
        start = None if h0 is None else h0[0].to(dtype)
        if sequential or x.size(1) == 1:
            out = self.sequential(log_coeffs, log_values, start)
        else:
            out = parallel_scan_log(log_coeffs, log_values, start)
        return out, out[:, -1:].transpose(0, 1).contiguous()

    @staticmethod
    def sequential(log_coeffs: Tensor, log_values: Tensor, h0: Tensor | None) -> Tensor:
        """The same recurrence one step at a time (generation, and the parallel scan's check)."""
        h = torch.zeros_like(log_values[:, 0]) if h0 is None else h0
        outputs = []
        for t in range(log_values.size(1)):
            h = log_coeffs[:, t].exp() * h + log_values[:, t].exp()
            outputs.append(h)
        return torch.stack(outputs, dim=1)


class MinGRU(_MinimalCell):
    """h_t = (1 - z_t) h_{t-1} + z_t g(W_h x_t), z_t = sigmoid(W_z x_t)."""

    gates = 2  # update gate z, candidate

    def log_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k, candidate = self.linear(x).chunk(2, dim=-1)  # (B, T, H) each
        log_keep = -F.softplus(k)  # log(1 - z)
        log_z = -F.softplus(-k)  # log z
        return log_keep, log_z + log_g(candidate)


class MinLSTM(_MinimalCell):
    """h_t = f'_t h_{t-1} + i'_t g(W_h x_t), with f', i' = f, i normalised to sum to one."""

    gates = 3  # forget gate f, input gate i, candidate

    def log_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        k_forget, k_input, candidate = self.linear(x).chunk(3, dim=-1)
        # log f' = log f - log(f + i) = -softplus(log i - log f)
        difference = F.softplus(-k_forget) - F.softplus(-k_input)  # log i - log f
        return -F.softplus(difference), -F.softplus(-difference) + log_g(candidate)
