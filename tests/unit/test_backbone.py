"""The recurrent backbone and pooling: shapes, exactness under padding, gradients, bad input."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.models import InputEncoder, Pooling, RecurrentBackbone
from rnnlab.models.backbone import reverse_within_length
from rnnlab.models.heads import POOLINGS

CELLS = ["rnn", "lstm", "gru"]


def state_h(state):
    return state[0] if isinstance(state, tuple) else state


@pytest.mark.parametrize(
    ("cell", "bidirectional", "num_layers"), list(itertools.product(CELLS, [False, True], [1, 2]))
)
def test_output_shapes(cell, bidirectional, num_layers):
    backbone = RecurrentBackbone(5, 7, cell, num_layers, bidirectional)
    directions = 2 if bidirectional else 1
    out = backbone(torch.randn(3, 4, 5), torch.tensor([4, 2, 1]))
    assert out.outputs.shape == (3, 4, 7 * directions)
    assert out.last.shape == (3, 7 * directions)
    assert state_h(out.state).shape == (num_layers * directions, 3, 7)
    assert backbone.output_size == 7 * directions


@pytest.mark.parametrize(
    ("cell", "bidirectional", "padding", "residual"),
    [
        *itertools.product([*CELLS, "mingru", "minlstm"], [False, True], ["mask", "pack"], [False]),
        *itertools.product(["lstm", "mingru"], [False, True], ["mask"], [True]),
    ],
)
def test_padded_batch_equals_each_sequence_alone(cell, bidirectional, padding, residual):
    torch.manual_seed(0)
    backbone = RecurrentBackbone(
        5, 6, cell, 2, bidirectional, padding=padding, residual=residual
    ).eval()
    poolings = {mode: Pooling(mode, backbone.output_size).eval() for mode in POOLINGS}
    lengths = torch.tensor([7, 3, 1, 5])
    x = torch.randn(4, 7, 5)
    x[torch.arange(7) >= lengths.unsqueeze(1)] = 100.0  # garbage in the padding must not leak
    batch = backbone(x, lengths)
    for b, length in enumerate(lengths.tolist()):
        alone = backbone(x[b : b + 1, :length])
        torch.testing.assert_close(batch.outputs[b, :length], alone.outputs[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(batch.last[b], alone.last[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(
            state_h(batch.state)[:, b], state_h(alone.state)[:, 0], atol=1e-5, rtol=0
        )
        for mode, pool in poolings.items():
            torch.testing.assert_close(
                pool(batch, lengths)[b],
                pool(alone, None)[0],
                atol=1e-5,
                rtol=0,
                msg=f"pooling={mode}",
            )


def test_pack_mode_gives_exact_lstm_cell_state_and_mask_mode_says_it_cannot():
    torch.manual_seed(0)
    backbone = RecurrentBackbone(3, 4, "lstm", 2, True, padding="pack")
    lengths = torch.tensor([5, 2])
    x = torch.randn(2, 5, 3)
    _, c = backbone(x, lengths).state
    _, c_alone = backbone(x[1:, :2]).state
    torch.testing.assert_close(c[:, 1], c_alone[:, 0], atol=1e-6, rtol=0)
    backbone.padding = "mask"
    assert backbone(x, lengths).state[1] is None
    assert backbone(x, torch.tensor([5, 5])).state[1] is not None


def test_same_parameters_serve_both_padding_strategies():
    torch.manual_seed(0)
    masked = RecurrentBackbone(3, 4, "gru", 2, True, padding="mask")
    packed = RecurrentBackbone(3, 4, "gru", 2, True, padding="pack")
    packed.load_state_dict(masked.state_dict())
    x, lengths = torch.randn(3, 6, 3), torch.tensor([6, 4, 2])
    torch.testing.assert_close(masked(x, lengths).last, packed(x, lengths).last)


def test_auto_padding_picks_mask_on_every_device():
    # measured faster than packing on CPU and on CUDA (scripts/bench_backbone.py)
    assert RecurrentBackbone(3, 4).strategy(torch.device("cpu")) == "mask"
    assert RecurrentBackbone(3, 4).strategy(torch.device("cuda")) == "mask"
    assert RecurrentBackbone(3, 4, padding="pack").strategy(torch.device("cpu")) == "pack"


def test_reverse_within_length_keeps_padding_in_place():
    x = torch.arange(1, 6).view(1, 5, 1).float()
    reversed_x = reverse_within_length(x, torch.tensor([3]))
    assert reversed_x.view(-1).tolist() == [3, 2, 1, 4, 5]
    assert torch.equal(reverse_within_length(reversed_x, torch.tensor([3])), x)


def test_initial_state_is_used():
    backbone = RecurrentBackbone(3, 4, "lstm", 2)
    x = torch.randn(2, 5, 3)
    state = (torch.randn(2, 2, 4), torch.randn(2, 2, 4))
    assert not torch.allclose(backbone(x).outputs, backbone(x, state=state).outputs)


def test_relu_nonlinearity_reaches_the_kernel():
    backbone = RecurrentBackbone(3, 4, "rnn", nonlinearity="relu")
    assert backbone.layers[0][0].nonlinearity == "relu"
    assert (backbone(torch.randn(2, 5, 3)).outputs >= 0).all()


def test_gradients_reach_the_embedding():
    encoder = InputEncoder(8, vocab_size=10, pad_id=0)
    backbone = RecurrentBackbone(8, 6, "lstm", 2, True, dropout=0.2)
    pool = Pooling("attention", backbone.output_size)
    ids = torch.tensor([[3, 4, 5, 0], [6, 7, 0, 0]])
    lengths = torch.tensor([3, 2])
    pool(backbone(encoder(ids), lengths), lengths).sum().backward()
    grad = encoder.encode.weight.grad
    assert grad[[3, 4, 5, 6, 7]].abs().sum(dim=1).gt(0).all()
    assert grad[0].abs().sum() == 0  # the padding row is never trained


def test_attention_puts_no_weight_on_padding():
    pool = Pooling("attention", 4)
    outputs = torch.randn(2, 5, 4)
    weights = pool.attention.weights(outputs, torch.arange(5) < torch.tensor([[3], [5]]))
    assert weights[0, 3:].eq(0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"hidden_size": 0}, "model.hidden_size"),
        ({"hidden_size": -3}, "model.hidden_size"),
        ({"dropout": 1.0}, "model.dropout"),
        ({"dropout": -0.1}, "model.dropout"),
        ({"cell": "lstmm"}, "model.cell"),
        ({"num_layers": 0}, "model.num_layers"),
        ({"nonlinearity": "sigmoid"}, "model.nonlinearity"),
        ({"padding": "left"}, "model.padding"),
        ({"residual": "yes"}, "model.residual"),
        ({"recurrent_init": "xavier"}, "model.recurrent_init"),
        ({"recurrent_init": "orthogonal", "cell": "mingru"}, "model.recurrent_init=orthogonal"),
        ({"recurrent_init": "identity", "cell": "lstm"}, "model.recurrent_init=identity"),
    ],
)
def test_bad_arguments_name_the_config_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        RecurrentBackbone(3, **{"hidden_size": 4, **kwargs})


def test_zero_length_sequence_is_a_clear_error():
    with pytest.raises(ValueError, match="length of 0"):
        RecurrentBackbone(3, 4)(torch.randn(2, 3, 3), torch.tensor([3, 0]))


def test_unknown_pooling_names_the_key():
    with pytest.raises(ValueError, match="task.pooling"):
        Pooling("median", 4)


def test_lstm_forget_gates_start_open():
    backbone = RecurrentBackbone(3, 4, "lstm", 2, True, forget_bias=1.0)
    for directions in backbone.layers:
        for rnn in directions:
            forget = rnn.bias_ih_l0[4:8] + rnn.bias_hh_l0[4:8]
            torch.testing.assert_close(forget, torch.ones(4))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chrono_init_spreads_memory_time_scales_up_to_t_max(cell):
    torch.manual_seed(0)
    backbone = RecurrentBackbone(3, 256, cell, 2, True, chrono_t_max=100)
    for directions in backbone.layers:
        for rnn in directions:
            keep = rnn.bias_ih_l0[256:512] + rnn.bias_hh_l0[256:512]  # LSTM forget / GRU update
            timescale = keep.exp() + 1  # 1 / (1 - sigmoid(b)) for b = log(u): u + 1 steps
            assert timescale.min() >= 2 and timescale.max() <= 100
            assert timescale.max() > 80 and timescale.min() < 20  # spread, not one constant
            if cell == "lstm":
                torch.testing.assert_close(rnn.bias_ih_l0[:256] + rnn.bias_hh_l0[:256], -keep)


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_orthogonal_init_makes_each_gates_recurrent_matrix_orthogonal(cell):
    torch.manual_seed(0)
    backbone = RecurrentBackbone(3, 6, cell, 2, True, chrono_t_max=50, recurrent_init="orthogonal")
    torch.manual_seed(0)
    chrono = RecurrentBackbone(3, 6, cell, 2, True, chrono_t_max=50)
    for directions, plain in zip(backbone.layers, chrono.layers, strict=True):
        for rnn, other in zip(directions, plain, strict=True):
            gates = rnn.weight_hh_l0.split(6)
            assert len(gates) == {"rnn": 1, "lstm": 4, "gru": 3}[cell]
            for gate in gates:
                torch.testing.assert_close(gate @ gate.T, torch.eye(6), atol=1e-5, rtol=0)
            assert not torch.equal(rnn.weight_hh_l0, other.weight_hh_l0)
            # the rest, forget bias and chrono included, is as without it
            for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
                assert torch.equal(getattr(rnn, name), getattr(other, name)), name


def test_identity_init_is_the_irnn_a_relu_state_kept_without_input():
    backbone = RecurrentBackbone(3, 5, "rnn", nonlinearity="relu", recurrent_init="identity")
    rnn = backbone.layers[0][0]
    assert torch.equal(rnn.weight_hh_l0, torch.eye(5))
    assert not rnn.bias_ih_l0.any() and not rnn.bias_hh_l0.any()
    state = torch.rand(1, 2, 5)
    out = backbone(torch.zeros(2, 50, 3), state=state)
    torch.testing.assert_close(out.outputs[:, -1], state[0])


def test_chrono_init_leaves_the_vanilla_rnn_alone_and_checks_its_value():
    torch.manual_seed(0)
    plain = RecurrentBackbone(3, 4, "rnn")
    torch.manual_seed(0)
    chrono = RecurrentBackbone(3, 4, "rnn", chrono_t_max=50)
    for a, b in zip(plain.parameters(), chrono.parameters(), strict=True):
        torch.testing.assert_close(a, b)
    for bad in (2, 10.5, "100"):
        with pytest.raises(ValueError, match="model.chrono_t_max"):
            RecurrentBackbone(3, 4, "gru", chrono_t_max=bad)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chrono_init_carries_the_gradient_across_long_sequences(cell):
    """At initialisation, dL/dx_0 relative to dL/dx_T over 60 steps: the vanishing it fixes."""

    def first_to_last(chrono_t_max):
        torch.manual_seed(0)
        backbone = RecurrentBackbone(8, 64, cell, chrono_t_max=chrono_t_max)
        x = torch.randn(16, 60, 8, requires_grad=True)
        backbone(x, torch.full((16,), 60)).last.pow(2).sum().backward()
        norms = x.grad.norm(dim=(0, 2))
        return (norms[0] / norms[-1]).item()

    default, chrono = first_to_last(None), first_to_last(60)
    assert chrono > 1e-2 and chrono > 100 * default, (default, chrono)  # ~1e3 lstm, ~1e9 gru


def copy_into_torch_module(backbone: RecurrentBackbone) -> torch.nn.Module:
    """torch's own stacked (bi)directional module holding the backbone's weights."""
    cell_class = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[backbone.cell]
    first = backbone.layers[0][0]
    oracle = cell_class(
        first.input_size,
        backbone.hidden_size,
        num_layers=backbone.num_layers,
        bidirectional=backbone.num_directions == 2,
        batch_first=True,
    ).double()
    with torch.no_grad():
        for layer, directions in enumerate(backbone.layers):
            for direction, rnn in enumerate(directions):
                suffix = f"l{layer}" + ("_reverse" if direction else "")
                for name, value in rnn.named_parameters():
                    getattr(oracle, name.replace("l0", suffix)).copy_(value)
    return oracle


@pytest.mark.parametrize(
    ("cell", "num_layers", "bidirectional", "padding"),
    list(itertools.product(CELLS, [1, 2], [False, True], ["mask", "pack"])),
)
def test_backbone_matches_torchs_own_packed_module(cell, num_layers, bidirectional, padding):
    """Outputs, final states and input gradients equal nn.RNN/LSTM/GRU's over a packed batch."""
    torch.manual_seed(0)
    backbone = RecurrentBackbone(5, 6, cell, num_layers, bidirectional, padding=padding).double()
    oracle = copy_into_torch_module(backbone)
    lengths = torch.tensor([7, 3, 1, 5, 7, 2])
    valid = torch.arange(7) < lengths.unsqueeze(1)  # (B, T)
    x = torch.randn(6, 7, 5, dtype=torch.float64)
    x[~valid] = 100.0  # garbage in the padding must reach neither outputs nor gradients
    output_weights = torch.randn(6, 7, backbone.output_size, dtype=torch.float64)
    state_weights = torch.randn(num_layers * backbone.num_directions, 6, 6, dtype=torch.float64)

    def loss(outputs, h):
        return (outputs * output_weights)[valid].sum() + (h * state_weights).sum()

    ours_x = x.clone().requires_grad_()
    ours = backbone(ours_x, lengths)
    ours_h, ours_c = ours.state if cell == "lstm" else (ours.state, None)
    loss(ours.outputs, ours_h).backward()

    theirs_x = x.clone().requires_grad_()
    packed = pack_padded_sequence(theirs_x, lengths, batch_first=True, enforce_sorted=False)
    theirs_packed, theirs_state = oracle(packed)
    theirs, _ = pad_packed_sequence(theirs_packed, batch_first=True, total_length=7)
    theirs_h, theirs_c = theirs_state if cell == "lstm" else (theirs_state, None)
    loss(theirs, theirs_h).backward()

    exact = {"atol": 1e-10, "rtol": 0}
    torch.testing.assert_close(ours.outputs[valid], theirs[valid], **exact)
    torch.testing.assert_close(ours_h, theirs_h, **exact)
    if cell == "lstm" and padding == "pack":
        torch.testing.assert_close(ours_c, theirs_c, **exact)
    torch.testing.assert_close(ours_x.grad, theirs_x.grad, **exact)
    # the summary the heads read: forward at length - 1, backward at step 0, of the top layer
    top = theirs_h[-backbone.num_directions :].transpose(0, 1).reshape(6, -1)
    torch.testing.assert_close(ours.last, top, **exact)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(
    ("cell", "num_layers", "bidirectional", "padding"),
    list(itertools.product(CELLS, [1, 2], [False, True], ["mask", "pack"])),
)
def test_backbone_on_cuda_matches_torchs_own_packed_module(
    cell, num_layers, bidirectional, padding
):
    """The same oracle on cuDNN, in float32 (TF32 off): both padding strategies stay exact."""
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    backbone = RecurrentBackbone(5, 6, cell, num_layers, bidirectional, padding=padding).cuda()
    oracle = copy_into_torch_module(backbone).float().cuda()
    lengths = torch.tensor([7, 3, 1, 5, 7, 2])
    valid = (torch.arange(7) < lengths.unsqueeze(1)).cuda()
    x = torch.randn(6, 7, 5, device="cuda")
    x[~valid] = 100.0
    ours_x, theirs_x = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = backbone(ours_x, lengths)
    ours.outputs[valid].sum().backward()
    packed = pack_padded_sequence(theirs_x, lengths, batch_first=True, enforce_sorted=False)
    theirs, _ = pad_packed_sequence(oracle(packed)[0], batch_first=True, total_length=7)
    theirs[valid].sum().backward()
    close = {"atol": 1e-5, "rtol": 1e-5}
    torch.testing.assert_close(ours.outputs[valid], theirs[valid], **close)
    torch.testing.assert_close(ours_x.grad, theirs_x.grad, **close)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_residual_stack_is_prenorm_blocks_and_a_final_norm(bidirectional):
    """model.residual against the blocks written out by hand from the backbone's own layers."""
    torch.manual_seed(0)
    backbone = RecurrentBackbone(5, 6, "gru", 3, bidirectional, residual=True).eval()
    x = torch.randn(2, 9, 5)

    def layer(index, inputs):
        outs = [
            rnn(inputs.flip(1) if d else inputs)[0] for d, rnn in enumerate(backbone.layers[index])
        ]
        return torch.cat([outs[0], *(o.flip(1) for o in outs[1:])], dim=-1)

    stream = layer(0, x)
    for index in (1, 2):
        stream = stream + layer(index, backbone.norms[index - 1](stream))
    expected = backbone.norms[-1](stream)
    out = backbone(x)
    torch.testing.assert_close(out.outputs, expected)
    size = backbone.hidden_size
    last = (
        expected[:, -1]
        if not bidirectional
        else torch.cat([expected[:, -1, :size], expected[:, 0, size:]], dim=-1)
    )
    torch.testing.assert_close(out.last, last)
    assert backbone.strategy(torch.device("cpu")) == "mask"
    assert not RecurrentBackbone(5, 6, "gru", 2).norms  # off by default: torch's plain stack


@pytest.mark.parametrize(
    ("cell", "residual"), [("mingru", False), ("minlstm", False), ("lstm", True), ("mingru", True)]
)
def test_state_carried_across_windows_equals_one_pass(cell, residual):
    """Truncated BPTT: two windows with the state carried equal one pass over both."""
    torch.manual_seed(0)
    backbone = RecurrentBackbone(5, 6, cell, 3, residual=residual).eval()
    x = torch.randn(2, 20, 5)
    whole = backbone(x)
    first = backbone(x[:, :12])
    second = backbone(x[:, 12:], state=first.state)
    joined = torch.cat([first.outputs, second.outputs], dim=1)
    torch.testing.assert_close(joined, whole.outputs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second.state, whole.state, atol=1e-5, rtol=1e-5)
