"""kvmpmu: a virtual x86 PMU for userspace KVM VMMs, backed by Linux perf events."""
from __future__ import annotations

from typing import Any

from kvmpmu.host.simulated import SimulatedBackend
from kvmpmu.pmu import models
from kvmpmu.pmu.errors import GuestFault
from kvmpmu.pmu.model import PmuModel
from kvmpmu.pmu.vpmu import VirtualPMU

__version__ = "0.1.0"
__all__ = ["VirtualPMU", "PmuModel", "models", "EventFilter", "GuestFault", "FilterError",
           "SimulatedBackend", "HostPerfBackend"]

# Imported on first use: the filter and the host perf backing pull in more than the
# device model needs (and are developed separately).
_LAZY = {"EventFilter": "kvmpmu.pmu.filter", "FilterError": "kvmpmu.pmu.filter",
         "HostPerfBackend": "kvmpmu.host.backing"}


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'kvmpmu' has no attribute {name!r}")
    import importlib
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
