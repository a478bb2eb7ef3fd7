"""One recurrent backbone over PyTorch's fused nn.RNN / nn.LSTM / nn.GRU kernels.

`cell` is a field, so model presets differ only in values and a sweep can search the cell type
like any other hyperparameter. Variable-length batches are handled exactly in two ways:

* ``padding="mask"`` (``auto``, the default on CPU and CUDA): right-padded input through the
  fused kernel, one call per layer and direction. Every forward-direction output at a valid
  step is exact, because padding only follows it. The backward direction runs on each sequence
  reversed *within its length*, so it too starts at the last valid step::

      tokens    a b c _ _        (length 3, "_" is padding)
      forward   a b c _ _   ->   outputs 0..2 exact, 3..4 ignored
      backward  c b a _ _   ->   run forward, then un-reverse within the length

* ``padding="pack"``: one ``pack_padded_sequence`` through a single multi-layer (bidirectional)
  kernel call, which also gives the LSTM's exact final cell state.

Each layer and direction is its own single-layer module, so both strategies share one set of
parameters and a checkpoint trained with one loads into the other; the packed path runs them
through a weightless multi-layer module of torch's with ``torch.func.functional_call``. On
length-bucketed batches masking trains faster than packing on both devices, and one packed call
for the whole stack is at least as fast as a packed call per layer and direction:
``scripts/bench_backbone.py`` measures them, the README has the figures.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.errors import ConfigError
from rnnlab.models.parallel import MinGRU, MinLSTM

FUSED_CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
# gates that read only the input: a parallel scan in training (rnnlab.models.parallel)
SCAN_CELLS = {"mingru": MinGRU, "minlstm": MinLSTM}
CELLS = {**FUSED_CELLS, **SCAN_CELLS}
RECURRENT_INITS = ("default", "orthogonal", "identity")  # model.recurrent_init
Padding = Literal["auto", "mask", "pack"]


@dataclass
class BackboneOutput:
    """What the backbone returns.

    outputs: (B, T, D*H) last-layer outputs; positions at or past a sequence's length are
        undefined and must be masked by the consumer (the pooling heads do).
    last: (B, D*H) the last layer's summary: the forward direction at step ``length - 1`` and,
        when bidirectional, the backward direction at step 0 (the end of its reading).
    state: final hidden state in torch's layout, (L*D, B, H), or ``(h, c)`` for the LSTM. Exact
        for every row; the LSTM's ``c`` is ``None`` in mask mode with unequal lengths, where the
        fused kernel does not expose it (use ``padding="pack"`` when you need it; the scan cells
        and ``residual=True`` have no packed path and always mask).
    """

    outputs: Tensor
    last: Tensor
    state: Tensor | tuple[Tensor, Tensor | None]


def reverse_within_length(x: Tensor, lengths: Tensor) -> Tensor:
    """Reverse each row of a right-padded (B, T, F) batch within its length; padding stays put."""
    batch, steps = x.shape[:2]
    positions = torch.arange(steps, device=x.device).expand(batch, steps)  # (B, T)
    lengths = lengths.to(x.device).unsqueeze(1)
    index = torch.where(positions < lengths, lengths - 1 - positions, positions)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def gather_steps(x: Tensor, steps: Tensor) -> Tensor:
    """Pick x[b, steps[b]] from a (B, T, F) tensor: (B, F)."""
    index = steps.to(x.device).view(-1, 1, 1).expand(-1, 1, x.size(-1))
    return x.gather(1, index).squeeze(1)


class RecurrentBackbone(nn.Module):
    """Stacked, optionally bidirectional RNN/LSTM/GRU over batch-first input."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 128,
        cell: str = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        nonlinearity: str = "tanh",
        padding: Padding = "auto",
        forget_bias: float = 1.0,
        chrono_t_max: int | None = None,
        residual: bool = False,
        recurrent_init: str = "default",
    ) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ConfigError(f"model.cell={cell!r} is not one of {sorted(CELLS)}")
        for key, value in (("input_size", input_size), ("hidden_size", hidden_size)):
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
        if not isinstance(num_layers, int) or num_layers < 1:
            raise ConfigError(f"model.num_layers must be an integer >= 1, got {num_layers!r}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {dropout!r}")
        if nonlinearity not in ("tanh", "relu"):
            raise ConfigError(f"model.nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        if padding not in ("auto", "mask", "pack"):
            raise ConfigError(f"model.padding must be 'auto', 'mask' or 'pack', got {padding!r}")
        if chrono_t_max is not None and (not isinstance(chrono_t_max, int) or chrono_t_max < 3):
            raise ConfigError(
                f"model.chrono_t_max must be null or an integer >= 3 (the longest dependency "
                f"to remember, in steps), got {chrono_t_max!r}"
            )
        if not isinstance(residual, bool):
            raise ConfigError(f"model.residual must be true or false, got {residual!r}")
        if recurrent_init not in RECURRENT_INITS:
            raise ConfigError(
                f"model.recurrent_init must be one of {', '.join(RECURRENT_INITS)}, "
                f"got {recurrent_init!r}"
            )
        if recurrent_init != "default" and cell in SCAN_CELLS:
            raise ConfigError(
                f"model.recurrent_init={recurrent_init} needs recurrent weights; {cell}'s gates "
                f"read only the input (model.recurrent_init=default)"
            )
        if recurrent_init == "identity" and cell != "rnn":
            raise ConfigError(
                f"model.recurrent_init=identity is the vanilla RNN's (Le et al. 2015); "
                f"for {cell} use orthogonal or default"
            )
        self.cell = cell
        self.residual = residual
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_directions = 2 if bidirectional else 1
        self.padding = padding
        self.output_size = hidden_size * self.num_directions
        extra = {"nonlinearity": nonlinearity} if cell == "rnn" else {}
        self.layers = nn.ModuleList()
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else self.output_size
            self.layers.append(
                nn.ModuleList(
                    CELLS[cell](layer_input, hidden_size, batch_first=True, **extra)
                    for _ in range(self.num_directions)
                )
            )
        self.dropout = nn.Dropout(dropout)
        # Pre-norm residual blocks (x + layer(LayerNorm(x))) from the second layer on, where a
        # layer's input and output widths agree, and a LayerNorm over the last layer's outputs:
        # the wrapping Feng et al. 2024 (and Transformers) give deep stacks. The first layer
        # reads the embedding, of another width, plainly.
        self.norms = nn.ModuleList(
            nn.LayerNorm(self.output_size) for _ in range(num_layers if residual else 0)
        )
        # A weightless multi-layer module of torch's: `functional_call` runs the per-layer
        # parameters through it in one kernel call. Kept out of the module tree (no state, no
        # device: the meta tensors it holds are replaced by the real ones at each call).
        fused = (
            None
            if cell in SCAN_CELLS
            else FUSED_CELLS[cell](
                input_size,
                hidden_size,
                num_layers,
                batch_first=True,
                dropout=dropout if num_layers > 1 else 0.0,  # torch warns about it on one layer
                bidirectional=bidirectional,
                device="meta",
                **extra,
            )
        )
        object.__setattr__(self, "_fused_module", fused)
        # called with dL/dx (B, T, F) of the input in training: rnnlab.callbacks.GradientFlow
        self.input_grad_hook: Callable[[Tensor], None] | None = None
        if cell == "lstm":
            self.init_forget_bias(forget_bias)
        if chrono_t_max is not None and cell != "rnn":
            self.init_chrono(chrono_t_max)
        if recurrent_init != "default":
            self.init_recurrent(recurrent_init)

    @torch.no_grad()
    def init_recurrent(self, kind: str) -> None:
        """Start each gate's hidden-to-hidden matrix (H x H) orthogonal (Saxe et al. 2014;
        Henaff et al. 2016 on the copy task) or, for the vanilla RNN, as the identity with zero
        biases (IRNN, Le et al. 2015, meant for nonlinearity=relu), in place of torch's
        U(-1/sqrt(H), 1/sqrt(H)): a state then keeps its norm across steps at the start."""
        size = self.hidden_size
        for directions in self.layers:
            for rnn in directions:
                for gate in rnn.weight_hh_l0.split(size):  # views: LSTM 4, GRU 3, RNN 1
                    if kind == "orthogonal":
                        nn.init.orthogonal_(gate)
                    else:
                        gate.copy_(torch.eye(size))
                if kind == "identity":
                    rnn.bias_ih_l0.zero_()
                    rnn.bias_hh_l0.zero_()

    @torch.no_grad()
    def init_forget_bias(self, value: float) -> None:
        """Start the LSTM's forget gates at sigmoid(value), remembering by default.

        A forget-gate bias of 1 (Gers et al. 2000; Jozefowicz et al. 2015; Keras'
        `unit_forget_bias`) lets gradients flow across many steps from the first update.
        Torch sums two biases; the input-side one carries the value, the hidden-side one is 0.
        """
        size = self.hidden_size
        for directions in self.layers:
            for rnn in directions:
                rnn.bias_ih_l0[size : 2 * size] = value  # gate order: input, forget, cell, output
                rnn.bias_hh_l0[size : 2 * size] = 0.0

    @torch.no_grad()
    def init_chrono(self, t_max: int) -> None:
        """Chrono initialisation (Tallec & Ollivier, ICLR 2018) for dependencies up to t_max steps.

        The gate that keeps the old state gets a bias log(u), u ~ U(1, t_max - 1) per unit, so the
        units' memory time scales (1 / (1 - gate)) start spread over 2..t_max steps; a constant
        forget bias of 1 gives every unit about 4 steps (sigmoid(1) = 0.73 a step, 0.73^50 =
        2e-7), which leaves LSTM and GRU near chance on delayed recall over 50 steps. LSTM:
        forget bias log(u), input bias -log(u). GRU (h' = (1 - z) n + z h): update-gate bias
        log(u). minGRU (h' = (1 - z) h + z g): update-gate bias -log(u); minLSTM: forget bias
        log(u), input bias -log(u), whose normalised forget gate f / (f + i) then keeps the state
        for u + 1 steps too. It replaces `forget_bias`; a vanilla RNN has no gate and is left as
        it is.
        """
        size = self.hidden_size
        if self.cell in SCAN_CELLS:
            # the projection's rows: minGRU (z, candidate), minLSTM (forget, input, candidate)
            for directions in self.layers:
                for cell in directions:
                    bias = torch.log(torch.empty(size).uniform_(1.0, t_max - 1.0))
                    cell.linear.bias[:size] = -bias if self.cell == "mingru" else bias
                    if self.cell == "minlstm":
                        cell.linear.bias[size : 2 * size] = -bias
            return
        # torch's gate order: LSTM input, forget, cell, output; GRU reset, update, new
        keep = slice(size, 2 * size)
        for directions in self.layers:
            for rnn in directions:
                bias = torch.log(torch.empty(size).uniform_(1.0, t_max - 1.0))
                rnn.bias_ih_l0[keep] = bias
                rnn.bias_hh_l0[keep] = 0.0
                if self.cell == "lstm":
                    rnn.bias_ih_l0[:size] = -bias
                    rnn.bias_hh_l0[:size] = 0.0

    def strategy(self, device: torch.device) -> str:
        """The padding strategy used on `device` for ragged batches.

        Masking on both devices: the padded kernels train faster than packed ones on CPU
        (oneDNN) and on CUDA (cuDNN), measured by ``scripts/bench_backbone.py`` (figures in the
        README).
        """
        if self.padding == "auto" or self.cell in SCAN_CELLS or self.residual:
            return "mask"  # a scan has no packed kernel, torch's stacks no residual connections
        return self.padding

    def fused_parameters(self) -> dict[str, Tensor]:
        """The per-layer parameters under the names of one multi-layer module of torch's."""
        named = {}
        for layer, directions in enumerate(self.layers):
            for direction, rnn in enumerate(directions):
                suffix = "_reverse" if direction == 1 else ""
                for name, parameter in rnn.named_parameters():
                    named[name.replace("_l0", f"_l{layer}") + suffix] = parameter
        return named

    def _forward_packed(self, x: Tensor, lengths: Tensor, state) -> BackboneOutput:
        """The whole stack in one kernel call over one PackedSequence."""
        inputs = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
        fused = self._fused_module
        fused.train(self.training)
        with warnings.catch_warnings():
            # the layers' weights are separate tensors; cuDNN copies them into one buffer
            warnings.filterwarnings("ignore", message=".*single contiguous chunk of memory.*")
            out, final = functional_call(fused, self.fused_parameters(), (inputs, state))
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        h_n = final[0] if isinstance(final, tuple) else final  # (L*D, B, H)
        directions = self.num_directions
        last = torch.cat([h_n[-directions + d] for d in range(directions)], dim=-1)  # (B, D*H)
        return BackboneOutput(out, last, final)

    def forward(
        self,
        x: Tensor,
        lengths: Tensor | None = None,
        state: Tensor | tuple[Tensor, Tensor] | None = None,
    ) -> BackboneOutput:
        """x: (B, T, F) right-padded; lengths: (B,) valid steps (None: all T); state as torch's."""
        batch, steps = x.shape[:2]
        if self.input_grad_hook is not None and x.requires_grad:
            x.register_hook(self.input_grad_hook)
        ragged = lengths is not None and bool((lengths != steps).any())
        if lengths is None:
            lengths = torch.full((batch,), steps, dtype=torch.long)
        lengths = lengths.to("cpu", torch.long)
        if ragged and int(lengths.min()) < 1:
            raise ValueError("every sequence needs at least one step; got a length of 0")
        if ragged and self.strategy(x.device) == "pack":
            return self._forward_packed(x, lengths, state)

        # Layer by layer, each direction its own kernel call over the padded batch.
        initial = self._split_state(state)
        last_index = (lengths - 1).to(x.device)
        final_h, final_c = [], []
        for layer, directions in enumerate(self.layers):
            block_input = x
            if self.residual and layer > 0:
                x = self.norms[layer - 1](x)
            elif layer > 0:
                x = self.dropout(x)
            direction_outputs = []
            for direction, rnn in enumerate(directions):
                index = layer * self.num_directions + direction
                h0 = None if initial is None else initial[index]
                # The backward direction reads each sequence reversed within its length.
                inputs = reverse_within_length(x, lengths) if direction == 1 else x
                out, final = rnn(inputs, h0)  # (B, T, H)
                h, c = final if isinstance(final, tuple) else (final, None)
                if ragged:
                    # The kernel's final state is at step T-1; the true one is at length-1, and
                    # the LSTM's cell state there is not exposed (padding="pack" gives it).
                    h, c = gather_steps(out, last_index).unsqueeze(0), None
                final_h.append(h)
                final_c.append(c)
                if direction == 1:
                    out = reverse_within_length(out, lengths)
                direction_outputs.append(out)
            x = torch.cat(direction_outputs, dim=-1) if len(direction_outputs) > 1 else out
            if self.residual and layer > 0:
                x = block_input + self.dropout(x)
        last = torch.cat(
            [final_h[-self.num_directions + d][0] for d in range(self.num_directions)], dim=-1
        )  # (B, D*H)
        if self.residual:
            x = self.norms[-1](x)
            # the summary of the stream the heads read: forward half at the last valid step,
            # backward half at step 0, where each direction ends its reading
            last = gather_steps(x, last_index)
            if self.num_directions == 2:
                last = torch.cat([last[:, : self.hidden_size], x[:, 0, self.hidden_size :]], -1)

        h_n = torch.cat(final_h, dim=0)  # (L*D, B, H)
        if self.cell == "lstm":
            c_n = None if any(c is None for c in final_c) else torch.cat(final_c, dim=0)
            return BackboneOutput(x, last, (h_n, c_n))
        return BackboneOutput(x, last, h_n)

    def _split_state(self, state):
        """Per layer and direction initial states, each (1, B, H) or a pair of them for LSTM."""
        if state is None:
            return None
        if self.cell == "lstm":
            h, c = state
            return [
                (h[i : i + 1].contiguous(), c[i : i + 1].contiguous()) for i in range(h.size(0))
            ]
        return [state[i : i + 1].contiguous() for i in range(state.size(0))]
