"""Benchmark the backbone's padding strategies: training tokens/s of mask vs pack vs a full batch.

Usage: python scripts/bench_backbone.py [--cell lstm] [--batch 64] [--hidden 256] [--steps 10]
                                       [--malloc tuned|default] [--precision 32|bf16]

Prints one JSON object: real (non-pad) tokens per second, forward + backward, for
  mask: right-padded batch through the fused kernel (exact; the CPU default),
  pack: pack_padded_sequence per layer and direction (exact; the CUDA default),
and their ratio. Lengths are drawn like length-bucketed IMDb batches (within 5% of each
other). `--malloc default` skips rnnlab's allocator tuning (see src/rnnlab/allocator.py);
`--precision bf16` runs under bf16 autocast, as `trainer.precision=bf16-mixed` does.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from rnnlab.allocator import tune_malloc
from rnnlab.models import RecurrentBackbone


def tokens_per_second(backbone, x, lengths, steps, bf16=False):
    def step():
        backbone.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = backbone(x, lengths).outputs.float().sum()
        loss.backward()

    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return int(lengths.sum()) * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--bidirectional", action="store_true")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--embed", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--length", type=int, default=230)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--malloc", choices=["tuned", "default"], default="tuned")
    parser.add_argument("--precision", choices=["32", "bf16"], default="32")
    args = parser.parse_args()
    if args.malloc == "tuned":
        tune_malloc()
    torch.manual_seed(0)
    lengths = torch.randint(int(args.length * 0.95), args.length + 1, (args.batch,))
    x = torch.randn(args.batch, args.length, args.embed)
    results = {"config": vars(args), "threads": torch.get_num_threads()}
    for padding in ("mask", "pack"):
        backbone = RecurrentBackbone(
            args.embed, args.hidden, args.cell, bidirectional=args.bidirectional, padding=padding
        )
        results[f"{padding}_tokens_per_s"] = round(
            tokens_per_second(backbone, x, lengths, args.steps, args.precision == "bf16")
        )
    results["mask_vs_pack"] = round(results["mask_tokens_per_s"] / results["pack_tokens_per_s"], 2)
    print(json.dumps(results))


if __name__ == "__main__":
    main()
