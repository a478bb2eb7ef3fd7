"""scripts/reproduce.py's results store: what a re-run may and may not replace."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reproduce", ROOT / "scripts" / "reproduce.py")
reproduce = importlib.util.module_from_spec(spec)
sys.modules["reproduce"] = reproduce  # its dataclasses look their module up there
spec.loader.exec_module(reproduce)

ROW = reproduce.Row("r", ["model=lstm"], ["test/acc", "test/f1"], "chance")
MEASURED = {"status": "ok", "values": {"test/acc": 0.9}, "seconds": 10.0}


def test_a_failed_or_skipped_rerun_keeps_the_measured_result():
    store: dict = {}
    reproduce.merge(store, ROW, 1, dict(MEASURED), quick=False)
    reproduce.merge(store, ROW, 1, {"status": "failed: killed"}, quick=False)
    reproduce.merge(store, ROW, 1, {"status": "skipped: no data"}, quick=False)
    kept = store["rows"]["r"]["runs"]["1"]
    assert kept["status"] == "ok" and kept["values"] == {"test/acc": 0.9}
    assert kept["last_failure"] == {"status": "failed: killed"}
    reproduce.merge(store, ROW, 1, {"status": "ok", "values": {"test/acc": 0.8}}, quick=False)
    assert store["rows"]["r"]["runs"]["1"]["values"] == {"test/acc": 0.8}  # a new measurement


def test_a_metric_no_seed_measured_is_shown_as_such():
    text = reproduce.summary({"1": dict(MEASURED)}, ROW.metrics)
    assert text == "acc 0.9, f1 not measured yet (1 seed)"


def test_a_mean_is_shown_to_the_precision_of_its_sd():
    """8.400 ± 0.014, not 8.4 ± 0.014: the trailing zeros are digits the seeds measured; a mean
    below 0.001 in e-notation, with the published column's exponent style."""
    assert reproduce.mean_sd([8.3854, 8.4013, 8.4132]) == "8.400 ± 0.014"
    assert reproduce.mean_sd([0.020402, 0.020394, 0.020395]) == "0.0203970 ± 0.0000044"
    assert reproduce.mean_sd([1.49e-5, 4.38e-6, 5.68e-6]) == "8.3e-6 ± 5.7e-6"
    assert reproduce.mean_sd([1.754e-5, 2.33e-6]) == "1.0e-5 ± 1.1e-5"  # rounds up a decade
    assert reproduce.mean_sd([1234.0, 1400.0, 1100.0]) == "1240 ± 150"
    assert reproduce.mean_sd([3.5, 3.5]) == "3.5 ± 0"
    assert reproduce.mean_sd([5.3e-5]) == "5.3e-5"
    assert reproduce.mean_sd([float("nan"), 1.0]) == "nan"  # a diverged seed shows, no crash


def test_overrides_for_a_variant_never_write_into_the_reference_results(tmp_path, capsys):
    import pytest

    with pytest.raises(SystemExit):
        reproduce.main(
            ["--only", "names", "--set", "task.optimizer.lr=0.1", "--out", str(tmp_path)]
        )
    assert "--results" in capsys.readouterr().err
    store: dict = {}
    extra = ("task.optimizer.decay_embeddings=true",)
    reproduce.merge(store, ROW, 1, dict(MEASURED), quick=False, extra=extra)
    assert "task.optimizer.decay_embeddings=true" in store["rows"]["r"]["command"]


def _record_many(path: str, name: str, seeds: list[int], start) -> None:
    row = reproduce.Row(name, ["model=lstm"], ["test/acc"], "chance")
    start.wait()
    for seed in seeds:
        reproduce.record(Path(path), row, seed, dict(MEASURED), quick=False)


def test_two_runs_sharing_the_results_file_keep_each_others_rows(tmp_path):
    """Two reproduce queues at once (one per row) each read-merge-write the one results file."""
    import multiprocessing

    path = tmp_path / "reference.json"
    context = multiprocessing.get_context("spawn")
    seeds = list(range(100))
    start = context.Event()
    workers = [
        context.Process(target=_record_many, args=(str(path), name, seeds, start)) for name in "ab"
    ]
    for worker in workers:
        worker.start()
    start.set()  # both started: their writes interleave
    try:
        for worker in workers:
            worker.join(timeout=600)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            worker.terminate()
    rows = reproduce.load(path)["rows"]
    assert sorted(rows) == ["a", "b"]
    assert all(sorted(rows[n]["runs"], key=int) == [str(s) for s in seeds] for n in "ab")


def test_the_machine_label_names_a_thread_count_other_than_the_cores():
    machine = {"cpu": "AMD EPYC", "cores": 2, "isa": "AVX512"}
    runs = {
        "1": {"status": "ok", "provenance": {"machine": machine | {"threads": 2}}},
        "2": {"status": "ok", "provenance": {"machine": machine | {"threads": 1}}},
    }
    assert reproduce.machine_label(runs) == (
        "AMD EPYC, 2 cores, 1 thread, AVX512; AMD EPYC, 2 cores, AVX512"
    )


def test_a_row_whose_command_changed_starts_its_seeds_afresh():
    """A tuned preset is another experiment: its first seed never averages with the old ones."""
    store: dict = {}
    for seed in (12345, 1, 2):
        reproduce.merge(store, ROW, seed, dict(MEASURED), quick=False)
    tuned = reproduce.Row("r", ["model=lstm", "model.hidden_size=512"], ROW.metrics, "chance")
    reproduce.merge(store, tuned, 1, {"status": "failed: killed"}, quick=False)
    entry = store["rows"]["r"]
    assert sorted(entry["runs"]) == ["1", "12345", "2"]  # nothing new measured: all kept
    assert "hidden_size" not in entry["command"]
    assert "hidden_size=512" in entry["last_failure"]["command"]
    reproduce.merge(store, tuned, 1, {"status": "skipped: no data"}, quick=False)
    assert sorted(entry["runs"]) == ["1", "12345", "2"]
    reproduce.merge(store, tuned, 1, {"status": "ok", "values": {"test/acc": 0.7}}, quick=False)
    assert "hidden_size=512" in entry["command"] and list(entry["runs"]) == ["1"]
    assert "failures_of_new_command" not in entry
    assert sorted(entry["superseded"][0]["runs"]) == ["1", "12345", "2"]
    assert "hidden_size" not in entry["superseded"][0]["command"]
    assert reproduce.summary(entry["runs"], ROW.metrics) == "acc 0.7, f1 not measured yet (1 seed)"


def test_a_new_commands_failed_seeds_count_once_one_of_its_seeds_has_run():
    """A preset whose seeds 1 and 2 diverge before seed 12345 finishes: the row shows 1 seed and
    2 failed, never 1 seed alone, and a setting that fails elsewhere does not count here."""
    store: dict = {}
    for seed in (12345, 1, 2):
        reproduce.merge(store, ROW, seed, dict(MEASURED), quick=False)
    tuned = reproduce.Row("r", ["model=lstm", "model.hidden_size=512"], ROW.metrics, "chance")
    other = reproduce.Row("r", ["model=lstm", "model.hidden_size=64"], ROW.metrics, "chance")
    reproduce.merge(store, tuned, 1, {"status": "failed: non-finite loss"}, quick=False)
    reproduce.merge(store, tuned, 2, {"status": "failed: non-finite loss"}, quick=False)
    reproduce.merge(store, other, 3, {"status": "failed: killed"}, quick=False)
    entry = store["rows"]["r"]
    assert sorted(entry["runs"]) == ["1", "12345", "2"] and "512" not in entry["command"]
    reproduce.merge(store, tuned, 12345, dict(MEASURED), quick=False)
    assert sorted(entry["runs"]) == ["1", "12345", "2"] and "512" in entry["command"]
    assert entry["runs"]["1"] == {"status": "failed: non-finite loss"}
    assert entry["runs"]["12345"]["status"] == "ok"
    assert "failures_of_new_command" not in entry and "last_failure" not in entry
    assert sorted(entry["superseded"][0]["runs"]) == ["1", "12345", "2"]


def test_seeds_of_a_previous_command_are_shown_beside_their_own_anchor(monkeypatch):
    """A row given a preset before its new seeds ran: the table shows the stored seeds beside
    what they were measured against, never beside the settings they did not run."""
    store: dict = {}
    reproduce.merge(store, ROW, 1, dict(MEASURED), quick=False)
    tuned = reproduce.Row(
        "r", ["model=lstm", "model.hidden_size=512"], ROW.metrics, "chance; tuned: hidden 512"
    )
    monkeypatch.setattr(reproduce, "ROWS", [tuned])
    line = reproduce.table(store).splitlines()[-1]
    assert "| chance (seeds of the row's previous command) |" in line
    assert "512" not in line
    reproduce.merge(store, tuned, 1, {"status": "ok", "values": {"test/acc": 0.7}}, quick=False)
    line = reproduce.table(store).splitlines()[-1]
    assert "| chance; tuned: hidden 512 |" in line and "model.hidden_size=512" in line
    # a --quick store holds the quick command's seeds: they are the row's own, not a previous one's
    quick: dict = {}
    reproduce.merge(quick, tuned, 1, dict(MEASURED), quick=True)
    assert "previous command" not in reproduce.table(quick, quick=True)


def test_the_bai_table_sets_each_cell_beside_its_published_value():
    """Bai et al.'s Table 1 side by side: our mean ± sd over the ok seeds of a row's first
    metric with the seeds, the model's size and any failures, then the published column; a row
    not run says so, and a cell with no row (minGRU on music) is marked as absent."""
    store: dict = {}
    adding = next(r for r in reproduce.ROWS if r.name == "adding_600_gru")
    for seed, mse in ((12345, 4e-5), (1, 6e-5), (2, 5e-5)):
        ok = {"status": "ok", "values": {"test/mse": mse}, "parameters": 64187.0}
        reproduce.merge(store, adding, seed, ok, quick=False)
    reproduce.merge(store, adding, 3, {"status": "failed: killed"}, quick=False)
    text = reproduce.bai_table(store)
    line = next(x for x in text.splitlines() if x.startswith("| adding problem"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:] == [
        "70K",
        "not run yet · 0.164",
        "5.0e-5 ± 1.0e-5 (3 seeds, 64.2K, 1 failed) · 5.3e-5",
        "not run yet · 0.177",
        "not run yet",
        "5.8e-5",
    ]
    music = next(x for x in text.splitlines() if x.startswith("| Nottingham"))
    assert music.rstrip(" |").endswith("— | 3.07")


def test_the_bai_table_shows_no_number_measured_by_another_command():
    """A --quick seed (T=100 for the T=600 row), a --set variant, or seeds of a command since
    tuned are another experiment: the published table names none of them as the row's."""
    adding = next(r for r in reproduce.ROWS if r.name == "adding_600_lstm")
    ok = {"status": "ok", "values": {"test/mse": 0.01}}
    for quick, extra in ((True, ()), (False, ("model.hidden_size=512",))):
        store: dict = {}
        reproduce.merge(store, adding, 1, dict(ok), quick=quick, extra=extra)
        line = next(x for x in reproduce.bai_table(store).splitlines() if "T=600" in x)
        assert "measured with another command · 0.164" in line and "0.01" not in line
    failed: dict = {}
    reproduce.merge(failed, adding, 1, {"status": "failed: killed"}, quick=False)
    line = next(x for x in reproduce.bai_table(failed).splitlines() if "T=600" in x)
    assert "| 1 failed · 0.164 |" in line


def test_the_readme_is_checked_before_any_run_and_both_tables_written(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.delenv("RNNLAB_DATA_DIR", raising=False)  # were the check gone: a quick skip
    results = tmp_path / "reference.json"
    results.write_text(json.dumps({"rows": {}}))
    args = ["--results", str(results), "--out", str(tmp_path / "out")]
    bare = tmp_path / "NOTES.md"
    bare.write_text("no markers\n")
    try:  # refused before the rows run (hours), not after
        reproduce.main(["--only", "multi30k", "--readme", str(bare), *args])
    except SystemExit as exit:
        assert exit.code == 2
    else:
        raise AssertionError("a README without markers was accepted")
    assert "no file with <!-- reproduce:start -->" in capsys.readouterr().err
    assert json.loads(results.read_text()) == {"rows": {}}

    readme = tmp_path / "README.md"
    readme.write_text(
        f"a\n{reproduce.README_START}\nold\n{reproduce.README_END}\nb\n"
        f"{reproduce.BAI_START}\nold\n{reproduce.BAI_END}\nc\n"
    )
    reproduce.main(["--table", "--readme", str(readme), *args])
    written = readme.read_text()
    assert "old" not in written and reproduce.bai_table({"rows": {}}) in written
    assert written.startswith("a\n") and written.endswith("c\n")
    # a README of one's own with the reference markers only: that table, and a note
    readme.write_text(f"{reproduce.README_START}\nold\n{reproduce.README_END}\n")
    reproduce.main(["--table", "--readme", str(readme), *args])
    assert "old" not in readme.read_text()
    assert "Bai et al.'s table not written" in capsys.readouterr().err


def test_every_cell_of_the_bai_table_reads_a_metric_its_row_measures():
    """A metric the row does not record would leave its cell 'not measured yet' for ever."""
    rows = {row.name: row for row in reproduce.ROWS}
    cells = 0
    for task, (_, metric, published, *_) in reproduce.BAI2018.items():
        for cell in reproduce.BAI_CELLS:
            row = rows.get(f"{task}_{cell}")
            assert row is not None or cell not in published, f"{task}_{cell} has no row"
            if row is not None:
                assert metric in row.metrics, row.name
                cells += 1
    assert cells == 4 * 3 + 2  # LSTM, GRU, RNN everywhere; minGRU on adding and copy


def test_only_selects_a_whole_row_name_alone_and_otherwise_by_prefix():
    names = [row.name for row in reproduce.selected_rows(["jsb_lstm", "ett"])]
    assert names == ["ett_96", "ett_192", "ett_336", "ett_720", "jsb_lstm"]
    assert "jsb_lstm_large" in [r.name for r in reproduce.selected_rows(["jsb_lstm_"])]
    assert len(reproduce.selected_rows([])) == len(reproduce.ROWS)


def test_a_tuned_row_runs_exactly_its_experiment_preset(tmp_path):
    """`python train.py experiment=jsb_lstm` is the jsb_lstm row's experiment: the row spells the
    preset's settings out, and both compose the same config."""
    from omegaconf import OmegaConf

    from tests.conftest import compose_config

    presets = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    rows = {row.name: row for row in reproduce.ROWS}
    # a row named like a preset that it does not run as such: Bai et al.'s rows (music, copy,
    # adding) run experiment=music|copy|adding and the cell, then the preset's settings
    bai = ("experiment=music", "experiment=copy", "experiment=adding")
    tuned = [n for n in presets if n in rows and rows[n].overrides[0] in bai]
    assert {
        "jsb_lstm",
        "jsb_gru",
        "jsb_rnn",
        "nottingham_lstm",
        "nottingham_gru",
        "jsb_lstm_large",
        "copy_1000_rnn",
    } <= set(tuned)
    for name in tuned:
        row = rows[name]
        assert f"experiment={name}" in row.anchor, name
        as_row = compose_config(row.overrides, tmp_path)
        as_preset = compose_config([f"experiment={name}"], tmp_path)
        assert OmegaConf.to_yaml(as_row) == OmegaConf.to_yaml(as_preset), name
    # a music row without a preset keeps experiment=music's settings
    assert rows["nottingham_rnn"].overrides == [
        "experiment=music",
        "model=rnn",
        "data.name=nottingham",
    ]


def test_a_preset_setting_a_list_or_a_switch_is_refused_by_name(tmp_path, monkeypatch):
    (tmp_path / "conf" / "experiment").mkdir(parents=True)
    (tmp_path / "conf" / "experiment" / "x_lstm.yaml").write_text(
        "defaults:\n  - music\ndata:\n  name: x\nmodel:\n  hidden_size: 8\ntask:\n  tags: [a]\n"
    )
    monkeypatch.setattr(reproduce, "ROOT", tmp_path)
    with pytest.raises(ValueError, match="x_lstm.yaml: task.tags"):
        reproduce.tuned_settings("x_lstm")
    assert reproduce.tuned_settings("y_lstm") == []
