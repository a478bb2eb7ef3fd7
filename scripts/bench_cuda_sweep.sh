#!/usr/bin/env bash
# Usage: bash scripts/bench_cuda_sweep.sh [OUT_FILE]
# The backbone's padding strategies on CUDA, every cell x (layers, bidirectional) x precision x
# length spread: one JSON line each from scripts/bench_backbone.py.
set -euo pipefail
out=${1:-bench_cuda.jsonl}
for lengths in bucketed wide; do
  for precision in 32 bf16; do
    for cell in lstm gru rnn; do
      for shape in "1" "2" "1 --bidirectional" "2 --bidirectional"; do
        python scripts/bench_backbone.py --device cuda --cell "$cell" --layers $shape \
          --precision "$precision" --lengths "$lengths" --steps 20 --repeats 5 \
          --strategies mask pack pack_per_layer full | tee -a "$out"
      done
    done
  done
done
