"""scripts/reproduce.py's results store: what a re-run may and may not replace."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

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
