"""Fixtures for the black-box conformance suite (helpers live in spec_helpers.py)."""
from __future__ import annotations

import pytest

from spec_helpers import SimulatedBackend, VirtualPMU


@pytest.fixture
def make():
    """make(model, host=None, **kw) -> (pmu, sim); every PMU is closed at teardown."""
    made = []

    def _make(model, host=None, **kw):
        sim = SimulatedBackend(host=host)
        pmu = VirtualPMU(model=model, backend=sim, **kw)
        made.append(pmu)
        return pmu, sim

    yield _make
    for p in made:
        p.close()
