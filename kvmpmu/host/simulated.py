"""``SimulatedBackend``: an exact model of hardware counters, for tests of hardware events.

A test says ``sim.happen(event, n, cpl)`` — n occurrences of a hardware event
happened while the guest ran at CPL ``cpl`` — and every live, enabled event
whose counter would count it counts n, exactly as a hardware counter behind
perf would: a GP event counts when its event code (event select 7:0 |
umask << 8, AMD also event select 11:8 at bits 35:32) equals; a fixed event
counts its architectural event (fixed 2 also KVM's pseudo code 0x0300,
fixed 3 also 0x0400); ``exclude_kernel`` drops CPL 0, ``exclude_user`` CPL > 0.
CMASK, INV and EDGE are not modelled: each ``happen`` is n events.

Overflows follow perf's sampling semantics: the countdown starts at the
sample period when the event is created or its period is set, and reloads
after each overflow.
"""
from __future__ import annotations

from typing import Callable

from kvmpmu.host.backend import BackingUnavailable, EventRequest, HostPmuCaps

# fixed counter j -> the event codes it counts
_FIXED_EVENTS = ({0x00C0}, {0x003C}, {0x013C, 0x0300}, {0x01A4, 0x0400})
_PERIOD_MAX = 1 << 63


class SimulatedEvent:
    """One live simulated event (implements HostEvent)."""

    __slots__ = ("backing", "sample_period", "precise_ip", "request", "_codes", "_user",
                 "_kernel", "_count", "_left", "_overflows", "_enabled", "_backend")

    def __init__(self, backend: SimulatedBackend, req: EventRequest) -> None:
        self._backend = backend
        self.request = req
        self.sample_period = req.sample_period
        self.precise_ip = req.precise_ip
        if req.fixed_index is not None:
            self._codes = frozenset(_FIXED_EVENTS[req.fixed_index])
            what = f"fixed counter {req.fixed_index}"
        else:
            code = req.config & (0xF_0000_FFFF if req.vendor == "amd" else 0xFFFF)
            self._codes = frozenset((code,))
            what = f"event {code:#x}"
        self.backing = f"simulated hardware counter ({what})"
        self._kernel = not req.exclude_kernel
        self._user = not req.exclude_user
        self._count = 0
        self._left = req.sample_period
        self._overflows = 0
        self._enabled = True

    def _happen(self, code: int, n: int, cpl: int) -> None:
        if not self._enabled or code not in self._codes:
            return
        if not (self._kernel if cpl == 0 else self._user):
            return
        self._count += n
        period = self.sample_period
        if period:
            if n >= self._left:
                over = n - self._left
                self._overflows += 1 + over // period
                self._left = period - over % period
                self._backend._overflowed = True
            else:
                self._left -= n

    # -- HostEvent -----------------------------------------------------------------
    def read(self) -> int:
        return self._count

    def pause(self) -> int:
        count, self._count = self._count, 0
        self._enabled = False
        return count

    def resume(self) -> None:
        self._enabled = True

    def set_period(self, period: int) -> None:
        # as perf_event_period(): only for sampling events, 0 < period < 2^63
        if not self.sample_period:
            raise ValueError("not a sampling event")
        if not 0 < period < _PERIOD_MAX:
            raise ValueError(f"invalid sample period {period}")
        self.sample_period = period
        self._left = period

    def take_overflows(self) -> int:
        n, self._overflows = self._overflows, 0
        return n

    def close(self) -> None:
        try:
            self._backend._live.remove(self)
        except ValueError:
            pass


class SimulatedBackend:
    """A Backend whose host PMU is ``host`` (None: exactly KVM's own limits).

    ``refuse(req) -> reason | None`` lets a test make the simulated host refuse
    some events (as perf refuses an unschedulable or unknown event).
    """

    def __init__(self, host=None, refuse: Callable[[EventRequest], str | None] | None = None) -> None:
        self.host = host
        self.refuse = refuse
        self._live: list[SimulatedEvent] = []
        self._overflowed = False
        self.created = 0                # events created so far (for tests and benchmarks)

    # -- test side -----------------------------------------------------------------
    def happen(self, event: int, n: int, cpl: int = 3) -> None:
        """``n`` occurrences of hardware event ``event`` while the guest ran at ``cpl``."""
        if n <= 0:
            return
        for ev in list(self._live):
            ev._happen(event, n, cpl)

    @property
    def open_events(self) -> list[SimulatedEvent]:
        """The live (not closed) events."""
        return list(self._live)

    # -- Backend -------------------------------------------------------------------
    def host_caps(self, vendor: str) -> HostPmuCaps:
        from kvmpmu.pmu.vendor import kvm_limits
        m = self.host
        if m is None:
            return kvm_limits(vendor)
        caps = m.perf_capabilities if m.pdcm else 0
        if m.vendor == "amd":
            gp = m.gp_counters if m.version > 0 else 0
            return HostPmuCaps(vendor=vendor, version=2 if m.amd_perfmon_v2 else 1,
                               gp_counters=gp, gp_width=48, fixed_counters=0, fixed_width=0,
                               events_len=0, events_unavailable=0, tsx=m.tsx,
                               amd_perfctr_core=m.amd_perfctr_core,
                               amd_perfmon_v2=m.amd_perfmon_v2,
                               cpu_family=m.family, cpu_model=m.model)
        lbr = caps & 0x3F
        return HostPmuCaps(
            vendor=vendor, version=m.version, gp_counters=m.gp_counters, gp_width=m.gp_width,
            fixed_counters=m.fixed_counters, fixed_width=m.fixed_width,
            events_len=m.events_len, events_unavailable=m.events_unavailable,
            perf_capabilities=caps, tsx=m.tsx,
            # a PEBS-capable part with DS: perf reports EPT-friendly PEBS
            pebs_ept=bool(caps & 0xF00) and m.ds,
            lbr_callstack=lbr not in (0, 0x3F),
            amd_perfctr_core=m.gp_counters >= 6, amd_perfmon_v2=m.version >= 2,
            cpu_family=m.family, cpu_model=m.model)

    def create(self, req: EventRequest) -> SimulatedEvent:
        if self.refuse is not None:
            why = self.refuse(req)
            if why:
                raise BackingUnavailable(why)
        if req.sample_period < 0 or req.sample_period >= _PERIOD_MAX:
            raise BackingUnavailable(f"invalid sample period {req.sample_period}")
        ev = SimulatedEvent(self, req)
        self._live.append(ev)
        self.created += 1
        return ev

    def overflow_pending(self) -> bool:
        flag = self._overflowed
        self._overflowed = False
        return flag

    def describe(self, req: EventRequest) -> tuple[str | None, str | None]:
        if self.refuse is not None:
            why = self.refuse(req)
            if why:
                return None, why
        what = f"fixed counter {req.fixed_index}" if req.fixed_index is not None \
            else f"event {req.event_code:#x}"
        return f"simulated hardware counter ({what})", None

    def close(self) -> None:
        self._live.clear()
