"""Precision follows the hardware: the bf16 LSTM probe, under oneDNN's ISA cap too."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rnnlab.hardware import cpu_flags, describe_machine, resolve_precision

# ONEDNN_MAX_CPU_ISA=AVX2 caps oneDNN on x86 only (elsewhere the bf16 LSTM kernel may stay)
needs_x86 = pytest.mark.skipif(
    platform.machine().lower() not in {"x86_64", "amd64"}, reason="an x86 instruction-set cap"
)

ROOT = Path(__file__).resolve().parents[2]

# every cell the probe lets through trains under bf16 autocast with the AVX2 cap
OTHER_CELLS = (
    "import torch; from rnnlab.models import RecurrentBackbone\n"
    "for cell in ('rnn', 'gru', 'mingru', 'minlstm'):\n"
    "    backbone = RecurrentBackbone(4, 8, cell)\n"
    "    with torch.autocast('cpu', dtype=torch.bfloat16):\n"
    "        out = backbone(torch.randn(2, 5, 4), torch.tensor([5, 3])).outputs\n"
    "    out.float().sum().backward()\n"
    "print('ok')"
)

PROBE = (
    "import json; from rnnlab.hardware import cpu_bf16_lstm_supported, resolve_precision; "
    "print(json.dumps([cpu_bf16_lstm_supported(), resolve_precision('bf16-mixed', 'cpu', 'lstm'),"
    " resolve_precision('bf16-mixed', 'cpu', 'gru'), resolve_precision('32-true', 'cpu', 'lstm')]))"
)


def probe(env_extra: dict[str, str]) -> list:
    env = {**os.environ, **env_extra}
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_x86
def test_without_bf16_lstm_kernels_bf16_falls_back_to_float32():
    # oneDNN reads its ISA cap at start-up: a fresh process under AVX2 has no bf16 LSTM kernel
    supported, lstm, gru, fp32 = probe({"ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert supported is False
    assert lstm == "32-true"
    assert gru == "bf16-mixed"  # nn.GRU computes in float32 under CPU autocast: nothing to probe
    assert fp32 == "32-true"


@pytest.mark.skipif(
    not {"avx512_bf16", "amx_bf16"} & cpu_flags(), reason="this CPU has no bf16 instructions"
)
def test_with_bf16_kernels_bf16_is_kept():
    supported, lstm, _, _ = probe({})
    assert supported is True
    assert lstm == "bf16-mixed"


@needs_x86
def test_cells_other_than_the_lstm_train_in_bf16_under_an_avx2_cap():
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run(
        [sys.executable, "-c", OTHER_CELLS], capture_output=True, text=True, env=env
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-1500:]


def test_a_gpu_keeps_bf16_only_where_it_has_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "a GPU")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    assert resolve_precision("bf16-mixed", "gpu", "lstm") == "bf16-mixed"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    assert resolve_precision("bf16-mixed", "gpu", "gru") == "32-true"
    assert resolve_precision("16-mixed", "gpu", "gru") == "16-mixed"


def test_machine_description_names_cpu_and_instruction_set():
    info = describe_machine("cpu")
    assert info["cpu"] and info["isa"]
    assert isinstance(info["cpu_bf16_lstm"], bool)


@needs_x86
def test_bf16_preset_trains_in_float32_under_an_avx2_cap(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "model=lstm",
            "trainer.precision=bf16-mixed",
            "debug=fdr",
            "logger=none",
            f"hydra.run.dir={run_dir}",
            "data.num_train=64",
            "data.num_val=32",
            "data.num_test=32",
            "model.hidden_size=8",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no bf16 LSTM kernel" in result.stdout + result.stderr
    saved = (run_dir / "config_resolved.yaml").read_text()
    assert "precision: 32-true" in saved
