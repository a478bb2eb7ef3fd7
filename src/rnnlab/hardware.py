"""What the machine offers, probed rather than assumed: CPU model, instruction set, GPU, and
whether bf16 recurrent kernels exist here.

oneDNN runs the LSTM in bf16 only on CPUs with AVX-512 BF16 or AMX; elsewhere (AVX2 laptops and
servers, or with ``ONEDNN_MAX_CPU_ISA=AVX2``) creating the kernel fails on the first batch. The
probe runs one tiny LSTM step under bf16 autocast once per process, so a preset that asks for
bf16 falls back to float32 with one log line instead of crashing. Every benchmark and reference
result records `describe_machine()`, since absolute speeds depend on the instruction set.
"""

from __future__ import annotations

import functools
import logging
import os
import platform
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# oneDNN's bf16 RNN kernels need one of these (reported in /proc/cpuinfo's flags)
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux); empty where /proc/cpuinfo is not readable."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device: torch.device | str | None = None) -> dict[str, Any]:
    """CPU model, the vector ISA ATen dispatches to, oneDNN's cap if set, bf16 support, GPU."""
    flags = cpu_flags()
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        # results are bit-identical at one thread count only (reductions split differently)
        "threads": torch.get_num_threads(),
        "isa": torch.backends.cpu.get_cpu_capability(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        "cpu_bf16_flags": sorted(flag for flag in BF16_FLAGS if flag in flags),
        "cpu_bf16_lstm": cpu_bf16_lstm_supported(),
    }
    if torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda"):
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


@functools.cache
def cpu_bf16_lstm_supported() -> bool:
    """Whether oneDNN can run an LSTM forward and backward under CPU bf16 autocast here."""
    lstm = torch.nn.LSTM(8, 8, batch_first=True)
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = lstm(torch.randn(2, 3, 8))
        out.float().sum().backward()
    except RuntimeError as error:
        log.debug("bf16 LSTM probe failed: %s", error)
        return False
    return True


def resolve_precision(precision: Any, accelerator: str | None, cell: str) -> Any:
    """The Trainer precision to use: bf16 where the hardware lacks it becomes float32.

    On CPU only the LSTM needs the probe: under CPU autocast nn.GRU runs in float32 and nn.RNN
    (and the scan cells' matrix products) have bf16 kernels on every ISA; on CUDA the device
    says whether it has bf16 (Ampere and later).
    """
    if not str(precision).startswith("bf16"):
        return precision
    on_cpu = accelerator == "cpu" or (accelerator in (None, "auto") and not has_gpu())
    if not on_cpu:
        if torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
            log.warning(
                "trainer.precision=%s: this GPU (%s) has no bf16: training in float32 instead",
                precision,
                torch.cuda.get_device_name(),
            )
            return "32-true"
        return precision
    if cell != "lstm":
        return precision
    if cpu_bf16_lstm_supported():
        return precision
    log.warning(
        "trainer.precision=%s: this CPU's oneDNN has no bf16 LSTM kernel (needs AVX-512 BF16 "
        "or AMX; ONEDNN_MAX_CPU_ISA=%s): training in float32 (32-true) instead",
        precision,
        os.environ.get("ONEDNN_MAX_CPU_ISA", "unset"),
    )
    return "32-true"


def has_gpu() -> bool:
    return torch.cuda.is_available() or (
        hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    )
