"""Training speed and peak memory of every cell over sequence length: the fused kernels
(rnn, lstm, gru) against the parallel-scan cells (mingru, minlstm).

Usage: python scripts/bench_cells.py [--device cpu|cuda] [--lengths 64 256 1024 4096]
           [--cells rnn lstm gru mingru minlstm mingru:log ...] [--precisions 32 bf16] [--batch 64]
           [--embed 128] [--hidden 256] [--steps 5] [--repeats 3] [--out FILE]

A scan cell may name its scan, `mingru:chunked` or `mingru:log` (src/rnnlab/models/parallel.py;
plain `mingru` takes the device's default), to compare the two in one run.

One JSON line per (precision, length, cell): training tokens/s (forward + backward of a
one-layer backbone over a full-length batch, the median of `--repeats` timings of `--steps`
steps), peak memory (CUDA: the allocator's peak; CPU: the peak resident set of a fresh process
per configuration, so one configuration's memory never hides another's; a configuration whose
process dies, out of memory say, gets a line with "failed" and the sweep goes on), and the ratio to
nn.LSTM at the same length and precision, measured in the same run. Then a markdown table.
The machine (CPU model and instruction set, or GPU) is printed first: absolute speeds depend
on it; compare ratios.
"""

from __future__ import annotations

import argparse
import json
import resource
import signal
import statistics
import subprocess
import sys
import time

import torch

from rnnlab.allocator import tune_malloc
from rnnlab.hardware import describe_machine
from rnnlab.models import RecurrentBackbone
from rnnlab.models.backbone import SCAN_CELLS
from rnnlab.models.parallel import SCANS


def measure(args: argparse.Namespace, cell: str, length: int, precision: str) -> dict:
    """Tokens/s and peak memory of one configuration, in this process."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    name, _, scan = cell.partition(":")
    if scan and (name not in SCAN_CELLS or scan not in SCANS):
        raise ValueError(f"{cell}: a scan ({', '.join(SCANS)}) is named for {sorted(SCAN_CELLS)}")
    backbone = RecurrentBackbone(args.embed, args.hidden, name).to(device)
    for directions in backbone.layers if scan else []:
        for module in directions:
            module.scan = scan
    x = torch.randn(args.batch, length, args.embed, device=device)
    bf16 = precision == "bf16"

    def step():
        backbone.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = backbone(x).outputs.float().square().mean()
        loss.backward()

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    step()
    rates = []
    for _ in range(args.repeats):
        synchronize()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize()
        rates.append(args.batch * length * args.steps / (time.perf_counter() - start))
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "cell": cell,
        "length": length,
        "precision": precision,
        "tokens_per_s": round(statistics.median(rates)),
        "peak_mib": round(peak),
    }


def failure(done: subprocess.CompletedProcess) -> str:
    """Why a configuration's process ended without a result, in one line."""
    if done.returncode == -signal.SIGKILL:
        return "killed (SIGKILL: out of memory, most likely)"
    lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
    return lines[-1][:200]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 256, 1024, 4096])
    parser.add_argument("--cells", nargs="+", default=["rnn", "lstm", "gru", "mingru", "minlstm"])
    parser.add_argument("--precisions", nargs="+", default=["32", "bf16"])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--embed", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", help="also write the JSON lines to this file")
    parser.add_argument("--one", nargs=3, metavar=("CELL", "LENGTH", "PRECISION"), help="internal")
    args = parser.parse_args()
    tune_malloc()
    if args.one:  # a fresh process for one CPU configuration
        cell, length, precision = args.one
        print(json.dumps(measure(args, cell, int(length), precision)))
        return
    machine = describe_machine(args.device)
    print(json.dumps({"machine": machine, "torch": torch.__version__, "config": vars(args)}))
    rows = []
    for precision in args.precisions:
        for length in args.lengths:
            for cell in args.cells:
                if args.device == "cpu":
                    command = [sys.executable, __file__, *sys.argv[1:], "--one", cell]
                    command += [str(length), precision]
                    done = subprocess.run(command, capture_output=True, text=True)
                    if done.returncode == 0:
                        row = json.loads(done.stdout.strip().splitlines()[-1])
                    else:  # one configuration out of memory never loses the others
                        row = {"cell": cell, "length": length, "precision": precision}
                        row["failed"] = failure(done)
                else:
                    try:
                        row = measure(args, cell, length, precision)
                    except torch.cuda.OutOfMemoryError as error:
                        torch.cuda.empty_cache()
                        row = {"cell": cell, "length": length, "precision": precision}
                        row["failed"] = f"out of memory: {str(error).splitlines()[0][:150]}"
                rows.append(row)
                print(json.dumps(row), flush=True)
                if args.out:
                    with open(args.out, "a") as out:
                        out.write(json.dumps(row | {"machine": machine}) + "\n")
    measured = [r for r in rows if "failed" not in r]
    lstm = {
        (r["precision"], r["length"]): r["tokens_per_s"] for r in measured if r["cell"] == "lstm"
    }
    print("\n| precision | T | cell | tokens/s | x nn.LSTM | peak MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r:
            print(f"| {r['precision']} | {r['length']} | {r['cell']} | failed: {r['failed']} | | |")
            continue
        base = lstm.get((r["precision"], r["length"]))
        ratio = f"{r['tokens_per_s'] / base:.2f}" if base else ""
        print(
            f"| {r['precision']} | {r['length']} | {r['cell']} | {r['tokens_per_s']:,} "
            f"| {ratio} | {r['peak_mib']:,} |"
        )


if __name__ == "__main__":
    main()
