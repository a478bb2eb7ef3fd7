"""Train every cell family for the same minutes on each task and compare what each reaches.

    python scripts/equal_budget.py                      # every task x cell, 3 seeds
    python scripts/equal_budget.py --only adding copy --cells mingru lstm --seeds 1
    python scripts/equal_budget.py --shard 0/2 &  python scripts/equal_budget.py --shard 1/2
    python scripts/equal_budget.py --table --readme README.md   # rewrite the table, run nothing

Each (task, cell, seed) is one command, `python train.py <task> model=<cell> seed=S` with
`trainer.max_time=<the task's budget> trainer.max_epochs=-1 trainer.min_epochs=0`: training (and
the validation inside it) stops once the budget is spent, the run is validated at the step it
stopped on, and its best checkpoint is tested, as every run is. Data preparation and the test are
outside the budget. Early stopping stays on: a cell that stops improving may end sooner.

This is the one place where a clock ends runs. It measures what a cell reaches in the same minutes
on this machine, so its numbers depend on the machine and on the thread count (both recorded with
every result): compare cells within one table, never with the reference rows, which end on a
fixed epoch budget (`scripts/reproduce.py`).

Results go to `results/equal_budget.json` through reproduce.py's locked store, so shards sharing
it keep each other's results. A (task, cell, seed) already measured at the same budget is skipped
unless `--again`: a queue killed half-way is finished by running the same command again.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
reproduce = sys.modules.get("reproduce") or importlib.util.module_from_spec(_spec)
if "reproduce" not in sys.modules:
    sys.modules["reproduce"] = reproduce  # its dataclasses look their module up there
    _spec.loader.exec_module(reproduce)

CELLS = ("rnn", "lstm", "gru", "mingru", "minlstm")
README_START, README_END = "<!-- equal-budget:start -->", "<!-- equal-budget:end -->"


@dataclass
class Task:
    name: str
    overrides: list[str]
    metrics: list[str]  # the first one is the headline, the others follow it in the table
    minutes: float  # training budget of one run
    about: str  # what the task asks and what chance scores, for the table
    data: str | None = None  # folder under RNNLAB_DATA_DIR the task needs


TASKS = [
    Task(
        "recall",
        ["experiment=recall_long"],
        ["test/acc"],
        1,
        "delayed recall over 90-100 steps, accuracy (chance 0.125)",
    ),
    Task(
        "adding",
        ["experiment=adding"],
        ["test/mse"],
        2,
        "adding problem, T=600, 1 x 130, test MSE (predicting 1: 1/6)",
    ),
    Task(
        "copy",
        ["experiment=copy"],
        ["test/loss", "test/acc_symbols"],
        2,
        "copy memory, T=1000, 1 x 50, cross-entropy per step (no memory: 0.0204) and accuracy "
        "on the 10 recalled symbols (chance 0.125)",
    ),
    Task(
        "imdb",
        ["data=imdb", "task/scheduler=none"],  # one-cycle needs the run's length: constant lr
        ["test/acc"],
        2,
        "IMDb sentiment, one 128-unit layer, constant learning rate, test accuracy (chance 0.5)",
        "imdb",
    ),
    Task(
        "shakespeare",
        ["experiment=shakespeare_lstm"],
        ["test/loss_windows"],
        2,
        "Tiny Shakespeare, one 512-unit layer, bf16, validation nats/char over random "
        "256-character windows (uniform over 65 characters: 4.17)",
        "tinyshakespeare",
    ),
]


def budget_overrides(minutes: float) -> list[str]:
    """The clock ends the run; min_epochs=0 lets it stop (and validate) inside the first epoch."""
    seconds = round(minutes * 60)
    if seconds < 1:  # Lightning would stop before the first step and test untrained weights
        raise SystemExit(f"a budget of {minutes:g} min rounds to 0 s: give at least 1 s")
    hours, rest = divmod(seconds, 3600)
    return [
        f'++trainer.max_time="00:{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"',  # DD:HH:MM:SS
        "trainer.max_epochs=-1",
        "trainer.min_epochs=0",
    ]


def row_of(task: Task, cell: str, minutes: float | None = None) -> reproduce.Row:
    return reproduce.Row(
        f"{task.name}_{cell}",
        [*task.overrides, f"model={cell}", *budget_overrides(minutes or task.minutes)],
        task.metrics,
        task.about,
        task.data,
    )


def jobs(tasks: list[Task], cells: list[str], seeds: list[int]) -> list[tuple[Task, str, int]]:
    """Every run, seeds outermost: a queue stopped early leaves whole seeds, not whole tasks."""
    return [(task, cell, seed) for seed in seeds for task in tasks for cell in cells]


def shard(items: list, spec: str | None) -> list:
    """`i/n`: every n-th item from the i-th, so n queues share the runs without overlap."""
    if not spec:
        return items
    try:
        index, count = (int(part) for part in spec.split("/"))
    except ValueError:
        raise SystemExit(f"--shard takes i/n, e.g. 0/2, got {spec!r}") from None
    if not 0 <= index < count:
        raise SystemExit(f"--shard {spec}: i must be in 0..{count - 1}")
    return items[index::count]


def done(
    store: dict,
    row: reproduce.Row,
    seed: int,
    extra: tuple[str, ...] = (),
    threads: int | None = None,
) -> bool:
    """Measured already, with the same overrides (so the same budget) and thread count?"""
    entry = store.get("rows", {}).get(row.name)
    if not entry or entry.get("command") != command(row, extra):
        return False
    run = entry["runs"].get(str(seed), {})
    measured = run.get("provenance", {}).get("machine", {}).get("threads")
    return run.get("status") == "ok" and measured == threads


def command(row: reproduce.Row, extra: tuple[str, ...] = ()) -> str:
    """The command stored with a row's results."""
    return reproduce.command_line(row, False, extra)


def value(runs: dict, metric: str) -> str:
    """Mean ± sd of one metric over a row's measured seeds; empty where none is."""
    values = [
        r["values"][metric]
        for r in runs.values()
        if r["status"] == "ok" and r["values"].get(metric) is not None
    ]
    return reproduce.mean_sd(values) if values else ""


def budget_of(command: str) -> str:
    """'2 min': the budget a stored command ran with (--minutes may differ from the task's)."""
    match = re.search(r'trainer\.max_time="(\d+):(\d+):(\d+):(\d+)"', command)
    if not match:
        return "?"
    days, hours, minutes, seconds = map(int, match.groups())
    return f"{(days * 24 + hours) * 60 + minutes + seconds / 60:g} min"


def table(store: dict, cells: tuple[str, ...] = CELLS) -> str:
    """One line per task and metric, one column per cell: mean ± sd over the seeds."""
    rows = store.get("rows", {})
    head = "| task | budget | " + " | ".join(cells) + " | seeds | precision | machine |"
    lines = [head, "|" + "---|" * (len(cells) + 5)]
    for task in TASKS:
        entries = [rows.get(f"{task.name}_{cell}", {}) for cell in cells]
        runs = [entry.get("runs", {}) for entry in entries]
        if not any(runs):
            continue
        budgets = sorted({budget_of(entry["command"]) for entry in entries if entry})
        seeds = sorted({len([r for r in e.values() if r["status"] == "ok"]) for e in runs if e})
        precisions = sorted(
            {r.get("precision", "?") for e in runs for r in e.values() if "values" in r}
        )
        machines = sorted({reproduce.machine_label(e) for e in runs if e} - {""})
        for i, metric in enumerate(task.metrics):
            first = i == 0
            name = task.about if first else f"{task.name}: {metric.split('/')[-1]}"
            values = " | ".join(value(e, metric) for e in runs)
            lines.append(
                f"| {name} | {', '.join(budgets) if first else ''} | {values} "
                f"| {' or '.join(map(str, seeds)) if first else ''} "
                f"| {', '.join(precisions) if first else ''} "
                f"| {'; '.join(machines) if first else ''} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=[], help="task names to run")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--seeds", nargs="+", type=int, default=reproduce.DEFAULT_SEEDS)
    parser.add_argument("--shard", help="i/n: run every n-th job from the i-th (n queues)")
    parser.add_argument("--again", action="store_true", help="re-run measured jobs too")
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "equal_budget")
    parser.add_argument("--results", type=Path, default=ROOT / "results" / "equal_budget.json")
    parser.add_argument("--readme", type=Path, help="a README with equal-budget markers")
    parser.add_argument("--table", action="store_true", help="rewrite the table, run nothing")
    parser.add_argument("--minutes", type=float, help="one budget for every task instead")
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE", help="overrides for every run"
    )
    args = parser.parse_args(argv)
    extra = tuple(args.set)
    default_results = (ROOT / "results" / "equal_budget.json").resolve()
    if (extra or args.minutes) and args.results.resolve() == default_results:
        parser.error("--set and --minutes change the runs: give a --results file of their own")
    if args.minutes is not None and args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    names = [task.name for task in TASKS]
    if unknown := sorted(set(args.only) - set(names)):
        parser.error(f"no task named {unknown}; tasks: {names}")
    tasks = [task for task in TASKS if not args.only or task.name in args.only]
    todo = [] if args.table else shard(jobs(tasks, args.cells, args.seeds), args.shard)
    args.out.mkdir(parents=True, exist_ok=True)
    # a result counts as done only at this thread count: the budget buys less on fewer threads
    threads = reproduce.provenance().get("machine", {}).get("threads") if todo else None
    for task, cell, seed in todo:
        row = row_of(task, cell, args.minutes)
        if not args.again and done(reproduce.load(args.results), row, seed, extra, threads):
            print(f"{row.name} seed={seed}: measured, skipped", file=sys.stderr, flush=True)
            continue
        print(
            f"{row.name} seed={seed} ({budget_of(command(row, extra))}) ...",
            file=sys.stderr,
            flush=True,
        )
        where = reproduce.provenance()
        result = reproduce.run(row, seed, args.out, False, extra)
        if result["status"] == "ok":
            # the co-runners share the machine's memory bandwidth: say the run had them
            result["provenance"] = where | {"shard": args.shard}
        reproduce.record(args.results, row, seed, result, False, extra)
    store = reproduce.load(args.results)
    if args.readme:
        reproduce.update_readme(args.readme, table(store), README_START, README_END)
    print(table(store))


if __name__ == "__main__":
    main()
