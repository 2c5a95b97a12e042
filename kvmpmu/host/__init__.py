"""Host perf layer: perf events on threads, typed errors, host capability probe."""
from kvmpmu.host.errors import (PerfBusy, PerfError, PerfEventUnsupported, PerfInvalid,
                                PerfOutOfDescriptors, PerfPermissionError)
from kvmpmu.host.perf import PerfEvent, gettid, install_kick_handler, overflow_signal, pmu_type

__all__ = ["PerfEvent", "PerfError", "PerfEventUnsupported", "PerfPermissionError",
           "PerfInvalid", "PerfBusy", "PerfOutOfDescriptors", "gettid",
           "install_kick_handler", "overflow_signal", "pmu_type", "HostCaps"]


def __getattr__(name: str):  # lazy: the probe pulls in more than most users need
    if name == "HostCaps":
        from kvmpmu.host.caps import HostCaps
        return HostCaps
    raise AttributeError(name)
