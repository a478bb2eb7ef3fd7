"""Run the reference experiments over seeds and write the results table (markdown).

    python scripts/reproduce.py                    # every row, 3 seeds (many hours on 2 CPU cores)
    python scripts/reproduce.py --only recall ett  # rows whose name starts with these
    python scripts/reproduce.py --only jsb_lstm    # a row's whole name: that row alone
    python scripts/reproduce.py --only multi30k --seeds 2   # one seed of a long row, another day
    python scripts/reproduce.py --quick            # reduced epochs and data: minutes

    python scripts/reproduce.py --readme README.md # also put the table into the README
    python scripts/reproduce.py --table --readme README.md  # only rewrite the tables, run nothing
    python scripts/reproduce.py --only names --set task.optimizer.decay_embeddings=true \
        --results outputs/variants/decay_embeddings.json     # the rows with a change, kept apart

Each (row, seed) is one `python train.py ... seed=S` command, run in its own directory under `--out`
(default outputs/reproduce[_quick]). Every result is stored with its provenance (commit, torch and
Lightning versions, the machine: CPU model and instruction set or GPU, the precision the run used,
epochs and optimizer steps, wall time and CPU time, date) in `--results`: for full runs the
committed `results/reference.json`, from which the README's table is written; `--quick` keeps its
own file under outputs/. A (row, seed) run again replaces its own entry and keeps the others, so
long rows can have their seeds run on different days. A row whose command changed (new tuned
settings) starts afresh at its first successful seed: the old command's seeds move to "superseded".
The table gives mean ± sd over the stored seeds (with their number), the published anchor and the
estimator it is compared with, the machine and the mean wall time of one seed. A row whose data is
missing (`RNNLAB_DATA_DIR`) is reported as skipped and never replaces a stored result. Reference
runs end on a fixed epoch budget or early stopping, never on `trainer.max_time`, so a slower
machine trains the same schedule.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SEEDS = [12345, 1, 2]  # 12345 is train.yaml's seed: the single-seed rows of before


@dataclass
class Row:
    name: str
    overrides: list[str]
    metrics: list[str]
    anchor: str = ""
    data: str | None = None  # folder under RNNLAB_DATA_DIR this row needs
    quick: list[str] = field(default_factory=list)  # extra overrides for --quick


def tuned_settings(row: str) -> list[str]:
    """The settings of the experiment preset named like the row (conf/experiment/<row>.yaml,
    e.g. jsb_lstm: a cell tuned on one corpus's validation NLL, its comment listing what was
    tried) beyond its task, corpus and cell, as the overrides of the row's command, in the file's
    order; none when there is no such preset."""
    path = ROOT / "conf" / "experiment" / f"{row}.yaml"
    if not path.is_file():
        return []
    preset = yaml.safe_load(path.read_text())
    preset.pop("defaults", None)  # experiment=music|copy|adding and the cell: the command's

    def leaves(node: dict, prefix: str = "") -> list[str]:
        settings = []
        for key, value in node.items():
            if isinstance(value, dict):
                settings += leaves(value, f"{prefix}{key}.")
            elif isinstance(value, (bool, list)) or value is None:
                raise ValueError(f"{path.name}: {prefix}{key} is not a number or a word")
            else:
                settings.append(f"{prefix}{key}={value}")
        return settings

    return [setting for setting in leaves(preset) if not setting.startswith("data.name=")]


# Bai, Kolter & Koltun 2018, Table 1, the field's RNN benchmark table: per task its label, the
# metric of its rows, the published recurrent columns, the TCN's, and the size (parameters, about
# the same for every model of theirs on a task). The reference rows and the
# README's side-by-side table both read it.
BAI2018 = {
    "adding_600": (
        "adding problem, T=600, test MSE (predicting 1: 1/6)",
        "test/mse",
        {"lstm": "0.164", "gru": "5.3e-5", "rnn": "0.177"},
        "5.8e-5",
        "70K",
    ),
    "copy_1000": (
        "copy memory, T=1000, test cross-entropy per step (no memory: 10 ln 8 / 1020 = 0.0204)",
        "test/loss",
        {"lstm": "0.0204", "gru": "0.0197", "rnn": "0.0202"},
        "3.5e-5",
        "16K",
    ),
    "jsb": (
        "JSB Chorales, test NLL per frame",
        "test/loss",
        {"lstm": "8.45", "gru": "8.43", "rnn": "8.91"},
        "8.10",
        "300K",
    ),
    "nottingham": (
        "Nottingham, test NLL per frame",
        "test/loss",
        {"lstm": "3.29", "gru": "3.46", "rnn": "4.05"},
        "3.07",
        "1M",
    ),
}
# minGRU (the parallel-scan cell) on the synthetic tasks: Bai et al. had none; its rows ask
# whether a recurrent model reaches the TCN column
BAI_CELLS = ("lstm", "gru", "rnn", "mingru")


def bai_anchor(task: str, cell: str) -> str:
    """A row's anchor: the cell's published column, the TCN's, and the size of their models."""
    _, _, published, tcn, size = BAI2018[task]
    name = "minGRU" if cell == "mingru" else cell.upper()
    column = (
        f"Bai et al. 2018 {name} {published[cell]}"
        if cell in published
        else (f"{name}: not in Bai et al. 2018")
    )
    return f"{column}, TCN {tcn} (their models about {size} parameters)"


def bai_row(
    name: str,
    overrides: list[str],
    metrics: list[str],
    anchor: str,
    data: str | None,
    quick: list[str],
    limit: str = "",
) -> Row:
    """A row of Bai et al.'s table. A row with a preset named like it, experiment=<row name>
    (e.g. jsb_gru, copy_1000_rnn), runs its settings, tuned on validation unless
    PRESETS_NOT_TUNED says otherwise; the command spells them out, so the stored seeds stay
    tied to what they ran."""
    settings = tuned_settings(name)
    if settings:
        how = PRESETS_NOT_TUNED.get(name, f"tuned on validation{limit}")
        anchor += f"; {how} (experiment={name}): " + " ".join(settings)
    return Row(name, [*overrides, *settings], metrics, anchor, data, quick)


# presets of Bai et al.'s rows whose settings were not chosen on the row's own validation
PRESETS_NOT_TUNED = {
    "nottingham_gru": "at Bai et al.'s 1M with the settings first tuned for the Nottingham LSTM "
    "(weight decay 0.05), not tuned for the GRU",
}


QUICK_SLICE = ["trainer.max_epochs=2", "trainer.limit_train_batches=0.1"]

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
        ["test/loss_windows", "test/loss", "test/bpc"],
        "nanoGPT baby GPT 1.4697 nats/char (GPU; its CPU config 1.88), its estimator: the mean "
        "over random 256-character windows each from a fresh state, our loss_windows. loss and "
        "bpc read the whole stream with the state carried: lower, not comparable. The split is "
        "the validation 10%, which also selects the checkpoint (the data has no test split)",
        "tinyshakespeare",
        ["trainer.max_epochs=1", "trainer.limit_train_batches=0.2"],
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
    # Bai, Kolter & Koltun 2018, Table 1: the recurrent rows of the field's benchmark table
    *[
        bai_row(
            f"adding_600_{cell}",
            ["experiment=adding", f"model={cell}"],
            ["test/mse"],
            f"{bai_anchor('adding_600', cell)} (T=600; predicting 1: 1/6)",
            None,
            ["trainer.max_epochs=1", "data.num_train=2000", "data.seq_len=100"],
        )
        for cell in BAI_CELLS
    ],
    *[
        bai_row(
            f"copy_1000_{cell}",
            ["experiment=copy", f"model={cell}"],
            ["test/loss", "test/acc_symbols"],
            f"{bai_anchor('copy_1000', cell)} (T=1000; no memory: 10 ln 8 / 1020 = 0.0204)",
            None,
            ["trainer.max_epochs=1", "data.num_train=640", "data.blanks=100"],
        )
        for cell in BAI_CELLS
    ],
    *[
        bai_row(
            f"{name}_{cell}{suffix}",
            ["experiment=music", f"model={cell}", f"data.name={name}"],
            ["test/loss"],
            f"{bai_anchor(name, cell)}, test NLL per frame",
            "music",
            ["trainer.max_epochs=2"],
            limit,
        )
        for name in ("jsb", "nottingham")
        for suffix, limit in (("", ""), ("_large", " without a size limit"))
        for cell in ("lstm", "gru", "rnn")
        if suffix == "" or tuned_settings(f"{name}_{cell}{suffix}")
    ],
    *[
        Row(
            f"fsdd{protocol}_{model}",
            ["experiment=fsdd", f"model={model}", *overrides],
            ["test/acc", "test/f1"],
            "one-layer BiLSTM on MFCCs 98.4% on a random split (eonu/fsdd README)"
            + ("; here speaker george held out entirely" if protocol else ""),
            "fsdd",
            ["trainer.max_epochs=2"],
        )
        for protocol, overrides in (("", []), ("_speaker", ["data.test_speaker=george"]))
        for model in ("bilstm", "bigru")
    ],
    *[
        Row(
            f"fsdd_connected_{model}",
            ["experiment=fsdd_connected", f"model={model}"],
            ["test/der", "test/acc"],
            "no published number: 1-7 digits of one speaker's recordings 5-49 (train, val) or "
            "0-4 (test); digit error rate, beam 8",
            "fsdd",
            ["trainer.max_epochs=1", "data.train_utterances=800"],
        )
        for model in ("bilstm", "bigru")
    ],
    Row(
        "multi30k",
        ["experiment=multi30k"],
        ["test/bleu_greedy", "test/bleu_beam"],
        "Bahdanau-style GRU attention, word level: about 28-30 BLEU (tutorial baselines)",
        "multi30k",
        ["trainer.max_epochs=1", "trainer.limit_train_batches=0.1"],
    ),
]


def selected_rows(only: list[str]) -> list[Row]:
    """The rows `--only` names: a row's whole name selects that row alone (jsb_lstm, not
    jsb_lstm_large too); any other word selects the rows whose name starts with it."""
    names = {row.name for row in ROWS}
    exact = {word for word in only if word in names}
    prefixes = tuple(word for word in only if word not in names)
    return [
        r for r in ROWS if not only or r.name in exact or (prefixes and r.name.startswith(prefixes))
    ]


def data_missing(row: Row) -> str | None:
    if row.data is None:
        return None
    root = os.environ.get("RNNLAB_DATA_DIR")
    if not root or not (Path(root) / row.data).exists():
        return f"needs {row.data}/ under RNNLAB_DATA_DIR"
    return None


def command_of(row: Row, quick: bool, extra: tuple[str, ...] = ()) -> list[str]:
    return [*row.overrides, *(row.quick if quick else []), *extra, "callbacks.progress_bar=null"]


def command_line(row: Row, quick: bool, extra: tuple[str, ...] = ()) -> str:
    """The command a row's results are stored under (`<seed>` for the seed)."""
    return "python train.py " + " ".join(command_of(row, quick, extra)) + " seed=<seed>"


def provenance() -> dict:
    """Where and with what a result was measured."""
    import lightning
    import torch

    from rnnlab.hardware import describe_machine

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
        return result.stdout.strip()

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    # the results files themselves change during a run: they do not make the code dirty
    if git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"):
        commit += "+dirty"
    return {
        "commit": commit,
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "machine": describe_machine(),
    }


def cpu_seconds() -> float:
    """User + system time of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(row: Row, seed: int, out: Path, quick: bool, extra: tuple[str, ...] = ()) -> dict:
    """One seed of one row: its metrics, wall time, epochs and precision, or why not."""
    overrides = [*command_of(row, quick, extra), f"seed={seed}"]
    if reason := data_missing(row):
        return {"status": f"skipped: {reason}"}
    run_dir = out / f"{row.name}_seed{seed}"
    start, used = time.perf_counter(), cpu_seconds()
    process = subprocess.run(
        [sys.executable, "train.py", *overrides, f"hydra.run.dir={run_dir}", "overwrite=true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    result = {
        "seconds": round(time.perf_counter() - start, 1),
        # CPU time of the run and its workers: wall time grows when other work shares the cores
        "cpu_seconds": round(cpu_seconds() - used, 1),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    metrics_file = run_dir / "metrics.json"
    if process.returncode != 0 or not metrics_file.is_file():
        last = (process.stderr.strip().splitlines() or ["?"])[-1]
        return result | {"status": f"failed: {last[:200]}"}
    metrics = json.loads(metrics_file.read_text())
    config = yaml.safe_load((run_dir / "config_resolved.yaml").read_text())
    return result | {
        "status": "ok",
        "values": {m: metrics.get(m) for m in row.metrics},
        # the best validation value(s) and their epoch, which a tuned row's settings were chosen
        # on: a later variant is compared with these, never with the test values
        "validation": {k: v for k, v in metrics.items() if k.endswith("_best")}
        | {"best_epoch": metrics.get("best_epoch")},
        "epochs": metrics.get("epochs"),
        "steps": metrics.get("steps"),
        "parameters": metrics.get("parameters"),
        "precision": str(config["trainer"].get("precision")),
    }


def wall_time(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def mean_sd(values: list[float]) -> str:
    """'0.8852 ± 0.0031': the mean and, over two values or more, the sample sd, the mean given to
    the sd's second significant digit (8.400 ± 0.017, never 8.4 ± 0.017); means below 0.001 in
    e-notation (8.3e-6 ± 5.8e-6), as Bai et al. print theirs."""
    mean = statistics.fmean(values)
    if not all(map(math.isfinite, values)):  # a diverged seed: nan or inf, shown, never an sd
        return f"{mean:.4g}"
    sd = statistics.stdev(values) if len(values) > 1 else None
    if not sd:
        return _tidy(f"{mean:.4g}") + ("" if sd is None else " ± 0")
    place = math.floor(math.log10(sd)) - 1  # the sd's second significant digit
    if mean != 0 and abs(mean) < 1e-3:
        rounded = abs(round(mean, -place)) or abs(mean)  # 9.94e-6 to the sd's digit: 1.0e-5
        digits = max(1, math.floor(math.log10(rounded)) - place + 1)  # significant
        return _tidy(f"{round(mean, -place):.{digits - 1}e} ± {sd:.1e}")
    if place > 0:  # 1240 ± 150, not 1244.67 ± 150.33
        mean, sd = round(mean, -place), round(sd, -place)
    decimals = max(0, -place)
    return f"{mean:.{decimals}f} ± {sd:.{decimals}f}"


def _tidy(text: str) -> str:
    """'5.3e-5', not '5.3e-05': the exponent without its padding zero."""
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", text)


def summary(runs: dict[str, dict], metrics: list[str]) -> str:
    """'acc 0.8852 ± 0.0031' per metric over the seeds that ran (sd needs two of them)."""
    ok = [r for r in runs.values() if r["status"] == "ok"]
    if not ok:
        return "; ".join(sorted({r["status"] for r in runs.values()})) or "not run"
    parts = []
    for metric in metrics:
        values = [r["values"][metric] for r in ok if r["values"].get(metric) is not None]
        name = metric.split("/")[-1]
        if not values:  # a metric the row gained after these seeds ran: say so, never skip it
            parts.append(f"{name} not measured yet")
            continue
        parts.append(f"{name} {mean_sd(values)}")
    return ", ".join(parts) + f" ({len(ok)} seed{'s' if len(ok) > 1 else ''})"


def machine_label(runs: dict[str, dict]) -> str:
    """The machines a row's seeds ran on, short: CPU or GPU, cores, instruction set."""
    labels = set()
    for r in runs.values():
        provenance = r.get("provenance", {})
        if "legacy" in provenance:
            labels.add("not recorded (measured before provenance was kept)")
        machine = provenance.get("machine")
        if not machine:
            continue
        if machine.get("gpu"):
            labels.add(machine["gpu"])
        else:
            isa = machine.get("onednn_max_cpu_isa") or machine.get("isa")
            threads = machine.get("threads")  # not kept before; then torch's default, = cores
            plural = "s" if threads != 1 else ""
            used = (
                f", {threads} thread{plural}" if threads and threads != machine.get("cores") else ""
            )
            labels.add(f"{machine.get('cpu')}, {machine.get('cores')} cores{used}, {isa}")
    return "; ".join(sorted(labels))


def table(store: dict, quick: bool = False, extra: tuple[str, ...] = ()) -> str:
    """The markdown table of the stored results, in the order of ROWS (of a --quick or --set
    store: the commands it runs)."""
    lines = [
        "| experiment | result: mean ± sd over seeds | published anchor | machine "
        "| wall time a seed | command |",
        "|---|---|---|---|---|---|",
    ]
    rows = store.get("rows", {})
    for row in ROWS:
        if row.name not in rows:
            continue
        entry = rows[row.name]
        runs = entry.get("runs", {})
        seconds = [r["seconds"] for r in runs.values() if r["status"] == "ok" and "seconds" in r]
        shown_time = wall_time(statistics.fmean(seconds)) if seconds else ""
        anchor = row.anchor
        if entry.get("command") != command_line(row, quick, extra) and entry.get("anchor"):
            # seeds of the row's previous command: beside what they were measured against, never
            # beside settings they did not run (the command column shows theirs)
            anchor = f"{entry['anchor']} (seeds of the row's previous command)"
        lines.append(
            f"| {row.name} | {summary(runs, row.metrics)} | {anchor} | {machine_label(runs)} "
            f"| {shown_time} | `{entry['command']}` |"
        )
    return "\n".join(lines) + "\n"


def bai_table(store: dict) -> str:
    """Bai et al. 2018's Table 1 beside the stored rows: per task and cell, our mean ± sd over
    the seeds run (the row's first metric), with the seeds and the model's size, then the
    published value. Only results of the row's full command count: seeds of `--quick`, of
    `--set` variants or of a command since changed say so instead of showing a number."""
    by_name = {row.name: row for row in ROWS}
    lines = [
        "| task | size (Bai et al.) | "
        + " | ".join(c.upper() if c != "mingru" else "minGRU" for c in BAI_CELLS)
        + " | TCN |",
        "|---" * (len(BAI_CELLS) + 3) + "|",
    ]
    rows = store.get("rows", {})
    for task, (label, metric, published, tcn, size) in BAI2018.items():
        cells = []
        for cell in BAI_CELLS:
            row = by_name.get(f"{task}_{cell}")
            if row is None:  # no such row: minGRU on music
                cells.append("—")
                continue
            entry = rows.get(row.name, {})
            ours = bai_cell(entry, row, metric)
            cells.append(f"{ours} · {published[cell]}" if cell in published else ours)
        lines.append(f"| {label} | {size} | " + " | ".join(cells) + f" | {tcn} |")
    return "\n".join(lines) + "\n"


def bai_cell(entry: dict, row: Row, metric: str) -> str:
    """'8.139 ± 0.030 (3 seeds, 1.58M)': one row's results in Bai et al.'s table."""
    runs = entry.get("runs", {})
    if not runs:
        return "not run yet"
    if entry.get("command") != command_line(row, quick=False):
        return "measured with another command"
    ok = [r for r in runs.values() if r["status"] == "ok"]
    values = [r["values"][metric] for r in ok if r["values"].get(metric) is not None]
    failed = sum(r["status"].startswith("failed") for r in runs.values())
    facts = [f"{len(values)} seed{'s' if len(values) != 1 else ''}"] if values else []
    sizes = {r.get("parameters") for r in ok}
    if len(sizes) == 1 and None not in sizes:
        facts.append(short_count(sizes.pop()))
    if failed:
        facts.append(f"{failed} failed")
    if not values:
        return "; ".join(facts) if failed else "not measured yet"
    return f"{mean_sd(values)} ({', '.join(facts)})"


def short_count(n: float) -> str:
    """A parameter count as a table shows it: 1.58M, 85.5K, 9.4K."""
    if n >= 1e6:
        return f"{n / 1e6:.3g}M"
    return f"{n / 1e3:.3g}K"


def merge(
    store: dict, row: Row, seed: int, result: dict, quick: bool, extra: tuple[str, ...] = ()
) -> None:
    """Store one seed's result; a skip or a failure keeps a result measured before."""
    entry = store.setdefault("rows", {}).setdefault(row.name, {"runs": {}})
    command = command_line(row, quick, extra)
    if entry["runs"] and entry.get("command") not in (None, command):
        # the row's command changed (a tuned preset): the seeds stored measured another
        # experiment, so they leave the mean, kept under "superseded", once the new one has run
        if result["status"] != "ok":
            if not result["status"].startswith("skipped"):
                entry["last_failure"] = result | {"command": command}
                # kept per seed: once the new command has a result, its failed seeds count too
                failures = entry.setdefault("failures_of_new_command", {})
                failures[str(seed)] = result | {"command": command}
            return
        old = {"command": entry["command"], "runs": entry["runs"]}
        entry.setdefault("superseded", []).append(old)
        entry["runs"] = {
            failed_seed: {key: value for key, value in failure.items() if key != "command"}
            for failed_seed, failure in entry.pop("failures_of_new_command", {}).items()
            if failure["command"] == command
        }
        entry.pop("last_failure", None)
    entry["command"] = command
    entry["anchor"] = row.anchor
    entry["metrics"] = row.metrics
    previous = entry["runs"].get(str(seed))
    if previous and previous["status"] == "ok" and result["status"] != "ok":
        # a skip (no data here) or a failed re-run never replaces a measured result
        if not result["status"].startswith("skipped"):
            previous["last_failure"] = result
        return
    entry["runs"][str(seed)] = result


def load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {"rows": {}}


def record(
    path: Path, row: Row, seed: int, result: dict, quick: bool, extra: tuple[str, ...] = ()
) -> dict:
    """Merge one seed's result into the results file as it is now on disk, and return it.

    Two reproduce runs may share the file (two rows at once, on two queues): each re-reads it
    under a lock, so neither writes back a copy that lacks the other's results. The write is
    atomic: an interrupted run never leaves half a file.
    """
    from rnnlab.data.storage import atomic_write_text, cache_lock

    with cache_lock(path):
        store = load(path)
        merge(store, row, seed, result, quick, extra)
        atomic_write_text(path, json.dumps(store, indent=1, sort_keys=True) + "\n")
    return store


README_START, README_END = "<!-- reproduce:start -->", "<!-- reproduce:end -->"
BAI_START, BAI_END = "<!-- bai2018:start -->", "<!-- bai2018:end -->"


def has_markers(readme: Path, start: str = README_START, end: str = README_END) -> bool:
    content = readme.read_text()
    return start in content and end in content


def update_readme(
    readme: Path, text: str, start: str = README_START, end: str = README_END
) -> None:
    """Replace what stands between the README's markers (reproduce's unless named) with text."""
    if not has_markers(readme, start, end):
        raise SystemExit(f"{readme} has no {start} ... {end} markers")
    head, rest = readme.read_text().split(start, 1)
    tail = rest.split(end, 1)[1]
    readme.write_text(f"{head}{start}\n{text}{end}{tail}")


def write_readme(
    readme: Path, store: dict, quick: bool = False, extra: tuple[str, ...] = ()
) -> None:
    """The reference table between reproduce's markers; Bai et al.'s table beside its rows
    between its own, where the README has them (a README of one's own may not)."""
    update_readme(readme, table(store, quick, extra))
    if has_markers(readme, BAI_START, BAI_END):
        update_readme(readme, bai_table(store), BAI_START, BAI_END)
    else:
        print(
            f"{readme} has no {BAI_START} markers: Bai et al.'s table not written", file=sys.stderr
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="reduced settings: minutes")
    parser.add_argument("--only", nargs="*", default=[], help="row name prefixes to run")
    parser.add_argument("--seeds", nargs="+", type=int, default=DEFAULT_SEEDS)
    parser.add_argument("--out", type=Path, help="run directories (default under outputs/)")
    parser.add_argument("--results", type=Path, help="the results file (see above)")
    parser.add_argument("--readme", type=Path, help="a README with reproduce markers to update")
    parser.add_argument("--table", action="store_true", help="rewrite the tables, run nothing")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every row"
    )
    args = parser.parse_args(argv)
    extra = tuple(args.set)
    out = args.out or ROOT / "outputs" / ("reproduce_quick" if args.quick else "reproduce")
    out.mkdir(parents=True, exist_ok=True)
    default_results = out / "results.json" if args.quick else ROOT / "results" / "reference.json"
    results_file = args.results or default_results
    if extra and results_file.resolve() == (ROOT / "results" / "reference.json").resolve():
        parser.error("--set changes the reference rows: give a --results file of their own")
    rows = selected_rows(args.only)
    if not rows:
        parser.error(f"no row starts with {args.only}; rows: {[r.name for r in ROWS]}")
    if args.readme and not (args.readme.is_file() and has_markers(args.readme)):
        # before hours of runs, not after them
        parser.error(f"--readme {args.readme}: no file with {README_START} ... {README_END}")
    store = load(results_file)
    for row in [] if args.table else rows:
        for seed in args.seeds:
            print(f"{row.name} seed={seed} ...", file=sys.stderr, flush=True)
            where = provenance()  # the code the run starts with: it may change between rows
            result = run(row, seed, out, args.quick, extra)
            if result["status"] == "ok":
                result["provenance"] = where
            store = record(results_file, row, seed, result, args.quick, extra)
            (out / "results.md").write_text(table(store, args.quick, extra))
    (out / "results.md").write_text(table(store, args.quick, extra))
    if args.readme:
        write_readme(args.readme, store, args.quick, extra)
    print(table(store, args.quick, extra))


if __name__ == "__main__":
    main()
