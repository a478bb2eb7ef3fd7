"""scripts/equal_budget.py: the clock ends runs, shards share the work, a killed queue resumes."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest
import torch

from rnnlab.train import train
from tests.conftest import ROOT, TINY_RECALL

if "reproduce" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
    _module = importlib.util.module_from_spec(_spec)
    sys.modules["reproduce"] = _module
    _spec.loader.exec_module(_module)
spec = importlib.util.spec_from_file_location("equal_budget", ROOT / "scripts" / "equal_budget.py")
equal_budget = importlib.util.module_from_spec(spec)
sys.modules["equal_budget"] = equal_budget  # its dataclasses look their module up there
spec.loader.exec_module(equal_budget)
reproduce = sys.modules["reproduce"]

OK = {"status": "ok", "values": {"test/acc": 0.5, "test/mse": 0.1}, "seconds": 1.0}


def test_shards_split_the_runs_without_overlap_or_gap():
    jobs = equal_budget.jobs(equal_budget.TASKS, list(equal_budget.CELLS), [12345, 1, 2])
    assert len(jobs) == len(equal_budget.TASKS) * 5 * 3
    shards = [equal_budget.shard(jobs, f"{i}/3") for i in range(3)]
    assert sorted(map(repr, sum(shards, []))) == sorted(map(repr, jobs))
    assert all(len(s) == 25 for s in shards)
    with pytest.raises(SystemExit, match="i/n"):
        equal_budget.shard(jobs, "two")
    with pytest.raises(SystemExit, match="0..1"):
        equal_budget.shard(jobs, "2/2")


def test_budget_is_lightnings_clock_format_and_reads_back():
    overrides = equal_budget.budget_overrides(2.5)
    assert overrides[0] == '++trainer.max_time="00:00:02:30"'
    assert "trainer.min_epochs=0" in overrides  # else the clock cannot stop the first epoch
    row = equal_budget.row_of(equal_budget.TASKS[1], "gru")
    assert equal_budget.budget_of(equal_budget.command(row)) == "2 min"
    assert equal_budget.budget_of("python train.py model=gru") == "?"
    long = equal_budget.budget_overrides(100)[0]
    assert long == '++trainer.max_time="00:01:40:00"'  # Lightning's regex wants 2-digit minutes
    assert equal_budget.budget_of(long) == "100 min"
    with pytest.raises(SystemExit, match="rounds to 0 s"):
        equal_budget.budget_overrides(0.001)  # would test untrained weights


def fake_runs(
    monkeypatch, fail_after: int | None = None, failing: set[str] = frozenset(), threads=None
):
    """reproduce.run replaced: no training, a record of what ran; a kill after n runs."""
    calls: list[tuple[str, int]] = []

    def run(row, seed, out, quick, extra=()):
        if fail_after is not None and len(calls) == fail_after:
            raise KeyboardInterrupt  # the queue is killed here
        calls.append((row.name, seed))
        return {"status": "failed: boom"} if row.name in failing else dict(OK)

    monkeypatch.setattr(reproduce, "run", run)
    machine = {"machine": {"threads": threads}} if threads else {}
    monkeypatch.setattr(reproduce, "provenance", lambda: {"commit": "test", **machine})
    return calls


def test_a_killed_queue_run_again_finishes_only_what_is_missing(tmp_path, monkeypatch):
    results, out = tmp_path / "results.json", tmp_path / "out"
    args = ["--only", "recall", "adding", "--seeds", "1", "2"]
    args += ["--results", str(results), "--out", str(out)]
    calls = fake_runs(monkeypatch, fail_after=7, failing={"recall_gru"})
    with pytest.raises(KeyboardInterrupt):
        equal_budget.main(args)
    first = list(calls)
    assert len(first) == 7

    calls = fake_runs(monkeypatch)
    equal_budget.main(args)
    measured = {c for c in first if c[0] != "recall_gru"}
    everything = {
        (f"{t}_{c}", s) for s in (1, 2) for t in ("recall", "adding") for c in equal_budget.CELLS
    }
    assert set(calls) == everything - measured  # a failed run is tried again, nothing twice
    assert len(calls) == len(set(calls))

    calls = fake_runs(monkeypatch)
    equal_budget.main(args)
    assert calls == []  # all measured: nothing runs
    equal_budget.main([*args, "--again", "--cells", "gru", "--seeds", "1"])
    assert calls == [("recall_gru", 1), ("adding_gru", 1)]


def test_another_budget_is_measured_again_and_never_in_the_default_file(tmp_path, monkeypatch):
    results = tmp_path / "results.json"
    args = ["--only", "recall", "--cells", "lstm", "--seeds", "1", "--results", str(results)]
    args += ["--out", str(tmp_path / "out")]
    calls = fake_runs(monkeypatch)
    equal_budget.main(args)
    equal_budget.main([*args, "--minutes", "0.5"])
    assert calls == [("recall_lstm", 1)] * 2
    stored = json.loads(results.read_text())["rows"]["recall_lstm"]["command"]
    assert '"00:00:00:30"' in stored
    calls = fake_runs(monkeypatch, threads=2)
    equal_budget.main([*args, "--minutes", "0.5"])  # measured above, at another thread count
    equal_budget.main([*args, "--minutes", "0.5"])
    assert calls == [("recall_lstm", 1)]  # a budget buys another amount: run again, once
    for change in (["--minutes", "3"], ["--set", "model.hidden_size=8"]):
        with pytest.raises(SystemExit):
            equal_budget.main(["--only", "recall", *change])  # the default results file


def test_table_puts_cells_in_columns_with_mean_and_sd():
    store: dict = {}
    task = equal_budget.TASKS[2]  # copy: two metrics
    for cell, values in (("lstm", (0.02, 0.03)), ("mingru", (0.01,))):
        row = equal_budget.row_of(task, cell)
        for seed, loss in enumerate(values):
            metrics = {"test/loss": loss, "test/acc_symbols": 0.5}
            precision = "bf16-mixed" if cell == "lstm" else "32-true"
            result = {"status": "ok", "values": metrics, "precision": precision}
            reproduce.merge(store, row, seed, result, quick=False)
    lines = equal_budget.table(store).splitlines()
    assert lines[0].startswith("| task | budget | rnn | lstm | gru | mingru | minlstm |")
    assert lines[2].split(" | ")[1:7] == ["2 min", "", "0.0250 ± 0.0071", "", "0.01", ""]
    assert lines[2].split(" | ")[7:9] == ["1 or 2", "32-true, bf16-mixed"]  # both shown
    assert lines[3].startswith("| copy: acc_symbols |  |  | 0.5 ± 0 |  | 0.5 |")


def test_the_clock_stops_inside_the_first_epoch_and_the_stop_is_validated(tmp_path):
    """A 1-second budget over an epoch of 2,500 steps: stopped, validated and tested at once."""
    from tests.conftest import compose_config

    overrides = [*TINY_RECALL, "data.num_train=20000", "data.batch_size=8", "model=mingru"]
    overrides += equal_budget.budget_overrides(1 / 60)
    cfg = compose_config(overrides, tmp_path)
    metrics = train(cfg)
    assert "test/acc" in metrics and "val/acc" in json.loads(
        (tmp_path / "metrics.json").read_text()
    )
    best = torch.load(tmp_path / "checkpoints" / "epoch_000.ckpt", weights_only=False)
    assert 0 < best["global_step"] < 20000 // 8


def test_max_time_as_a_dict_reaches_lightning(tmp_path):
    """trainer.max_time={seconds: 1}, as Lightning's docs write it (was refused as a DictConfig)."""
    from tests.conftest import compose_config

    overrides = [*TINY_RECALL, "data.num_train=20000", "data.batch_size=8", "model=mingru"]
    overrides += ["++trainer.max_time={seconds:1}", "trainer.max_epochs=-1", "trainer.min_epochs=0"]
    metrics = train(compose_config(overrides, tmp_path))
    assert "test/acc" in metrics
    assert (
        torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] < 2500
    )


def test_the_readmes_tables_are_what_the_committed_results_write(tmp_path):
    """A number in the README is the committed results file's, in today's table format: a table
    left behind by a change to the results or to the writer fails here."""
    readme = tmp_path / "README.md"
    original = (ROOT / "README.md").read_text()
    readme.write_text(original)
    reproduce.write_readme(readme, reproduce.load(ROOT / "results" / "reference.json"))
    store = reproduce.load(ROOT / "results" / "equal_budget.json")
    reproduce.update_readme(
        readme, equal_budget.table(store), equal_budget.README_START, equal_budget.README_END
    )
    assert readme.read_text() == original, (
        "rewrite them: python scripts/reproduce.py --table --readme README.md; "
        "python scripts/equal_budget.py --table --readme README.md"
    )
