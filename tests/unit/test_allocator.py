"""The allocator tuning applies on glibc and can be switched off."""

from __future__ import annotations

import sys

import pytest

from rnnlab.allocator import tune_malloc


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_tuning_applies_on_linux():
    assert tune_malloc() is True


def test_tuning_can_be_switched_off(monkeypatch):
    monkeypatch.setenv("RNNLAB_MALLOC_TUNING", "0")
    assert tune_malloc() is False
