"""Rank the trials of a sweep and plot them.

    python scripts/summarize_sweep.py outputs/train/multiruns/<sweep dir>
    python scripts/summarize_sweep.py --storage sqlite:///outputs/sweeps/optuna.db --study tpe_names

Writes, into the sweep directory (or `--out`): `summary.md` and `summary.csv` (rank, state,
metric, duration, parameters; best first, ties by trial number) and PNG plots: the metric by
cell type, against hidden size, layers and learning rate, the optimisation history and every
trial's learning curve (the monitored metric after each validation; pruned trials dashed). A
multirun directory is read from each trial's `.hydra/overrides.yaml`, `metrics.json` and its
CSV or TensorBoard logs; a study from its storage (the same study opens in optuna-dashboard:
`optuna-dashboard sqlite:///outputs/sweeps/optuna.db`).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from matplotlib.ticker import LogLocator, NullFormatter  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

PLOTTED = ("model.cell", "model.hidden_size", "model.num_layers", "task.optimizer.lr")


def from_study(storage: str, study_name: str) -> tuple[list[dict], str, str]:
    from rnnlab.sweeper import load_study

    study = load_study(storage, study_name)
    direction = study.direction.name.lower()
    metric = study.metric_names[0] if study.metric_names else "value"
    rows = []
    for trial in study.trials:
        value = trial.value if trial.value is not None else None
        if value is None and trial.intermediate_values:  # pruned: its last report
            value = trial.intermediate_values[max(trial.intermediate_values)]
        duration = trial.duration.total_seconds() if trial.duration else math.nan
        rows.append(
            {
                "trial": trial.number,
                "state": trial.state.name.lower(),
                "value": value,
                "duration_s": duration,
                "params": dict(trial.params),
                "curve": dict(sorted(trial.intermediate_values.items())),
            }
        )
    return rows, direction, metric


def learning_curve(run: Path, monitor: str) -> dict[int, float]:
    """`monitor` after each validation of a multirun trial (1, 2, ...), from its CSV log, else
    its TensorBoard events; empty when it logged neither."""
    csv_file = run / "csv" / "metrics.csv"
    if csv_file.is_file():
        with csv_file.open() as handle:
            values = [float(r[monitor]) for r in csv.DictReader(handle) if r.get(monitor)]
    elif (run / "tensorboard").is_dir():
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        events = EventAccumulator(str(run / "tensorboard"))
        events.Reload()
        found = monitor in events.Tags()["scalars"]
        values = [event.value for event in events.Scalars(monitor)] if found else []
    else:
        values = []
    return dict(enumerate(values, 1))


def from_multirun(folder: Path) -> tuple[list[dict], str, str]:
    """Trials of a multirun directory: overrides, metrics.json (absent: failed or pruned)."""
    rows = []
    metric = None
    direction = "maximize"
    for run in sorted(folder.iterdir(), key=lambda p: (len(p.name), p.name)):
        overrides_file = run / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        config = OmegaConf.load(run / ".hydra" / "config.yaml")
        metric = OmegaConf.select(config, "optimized_metric") or metric
        mode = OmegaConf.select(config, "task.monitor_mode") or "max"
        monitor = OmegaConf.select(config, "task.monitor")
        direction = "maximize" if mode == "max" else "minimize"
        params = {}
        for line in yaml.safe_load(overrides_file.read_text()):
            key, _, value = line.partition("=")
            if key.startswith(("++optuna_trial", "hparams_search", "paths.")):
                continue
            params[key.lstrip("+~")] = value
        metrics_file = run / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
        value = metrics.get(metric) if metric else None
        started = overrides_file.stat().st_mtime
        ended = metrics_file.stat().st_mtime if metrics_file.is_file() else math.nan
        rows.append(
            {
                "trial": int(run.name.split("_", 1)[0]) if run.name[0].isdigit() else run.name,
                "state": "complete" if value is not None else "failed or pruned",
                "value": value,
                "duration_s": ended - started,
                "params": params,
                "curve": learning_curve(run, monitor) if monitor else {},
            }
        )
    if not rows:
        raise SystemExit(f"{folder} holds no trial directories (with .hydra/overrides.yaml)")
    # keep the swept parameters: those whose value differs between trials
    names = {name for row in rows for name in row["params"]}
    fixed = {n for n in names if len({str(r["params"].get(n)) for r in rows}) == 1}
    for row in rows:
        row["params"] = {k: v for k, v in row["params"].items() if k not in fixed}
    return rows, direction, metric or "metric"


def ranked(rows: list[dict], direction: str) -> list[dict]:
    sign = -1 if direction == "maximize" else 1

    def key(row: dict) -> tuple:
        value = row["value"]
        complete = row["state"] == "complete" and value is not None
        number = row["trial"] if isinstance(row["trial"], int) else math.inf
        # ties go to the earlier trial, as Optuna's best_trial does
        return (not complete, sign * value if value is not None else math.inf, number)

    return sorted(rows, key=key)


def rounded(value: object) -> object:
    """A float parameter to 3 significant digits (a log-uniform lr has 17); others as they are."""
    if isinstance(value, str) and _is_number(value) and not value.lstrip("-").isdigit():
        value = float(value)
    return f"{value:.3g}" if isinstance(value, float) else value


def write_tables(rows: list[dict], out: Path, metric: str) -> None:
    names = sorted({name for row in rows for name in row["params"]})
    header = ["rank", "trial", "state", metric, "duration_s", *names]
    table = [
        [
            rank,
            row["trial"],
            row["state"],
            "" if row["value"] is None else f"{row['value']:.4f}",
            "" if math.isnan(row["duration_s"]) else f"{row['duration_s']:.1f}",
            *[rounded(row["params"].get(name, "")) for name in names],
        ]
        for rank, row in enumerate(rows, 1)
    ]
    with (out / "summary.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(table)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in line) + " |" for line in table]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def write_plots(rows: list[dict], out: Path, metric: str, direction: str) -> list[Path]:
    done = [row for row in rows if row["value"] is not None]
    written = []
    for name in PLOTTED:
        points = [(row["params"][name], row["value"]) for row in done if name in row["params"]]
        if not points:
            continue
        figure, axis = plt.subplots(figsize=(5, 3.5))
        categorical = any(isinstance(x, str) and not _is_number(x) for x, _ in points)
        if categorical:
            labels = sorted({str(x) for x, _ in points})
            for i, label in enumerate(labels):
                ys = [y for x, y in points if str(x) == label]
                axis.scatter([i] * len(ys), ys, alpha=0.7)
            axis.set_xticks(range(len(labels)), labels)
        else:
            axis.scatter([float(x) for x, _ in points], [y for _, y in points], alpha=0.7)
            if name.endswith("lr"):
                axis.set_xscale("log")
                # within a decade matplotlib labels every minor tick, over one another
                axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 3.0)))
                axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel(name)
        axis.set_ylabel(metric)
        axis.set_title(f"{metric} by {name.rsplit('.', 1)[-1]}")
        figure.tight_layout()
        path = out / f"{metric.replace('/', '_')}_by_{name.rsplit('.', 1)[-1]}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    history = sorted(
        (row for row in done if isinstance(row["trial"], int)), key=lambda r: r["trial"]
    )
    if history:
        figure, axis = plt.subplots(figsize=(5, 3.5))
        xs = [row["trial"] for row in history]
        ys = [row["value"] for row in history]
        best = max if direction == "maximize" else min
        running = [best(ys[: i + 1]) for i in range(len(ys))]
        axis.scatter(xs, ys, alpha=0.6, label="trial")
        axis.plot(xs, running, color="C3", label="best so far")
        axis.set_xlabel("trial")
        axis.set_ylabel(metric)
        axis.set_title("optimisation history")
        axis.legend()
        figure.tight_layout()
        path = out / "history.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    curves = [row for row in rows if row.get("curve")]
    if curves:
        figure, axis = plt.subplots(figsize=(6, 4))
        for row in sorted(curves, key=lambda r: str(r["trial"])):
            pruned = row["state"] == "pruned"
            axis.plot(
                list(row["curve"]),
                list(row["curve"].values()),
                linestyle="--" if pruned else "-",
                marker="o",  # a trial pruned after one validation is a single point
                markersize=3,
                alpha=0.8,
                label=f"{row['trial']} ({row['state']})",
            )
        axis.set_xlabel("validation")
        # the curves are of the monitored metric; the objective is its best (`<monitor>_best`)
        axis.set_ylabel(metric.removesuffix("_best"))
        axis.set_title("learning curves (pruned: dashed)")
        if len(curves) <= 20:
            axis.legend(title="trial", fontsize="x-small", ncol=2)
        figure.tight_layout()
        path = out / "learning_curves.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", nargs="?", type=Path, help="a multirun directory")
    parser.add_argument("--storage", help="an Optuna storage URL, e.g. sqlite:///outputs/...")
    parser.add_argument("--study", help="the study name (with --storage)")
    parser.add_argument("--out", type=Path, help="where to write (default: the sweep dir)")
    args = parser.parse_args(argv)
    if args.storage:
        if not args.study:
            parser.error("--storage needs --study")
        rows, direction, metric = from_study(args.storage, args.study)
        out = args.out or Path("outputs") / "sweeps" / args.study
    elif args.sweep_dir:
        if not args.sweep_dir.is_dir():
            parser.error(f"{args.sweep_dir} is not a directory")
        rows, direction, metric = from_multirun(args.sweep_dir)
        out = args.out or args.sweep_dir
    else:
        parser.error("give a multirun directory or --storage URL --study NAME")
    out.mkdir(parents=True, exist_ok=True)
    rows = ranked(rows, direction)
    write_tables(rows, out, metric)
    for path in write_plots(rows, out, metric, direction):
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
