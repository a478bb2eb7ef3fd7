"""Padding waste and batch reuse of the length-bucketing sampler on a data set's real lengths.

Usage: python scripts/bench_bucketing.py --data-dir DATA [--batch 64] [--epochs 3]
           [--multipliers 50 100 200 400] [--noise 0 0.05 0.1]

Reads IMDb's training reviews (DATA/imdb/train.parquet), tokenises them with the project's
word tokeniser and prints one JSON line per (bucket_size_multiplier, length_noise): the padding
waste (fraction of padded positions) and the batch-mate reuse: of each example's batch-mates in
one epoch, the fraction that are its batch-mates again the next epoch (mean over examples and
consecutive epoch pairs). A global sort by length reuses nearly every batch-mate; plain shuffled
batches reuse almost none.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyarrow.parquet as pq
import torch

from rnnlab.data.collate import BucketBatchSampler, padding_waste
from rnnlab.data.tokenizers import WordTokenizer


def batch_mate_reuse(first: list[list[int]], second: list[list[int]], size: int) -> float:
    """Mean over examples of |mates in both epochs| / |mates in the first|."""
    batch_of = torch.empty(size, dtype=torch.long)
    for number, batch in enumerate(second):
        batch_of[batch] = number
    shared = total = 0
    for batch in first:
        index = torch.tensor(batch)
        mates_next = batch_of[index]  # each member's batch number next epoch
        for member in range(len(batch)):
            others = torch.cat([mates_next[:member], mates_next[member + 1 :]])
            shared += int((others == mates_next[member]).sum())
            total += len(others)
    return shared / total if total else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--multipliers", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05, 0.1])
    args = parser.parse_args()
    texts = pq.read_table(args.data_dir / "imdb" / "train.parquet", columns=["text"])
    tokenizer = WordTokenizer()
    lengths = torch.tensor([len(tokenizer(t)) for t in texts.column("text").to_pylist()])
    for multiplier in args.multipliers:
        for noise in args.noise:
            sampler = BucketBatchSampler(
                lengths, args.batch, bucket_size_multiplier=multiplier, length_noise=noise
            )
            epochs = []
            for epoch in range(args.epochs):
                sampler.set_epoch(epoch)
                epochs.append(sampler.batches())
            reuse = [
                batch_mate_reuse(a, b, len(lengths))
                for a, b in zip(epochs, epochs[1:], strict=False)
            ]
            waste = [padding_waste(batches, lengths) for batches in epochs]
            print(
                json.dumps(
                    {
                        "bucket_size_multiplier": multiplier,
                        "length_noise": noise,
                        "padding_waste": round(sum(waste) / len(waste), 4),
                        "batch_mate_reuse": round(sum(reuse) / len(reuse), 4),
                        "examples": len(lengths),
                    }
                ),
                flush=True,
            )


if __name__ == "__main__":
    main()
