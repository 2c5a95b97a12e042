"""Shared pytest fixtures for the kvmpmu suite."""
from __future__ import annotations

import os

import pytest


def open_fds() -> set[int]:
    """The fds this process has open right now."""
    return {int(n) for n in os.listdir("/proc/self/fd")}


@pytest.fixture
def no_fd_leak():
    """Fails the test if it leaves more fds open than it found."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    # listdir itself opens one fd transiently; it is closed before we look.
    assert not leaked, f"leaked fds: {sorted(leaked)}"
