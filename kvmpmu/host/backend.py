"""The interface between the device model and whatever counts for it.

The device model (:mod:`kvmpmu.pmu`) asks a :class:`Backend` for host events
exactly as KVM asks perf (``perf_event_create_kernel_counter``,
``perf_event_pause``, ``perf_event_period``, ``perf_event_enable``,
``perf_event_read_value``, ``perf_event_release_kernel``).  Two backends
implement it: :class:`kvmpmu.host.backing.HostPerfBackend` (real perf events
on the vCPU thread) and :class:`kvmpmu.host.simulated.SimulatedBackend` (an
exact model of hardware counters, for tests of hardware events).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class BackingUnavailable(Exception):
    """The backend cannot count this event; ``reason`` says why.

    The device model then does what KVM does when perf refuses an event: the
    counter keeps its value and does not count, and the reason is reported
    by ``VirtualPMU.backing_report()``.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class EventRequest:
    """What KVM would hand to perf for one guest counter (spec §6.2).

    ``config`` is ``sel & raw_event_mask`` (PERF_TYPE_RAW); for a fixed
    counter it holds the pseudo encoding of §6.5.  ``sample_period`` 0 means
    a pure counting event (IN_TXCP, §6.3).  ``pinned``, ``exclude_idle`` and
    ``exclude_host`` are always set by KVM; they are here so a backend can
    pass them on verbatim.
    """

    vendor: str                 # "intel" | "amd"
    counter: str                # e.g. "GP0", "FIXED1" (for reports and errors)
    fixed_index: int | None     # fixed counter j, or None for a GP counter
    config: int
    exclude_user: bool
    exclude_kernel: bool
    sample_period: int
    precise_ip: int = 0
    pinned: bool = True
    exclude_idle: bool = True
    exclude_host: bool = True

    @property
    def event_code(self) -> int:
        """event select | umask << 8 (AMD: | event select[11:8] << 32)."""
        return self.config & 0xF_0000_FFFF


@dataclass(frozen=True)
class HostPmuCaps:
    """The host PMU as KVM's ``kvm_pmu_cap`` sees it, before KVM's clamps (spec §2.1).

    ``version == 0`` or ``gp_counters == 0`` means the host offers no PMU of
    its own; a backend that still counts some events (e.g. from TSC ticks)
    reports KVM's limits here and lists what it can back in
    ``events_unavailable`` (a CPUID.0AH.EBX-style mask of what it cannot).
    """

    vendor: str
    version: int
    gp_counters: int
    gp_width: int
    fixed_counters: int
    fixed_width: int
    events_len: int
    events_unavailable: int
    perf_capabilities: int = 0     # host IA32_PERF_CAPABILITIES (Intel)
    tsx: bool = False              # host has HLE or RTM
    pebs_ept: bool = False         # perf supports EPT-friendly PEBS
    lbr_callstack: bool = False
    amd_perfctr_core: bool = True
    amd_perfmon_v2: bool = True
    hybrid: bool = False
    # Host CPU family/model: KVM's "guest CPU model consistent with the host"
    # test for LBR/PEBS (spec §2.3 step 10, §2.5) and the PEBS precise level (§6.4).
    cpu_family: int = 0
    cpu_model: int = 0


@runtime_checkable
class HostEvent(Protocol):
    """One live host event backing one guest counter (a perf event in KVM)."""

    backing: str        # what counts, in words: "msr/tsc: TSC ticks of guest time", ...
    sample_period: int  # current period; 0 = counting event
    precise_ip: int

    def read(self) -> int:
        """Events counted since creation or the last :meth:`pause` (unscaled)."""

    def pause(self) -> int:
        """Disable, return the count and reset it to 0 (``perf_event_pause(reset=true)``)."""

    def resume(self) -> None:
        """Re-enable after :meth:`pause` (``perf_event_enable``)."""

    def set_period(self, period: int) -> None:
        """New sample period; the countdown restarts now.  Raises on rejection."""

    def take_overflows(self) -> int:
        """Host overflows (the counted events reached the period) since the last call."""

    def close(self) -> None:
        """Release; idempotent."""


@runtime_checkable
class Backend(Protocol):
    """Creates host events for one vCPU (one thread)."""

    def host_caps(self, vendor: str) -> HostPmuCaps:
        """The host PMU for a guest of this vendor (what kvm_pmu_cap is computed from)."""

    def create(self, req: EventRequest) -> HostEvent:
        """Open and enable a host event for ``req``; raise BackingUnavailable if impossible."""

    def overflow_pending(self) -> bool:
        """Cheap, O(1): True if some event of this backend may have overflowed
        since the last call (then the device model asks its live events)."""

    def describe(self, req: EventRequest) -> tuple[str | None, str | None]:
        """(what would back ``req``, None) or (None, why it cannot), without opening anything."""

    def close(self) -> None:
        """Release everything this backend opened; idempotent."""
