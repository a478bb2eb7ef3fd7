"""Benchmark the backbone's padding strategies: training tokens/s, forward + backward.

Usage: python scripts/bench_backbone.py [--device cpu|cuda] [--cell lstm] [--layers 1]
           [--bidirectional] [--batch 64] [--hidden 256] [--length 230] [--steps 10]
           [--repeats 3] [--lengths bucketed|wide] [--malloc tuned|default]
           [--precision 32|bf16] [--strategies mask pack pack_per_layer full]

Prints one JSON object with the machine (CPU model and the instruction set oneDNN uses, or the
GPU), and real (non-pad) tokens per second, the median of `--repeats` timings, for
  mask: right-padded batch, each layer and direction its own kernel call (exact),
  pack: one pack_padded_sequence through a single multi-layer kernel call (exact),
  pack_per_layer: pack_padded_sequence per layer and direction (the backbone's former CUDA path,
      kept here as the baseline the fused call replaced),
  full: the same batch with every sequence at full length (one kernel call, no padding).
`--lengths bucketed` draws lengths within 5% of each other, as length-bucketed batches are;
`wide` draws them uniformly in 1..length, as naive shuffled batches are. `--malloc default`
skips rnnlab's allocator tuning (src/rnnlab/allocator.py); `--precision bf16` runs under bf16
autocast, as `trainer.precision=bf16-mixed` does. Absolute speeds depend on the instruction set
(oneDNN has bf16 LSTM kernels only with AVX-512 BF16 or AMX): compare ratios from one run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnnlab.allocator import tune_malloc
from rnnlab.hardware import describe_machine
from rnnlab.models import RecurrentBackbone
from rnnlab.models.backbone import reverse_within_length


def per_layer_packed(backbone: RecurrentBackbone, x: torch.Tensor, lengths: torch.Tensor):
    """One pack_padded_sequence per layer and direction (the baseline for `pack`)."""
    for layer, directions in enumerate(backbone.layers):
        if layer > 0:
            x = backbone.dropout(x)
        outputs = []
        for direction, rnn in enumerate(directions):
            inputs = reverse_within_length(x, lengths) if direction == 1 else x
            packed = pack_padded_sequence(inputs, lengths, batch_first=True, enforce_sorted=False)
            out, _ = pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=x.size(1))
            outputs.append(reverse_within_length(out, lengths) if direction == 1 else out)
        x = torch.cat(outputs, dim=-1)
    return x


def tokens_per_second(forward, backbone, tokens, steps, repeats, device, bf16):
    def step():
        backbone.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = forward().float().sum()
        loss.backward()

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up: kernel selection, allocator
    step()
    rates = []
    for _ in range(repeats):
        synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize()
        rates.append(tokens * steps / (time.perf_counter() - start))
    return round(statistics.median(rates))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--embed", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--length", type=int, default=230)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", choices=["bucketed", "wide"], default="bucketed")
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    parser.add_argument(
        "--strategies", nargs="+", default=["mask", "pack"], help="mask pack pack_per_layer full"
    )
    args = parser.parse_args()
    if args.malloc == "tuned":
        tune_malloc()
    device = torch.device(args.device)
    torch.manual_seed(0)
    low = 1 if args.lengths == "wide" else int(args.length * 0.95)
    lengths = torch.randint(low, args.length + 1, (args.batch,))
    lengths[0] = args.length  # the batch is as long as its longest sequence
    x = torch.randn(args.batch, args.length, args.embed, device=device)
    backbone = RecurrentBackbone(
        args.embed, args.hidden, args.cell, args.layers, args.bidirectional
    ).to(device)
    full_lengths = torch.full_like(lengths, args.length)

    def with_padding(padding):
        def forward():
            backbone.padding = padding
            return backbone(x, lengths).outputs

        return forward

    forwards = {
        "mask": with_padding("mask"),
        "pack": with_padding("pack"),
        "pack_per_layer": lambda: per_layer_packed(backbone, x, lengths),
        "full": lambda: backbone(x).outputs,
    }
    results = {
        "config": vars(args),
        "machine": describe_machine(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "threads": torch.get_num_threads(),
        "padding_waste": round(1 - float(lengths.sum()) / lengths.numel() / args.length, 4),
    }
    bf16 = args.precision == "bf16"
    for name in args.strategies:
        tokens = int((full_lengths if name == "full" else lengths).sum())
        results[f"{name}_tokens_per_s"] = tokens_per_second(
            forwards[name], backbone, tokens, args.steps, args.repeats, device, bf16
        )
    if {"mask", "pack"} <= set(args.strategies):
        results["mask_vs_pack"] = round(
            results["mask_tokens_per_s"] / results["pack_tokens_per_s"], 2
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
