"""Plot the scalar curves of several runs, one PNG per metric, from their TensorBoard files.

    python scripts/plot_runs.py outputs/train/runs/<run a> outputs/train/runs/<run b> ...
    python scripts/plot_runs.py outputs/train/multiruns/<sweep>          # every run inside
    python scripts/plot_runs.py <runs> --tags "val/*" "train/loss_epoch" --out plots/
    python scripts/plot_runs.py outputs/train/multiruns/<sweep> \
        --tags "gradient_flow/log10_norm_by_step/*" "gradient_flow/log10_first_over_last" --last

A run is any directory holding TensorBoard event files (in it or below it); curves are labelled
by the run directory's name and drawn against the global step, or against the time step t for
the per-step profiles of `callbacks=diagnostics` (`gradient_flow/log10_norm_by_step/epoch_k`,
one figure per epoch with every run's line). `--last` also prints each run's last value of
every plotted tag, one line per run and tag.
"""

from __future__ import annotations

import argparse
import fnmatch
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import (  # noqa: E402
    EventAccumulator,
)


def find_runs(paths: list[Path]) -> dict[str, list[Path]]:
    """Run name -> its event files. A directory without events of its own is searched for
    runs one level down (a multirun directory)."""
    runs: dict[str, list[Path]] = {}
    for path in paths:
        if not path.is_dir():
            raise SystemExit(f"{path} is not a directory")
        events = sorted(path.rglob("events.out.tfevents.*"))
        direct = [e for e in events if e.relative_to(path).parts[0] in ("tensorboard", e.name)]
        if direct:
            runs[path.name] = direct
            continue
        for child in sorted(p for p in path.iterdir() if p.is_dir()):
            child_events = sorted(child.rglob("events.out.tfevents.*"))
            if child_events:
                runs[child.name] = child_events
    if not runs:
        raise SystemExit(f"no TensorBoard event files under {', '.join(map(str, paths))}")
    return runs


def read_scalars(files: list[Path]) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    for file in files:
        accumulator = EventAccumulator(str(file), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            scalars.setdefault(tag, []).extend(
                (event.step, event.value) for event in accumulator.Scalars(tag)
            )
    return {tag: sorted(points) for tag, points in scalars.items()}


def select(curves: dict[str, dict[str, list]], patterns: list[str]) -> list[str]:
    """The tags of any run that match any of the glob patterns (every tag without patterns)."""
    tags = sorted({tag for scalars in curves.values() for tag in scalars})
    return [tag for tag in tags if not patterns or any(fnmatch.fnmatch(tag, p) for p in patterns)]


def plot(curves: dict[str, dict[str, list]], tags: list[str], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for tag in tags:
        figure, axis = plt.subplots(figsize=(6, 4))
        for name, scalars in curves.items():
            points = scalars.get(tag)
            if points:
                steps, values = zip(*points, strict=True)
                axis.plot(steps, values, marker="o" if len(points) < 30 else None, label=name)
        axis.set_xlabel("time step t" if "_by_step/" in tag else "step")
        axis.set_ylabel(tag)
        axis.set_title(tag)
        axis.legend(fontsize="small")
        figure.tight_layout()
        path = out / f"{tag.replace('/', '_')}.png"
        figure.savefig(path, dpi=100)
        plt.close(figure)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run or multirun directories")
    parser.add_argument("--tags", nargs="*", default=[], help="glob patterns of tags to plot")
    parser.add_argument("--out", type=Path, default=Path("outputs/plots"))
    parser.add_argument("--last", action="store_true", help="print each run's last values")
    args = parser.parse_args(argv)
    curves = {name: read_scalars(files) for name, files in find_runs(args.runs).items()}
    tags = select(curves, args.tags)
    for path in plot(curves, tags, args.out):
        print(path)
    if args.last:
        for name, scalars in curves.items():
            for tag in tags:
                if scalars.get(tag):
                    step, value = scalars[tag][-1]
                    print(f"{name}\t{tag}\t{value:.6g}\t(step {step})")


if __name__ == "__main__":
    main()
