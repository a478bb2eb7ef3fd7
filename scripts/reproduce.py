"""Run the reference experiments and write the results table (markdown).

    python scripts/reproduce.py                    # every row, full settings (hours on 2 CPU cores)
    python scripts/reproduce.py --quick            # reduced epochs and data: minutes
    python scripts/reproduce.py --only recall ett  # rows whose name starts with these

Each row is one `python train.py ...` command, run in its own run directory under `--out`
(default outputs/reproduce[_quick]); the table gives our number, the published anchor and its
source, the wall time and the command. `results.md` is rewritten after every row, so an
interrupted run keeps what finished. Rows whose data is missing (`RNNLAB_DATA_DIR`) are
reported as skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Row:
    name: str
    overrides: list[str]
    metrics: list[str]
    anchor: str = ""
    data: str | None = None  # folder under RNNLAB_DATA_DIR this row needs
    quick: list[str] = field(default_factory=list)  # extra overrides for --quick


QUICK_SLICE = ["trainer.max_epochs=2", "+trainer.limit_train_batches=0.1"]

ROWS = [
    Row(
        "imdb_lstm",
        ["model=lstm", "data=imdb"],
        ["test/acc", "test/f1"],
        "from-scratch LSTMs 86.5-89% (Maas et al. 2011 report 88.9% for their word vectors)",
        "imdb",
        QUICK_SLICE,
    ),
    Row(
        "imdb_bilstm",
        ["experiment=imdb_bilstm"],
        ["test/acc", "test/f1"],
        "NBSVM-bi 91.2% (Wang & Manning 2012)",
        "imdb",
        QUICK_SLICE,
    ),
    *[
        Row(
            f"names_{cell}",
            [f"model={cell}", "data=names"],
            ["test/acc", "test/f1"],
            "majority class 52.3% (no published held-out-name protocol)",
            "names",
            ["trainer.max_epochs=2"],
        )
        for cell in ("gru", "lstm")
    ],
    Row(
        "shakespeare_lstm",
        ["experiment=shakespeare_lstm"],
        ["test/loss", "test/bpc"],
        "nanoGPT baby GPT 1.4697 nats/char (GPU); its CPU config 1.88",
        "tinyshakespeare",
        ["trainer.max_epochs=1", "+trainer.limit_train_batches=0.2", "trainer.max_time=null"],
    ),
    *[
        Row(
            f"ett_{horizon}",
            ["data=ett", "model=gru", f"data.horizon={horizon}"],
            ["test/mse", "test/mae", "test/windows"],
            f"DLinear {dlinear}, RLinear {rlinear} (look-back 96; iTransformer's table)",
            "ett",
            ["trainer.max_epochs=2"],
        )
        for horizon, dlinear, rlinear in (
            (96, 0.386, 0.386),
            (192, 0.437, 0.437),
            (336, 0.481, 0.479),
            (720, 0.519, 0.481),
        )
    ],
    *[
        Row(
            f"recall_{low}-{high}_{cell}",
            [f"model={cell}", f"data.min_len={low}", f"data.max_len={high}"],
            ["test/acc"],
            "chance 0.125",
            None,
            ["trainer.max_epochs=3", "data.num_train=2000"],
        )
        for low, high in ((20, 30), (50, 60), (90, 100))
        for cell in ("rnn", "lstm", "gru")
    ],
    Row(
        "multi30k",
        ["experiment=multi30k"],
        ["test/bleu_greedy", "test/bleu_beam"],
        "Bahdanau-style GRU attention, word level: about 28-30 BLEU (tutorial baselines)",
        "multi30k",
        ["trainer.max_epochs=1", "+trainer.limit_train_batches=0.1", "trainer.max_time=null"],
    ),
]


def data_missing(row: Row) -> str | None:
    if row.data is None:
        return None
    root = os.environ.get("RNNLAB_DATA_DIR")
    if not root or not (Path(root) / row.data).exists():
        return f"needs {row.data}/ under RNNLAB_DATA_DIR"
    return None


def run(row: Row, out: Path, quick: bool) -> dict:
    overrides = [*row.overrides, *(row.quick if quick else []), "callbacks.progress_bar=null"]
    command = ["python", "train.py", *overrides]
    result = {"name": row.name, "command": " ".join(command), "anchor": row.anchor}
    if reason := data_missing(row):
        return result | {"status": f"skipped: {reason}"}
    run_dir = out / row.name
    start = time.perf_counter()
    process = subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    result["seconds"] = time.perf_counter() - start
    metrics_file = run_dir / "metrics.json"
    if process.returncode != 0 or not metrics_file.is_file():
        last = (process.stderr.strip().splitlines() or ["?"])[-1]
        return result | {"status": f"failed: {last[:200]}"}
    metrics = json.loads(metrics_file.read_text())
    return result | {"status": "ok", "values": {m: metrics.get(m) for m in row.metrics}}


def table(results: list[dict]) -> str:
    lines = [
        "| experiment | result | published anchor | wall time | command |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        if r["status"] == "ok":
            shown = ", ".join(
                f"{k.split('/')[-1]} {v:.4g}" for k, v in r["values"].items() if v is not None
            )
        else:
            shown = r["status"]
        seconds = f"{r['seconds']:.0f} s" if "seconds" in r else ""
        lines.append(f"| {r['name']} | {shown} | {r['anchor']} | {seconds} | `{r['command']}` |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced settings: minutes")
    parser.add_argument("--only", nargs="*", default=[], help="row name prefixes to run")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    out = args.out or ROOT / "outputs" / ("reproduce_quick" if args.quick else "reproduce")
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in ROWS if not args.only or r.name.startswith(tuple(args.only))]
    if not rows:
        parser.error(f"no row starts with {args.only}; rows: {[r.name for r in ROWS]}")
    results = []
    for row in rows:
        print(f"{row.name} ...", file=sys.stderr, flush=True)
        results.append(run(row, out, args.quick))
        (out / "results.md").write_text(table(results))
    print(table(results))


if __name__ == "__main__":
    main()
