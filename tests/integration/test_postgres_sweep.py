"""The README's "across machines" recipe: several sweep processes on one PostgreSQL study.

A throwaway server is started in a temporary directory (Unix socket only, trust
authentication); the test skips when PostgreSQL's binaries or the psycopg2 driver are absent
(`apt-get install postgresql`, `pip install -e ".[postgres]"`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from tests.integration.test_sweeps import SMALL, start_sweep

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))


def as_server_user(*command: str) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the `postgres` user then."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return list(command)


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A fresh server and an empty `optuna` database; yields its SQLAlchemy URL."""
    if not BINARIES:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    pytest.importorskip("psycopg2", reason='pip install -e ".[postgres]"')
    bin_dir = BINARIES[-1].parent
    # not under pytest's tmp_path: the server's user must be able to reach its directory
    root = Path(tempfile.mkdtemp(prefix="rnnlab-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"

    def run(*command: str, check: bool = True) -> None:
        subprocess.run(as_server_user(*command), check=check, capture_output=True, timeout=120)

    try:
        run(str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres")
        options = f"-k {root} -c listen_addresses=''"  # a Unix socket in root, no TCP port
        try:
            # the server writes to its log file, not to pipes this test would wait on
            start = ["-o", options, "-l", str(root / "server.log"), "-w", "start"]
            run(str(bin_dir / "pg_ctl"), "-D", str(data), *start)
            run(str(bin_dir / "createdb"), "-h", str(root), "-U", "postgres", "optuna")
            yield f"postgresql+psycopg2://postgres@/optuna?host={root}"
        finally:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop", check=False)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_two_sweep_processes_share_one_postgresql_study(tmp_path):
    with postgres_server() as url:
        storage = f"hydra.sweeper.storage='{url}'"
        processes = [
            start_sweep(tmp_path / name, *SMALL, storage, "hydra.sweeper.n_trials=4")
            for name in ("one", "two")
        ]
        for process in processes:
            output = process.communicate(timeout=600)[0]
            assert process.returncode == 0, output[-3000:]
        trials = optuna.load_study(study_name="tpe_recall", storage=url).trials
    # every trial recorded once, each with its own parameters, the budget shared
    assert len(trials) == 4
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4
