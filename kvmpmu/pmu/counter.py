"""One guest counter (KVM's ``struct kvm_pmc``) and its primitives (spec §7.4, §7.5).

``counter`` is the stored value; while a host event is live and not paused it
is an *offset* added to the host event's running count, exactly as KVM
treats perf's count.  Every method here is on the MSR-exit path: no
allocation beyond what an int operation costs.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kvmpmu.host.backend import BackingUnavailable, EventRequest

if TYPE_CHECKING:
    from kvmpmu.host.backend import Backend, HostEvent


def sample_period(counter: int, mask: int) -> int:
    """Ticks left until the guest counter wraps; a full wrap when that is 0 (§6.3)."""
    p = (-counter) & mask
    return p if p else mask + 1


class Counter:
    """Per-counter state of §1 plus what the device model needs for reports."""

    __slots__ = ("idx", "bit", "fixed", "j", "name", "mask", "counter", "emulated",
                 "eventsel", "current_config", "event", "paused", "intr", "carry",
                 "why_not", "rsvd")

    def __init__(self, idx: int, fixed: bool, j: int, name: str, eventsel: int = 0) -> None:
        self.idx = idx
        self.bit = 1 << idx
        self.fixed = fixed
        self.j = j                      # GP i or fixed j
        self.name = name
        self.mask = 0
        self.counter = 0
        self.emulated = 0
        self.eventsel = eventsel        # GP: last accepted PERFEVTSEL; fixed: pseudo encoding
        self.current_config = 0
        self.event: HostEvent | None = None
        self.paused = False
        self.intr = False
        # An emulated overflow carried over by restore() (save() found one not yet
        # reported); reported by the next pause like any emulated wrap (§8.2).
        self.carry = False
        self.why_not: str | None = None  # last reason the backend refused this counter
        self.rsvd = 0                   # Intel: PERFEVTSEL reserved bits for this counter

    # -- §7.4 primitives ------------------------------------------------------------
    def read(self) -> int:
        """counter + emulated + live host count, masked (§7.4 read)."""
        v = self.counter + self.emulated
        ev = self.event
        if ev is not None and not self.paused:
            v += ev.read()
        return v & self.mask

    def pause(self) -> bool:
        """Fold the host count and the emulated events in; True on an emulated wrap (§7.4)."""
        counter = self.counter
        ev = self.event
        if ev is not None and not self.paused:
            counter += ev.pause()
        # A wrap caused by host-counted events was delivered by the host overflow
        # already; only the emulated part can wrap unreported (§8.2).
        prev = counter & self.mask
        self.counter = (counter + self.emulated) & self.mask
        self.emulated = 0
        self.paused = True
        ovf = self.counter < prev or self.carry
        self.carry = False
        return ovf

    def resume(self, pebs: bool) -> bool:
        """Re-arm the paused host event with the exact period left; False if impossible."""
        ev = self.event
        if ev is None:
            return False
        if ev.sample_period:
            try:
                ev.set_period(sample_period(self.counter, self.mask))
            except Exception:       # perf rejected the period: recreate (§7.4)
                return False
        if pebs != bool(ev.precise_ip):
            return False
        ev.resume()
        self.paused = False
        return True

    def release(self) -> bool:
        """Destroy the host event; True if there was one (§7.4 release)."""
        ev = self.event
        if ev is None:
            return False
        self.event = None
        self.current_config = 0
        try:
            ev.close()
        except Exception:           # a failing close must not leak into the VMM
            pass
        return True

    def stop(self) -> bool:
        """Fold the live count into ``counter`` and release (§7.4 stop)."""
        if self.event is None:
            return False
        self.counter = self.read()
        return self.release()

    def create(self, backend: Backend, req: EventRequest, intr: bool) -> bool:
        """Open a host event for ``req``; on refusal the counter keeps its value (§7.3 step 6)."""
        try:
            ev = backend.create(req)
        except BackingUnavailable as e:
            self.why_not = e.reason
            return False
        except Exception as e:      # any host failure is an unbacked counter, never a VMM crash
            self.why_not = f"{type(e).__name__}: {e}"
            return False
        self.event = ev
        self.paused = False
        self.intr = intr
        self.why_not = None
        return True

    def write(self, val: int) -> None:
        """Guest/host write of the counter value (§7.5), period quirk included.

        The period is recomputed from the stored *offset*, not from ``val``:
        if the live event counted N events since it was (re)armed, the
        overflow comes N events after the architectural wrap, as in KVM
        (spec §7.5 / Q13).  Only the next reprogram re-synchronises it.
        """
        self.emulated = 0
        self.counter = (self.counter + val - self.read()) & self.mask
        ev = self.event
        if ev is not None and not self.paused and ev.sample_period:
            try:
                ev.set_period(sample_period(self.counter, self.mask))
            except Exception:
                pass

    def reset_state(self) -> None:
        """Zero the value (the host event must have been released before)."""
        self.counter = 0
        self.emulated = 0
        self.carry = False
        if not self.fixed:
            self.eventsel = 0
