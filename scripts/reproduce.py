"""Run the reference experiments and write the results table (markdown).

    python scripts/reproduce.py                    # every row, full settings (hours on 2 CPU cores)
    python scripts/reproduce.py --quick            # reduced epochs and data: minutes
    python scripts/reproduce.py --only recall ett  # rows whose name starts with these

    python scripts/reproduce.py --readme README.md # also put the table into the README
    python scripts/reproduce.py --table --readme README.md  # only rewrite the tables, run nothing

Each row is one `python train.py ...` command, run in its own run directory under `--out`
(default outputs/reproduce[_quick]); the table gives our number, the published anchor and its
source, the wall time and the command. Results accumulate in `results.json` there: a run with
`--only` replaces its own rows and keeps the others, so rows can be run one session at a time.
`results.md` (every stored row, in the order below) is rewritten after every row, so an
interrupted run keeps what finished. Rows whose data is missing (`RNNLAB_DATA_DIR`) are
reported as skipped; a skip never replaces a stored result.
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
        "names_experiment",
        ["experiment=names_gru"],
        ["test/acc", "test/f1"],
        "majority class 52.3%",
        "names",
        ["trainer.max_epochs=2"],
    ),
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
            f"recall_{low}-{high}_{cell}{'_chrono' if chrono else ''}",
            [f"model={cell}", f"data.min_len={low}", f"data.max_len={high}"]
            + ([f"model.chrono_t_max={high}"] if chrono else []),
            ["test/acc"],
            "chance 0.125",
            None,
            ["trainer.max_epochs=3", "data.num_train=2000"],
        )
        # the gated cells again with chrono initialisation where the default init fails
        for low, high, cells, chrono in (
            (20, 30, ("rnn", "lstm", "gru"), False),
            (50, 60, ("rnn", "lstm", "gru"), False),
            (50, 60, ("lstm", "gru"), True),
            (90, 100, ("rnn", "lstm", "gru"), False),
            (90, 100, ("lstm", "gru"), True),
        )
        for cell in cells
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


def wall_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def table(results: dict[str, dict]) -> str:
    """The markdown table of the stored results, in the order of ROWS."""
    lines = [
        "| experiment | result | published anchor | wall time | command |",
        "|---|---|---|---|---|",
    ]
    for r in (results[row.name] for row in ROWS if row.name in results):
        if r["status"] == "ok":
            shown = ", ".join(
                f"{k.split('/')[-1]} {v:.4g}" for k, v in r["values"].items() if v is not None
            )
        else:
            shown = r["status"]
        seconds = wall_time(r["seconds"]) if "seconds" in r else ""
        lines.append(f"| {r['name']} | {shown} | {r['anchor']} | {seconds} | `{r['command']}` |")
    return "\n".join(lines) + "\n"


def merge(stored: dict[str, dict], result: dict) -> None:
    """Store a row's result; a skip (data missing here) keeps a result measured elsewhere."""
    previous = stored.get(result["name"])
    if result["status"].startswith("skipped") and previous and previous["status"] == "ok":
        return
    stored[result["name"]] = result


README_START, README_END = "<!-- reproduce:start -->", "<!-- reproduce:end -->"


def update_readme(readme: Path, text: str) -> None:
    """Replace what stands between the README's reproduce markers with the table."""
    content = readme.read_text()
    if README_START not in content or README_END not in content:
        raise SystemExit(f"{readme} has no {README_START} ... {README_END} markers")
    head, rest = content.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    readme.write_text(f"{head}{README_START}\n{text}{README_END}{tail}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced settings: minutes")
    parser.add_argument("--only", nargs="*", default=[], help="row name prefixes to run")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--readme", type=Path, help="a README with reproduce markers to update")
    parser.add_argument("--table", action="store_true", help="rewrite the tables, run nothing")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "outputs" / ("reproduce_quick" if args.quick else "reproduce")
    out.mkdir(parents=True, exist_ok=True)
    rows = [r for r in ROWS if not args.only or r.name.startswith(tuple(args.only))]
    if not rows:
        parser.error(f"no row starts with {args.only}; rows: {[r.name for r in ROWS]}")
    store = out / "results.json"
    results = json.loads(store.read_text()) if store.is_file() else {}
    for row in [] if args.table else rows:
        print(f"{row.name} ...", file=sys.stderr, flush=True)
        merge(results, run(row, out, args.quick))
        store.write_text(json.dumps(results, indent=1))
        (out / "results.md").write_text(table(results))
    (out / "results.md").write_text(table(results))
    if args.readme:
        update_readme(args.readme, table(results))
    print(table(results))


if __name__ == "__main__":
    main()
