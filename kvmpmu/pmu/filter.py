"""The PMU event filter (KVM_SET_PMU_EVENT_FILTER), spec §10.

:class:`EventFilter` holds what a VMM would pass to the ioctl and validates it
in KVM's order (§10.2); ``compile(vendor)`` applies the vendor-dependent rules
(masked-entry bits 35:32 are legal only on AMD; impossible legacy entries are
dropped) and returns a :class:`CompiledFilter` that answers "is this counter
allowed" as KVM's ``is_gp_event_allowed`` / ``is_fixed_event_allowed`` do
(§10.4).  ``to_kvm_bytes()`` is the ioctl's exact argument, so the same filter
can be handed to a real KVM (the test suite uses KVM as an oracle for the
error codes).
"""
from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import Iterable

KVM_PMU_EVENT_ALLOW = 0
KVM_PMU_EVENT_DENY = 1
KVM_PMU_EVENT_FLAG_MASKED_EVENTS = 1 << 0
KVM_PMU_EVENT_FLAGS_VALID_MASK = KVM_PMU_EVENT_FLAG_MASKED_EVENTS
KVM_PMU_EVENT_FILTER_MAX_EVENTS = 300

# §10.1 masked entry fields
MASKED_EXCLUDE = 1 << 55
MASKED_UMASK_MATCH = 0xFF << 8
MASKED_UMASK_MASK = 0xFF << 56
_INTEL_EVENT_SELECT = 0xFF
_AMD_EVENT_SELECT = 0xF_0000_00FF
_UMASK = 0xFF00

_ACTIONS = {"allow": KVM_PMU_EVENT_ALLOW, "deny": KVM_PMU_EVENT_DENY,
            KVM_PMU_EVENT_ALLOW: KVM_PMU_EVENT_ALLOW, KVM_PMU_EVENT_DENY: KVM_PMU_EVENT_DENY}


class FilterError(OSError):
    """The filter would be refused by KVM_SET_PMU_EVENT_FILTER; ``errno`` is KVM's (EINVAL, E2BIG)."""

    def __init__(self, err: int, reason: str) -> None:
        super().__init__(err, f"event filter rejected ({errno.errorcode.get(err, err)}): {reason}")
        self.reason = reason


def masked_entry(event: int, mask: int, match: int, exclude: bool = False) -> int:
    """KVM_PMU_ENCODE_MASKED_ENTRY (§10.1): ``event`` is the 12-bit event select."""
    return ((event & 0xFF) | ((event & 0xF00) << 24) | ((mask & 0xFF) << 56)
            | ((match & 0xFF) << 8) | (int(bool(exclude)) << 55))


def _event_select_key(v: int) -> int:
    """Event select bits 7:0 and 35:32 (of an entry or a selector) as one 12-bit number."""
    return (v & 0xFF) | ((v >> 24) & 0xF00)


def _u32(name: str, v: object) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFF_FFFF:
        raise FilterError(errno.EINVAL, f"{name} must be a 32-bit unsigned integer, not {v!r}")
    return v


@dataclass(frozen=True)
class EventFilter:
    """A VM's PMU event filter, as the arguments of KVM_SET_PMU_EVENT_FILTER (§10.1).

    ``action``: "allow" or "deny" (or KVM's 0 / 1).  ``events``: legacy entries
    (event select | umask << 8; AMD event select 11:8 at bits 35:32) or, with
    ``flags = KVM_PMU_EVENT_FLAG_MASKED_EVENTS``, masked entries
    (:func:`masked_entry`).  ``fixed_counter_bitmap``: bit j = fixed counter j.
    Raises :class:`FilterError` with KVM's errno for what KVM rejects without
    knowing the vendor, in KVM's order (§10.2 steps 2-4, and step 7 for bits
    illegal on every vendor).
    """

    action: str | int
    events: tuple[int, ...] = field(default=())
    fixed_counter_bitmap: int = 0
    flags: int = 0

    def __init__(self, action: str | int, events: Iterable[int] = (),
                 fixed_counter_bitmap: int = 0, flags: int = 0) -> None:
        key = action.lower() if isinstance(action, str) else action
        if isinstance(key, bool) or key not in _ACTIONS:
            raise FilterError(errno.EINVAL, f"action must be 'allow' or 'deny', not {action!r}")
        object.__setattr__(self, "action", "allow" if _ACTIONS[key] == KVM_PMU_EVENT_ALLOW else "deny")
        flags = _u32("flags", flags)
        if flags & ~KVM_PMU_EVENT_FLAGS_VALID_MASK:
            raise FilterError(errno.EINVAL, f"unknown flags {flags & ~KVM_PMU_EVENT_FLAGS_VALID_MASK:#x}")
        object.__setattr__(self, "flags", flags)
        try:
            evs = tuple(events)
        except TypeError:
            raise FilterError(errno.EINVAL, "events must be a sequence of integers") from None
        if len(evs) > KVM_PMU_EVENT_FILTER_MAX_EVENTS:
            raise FilterError(errno.E2BIG, f"{len(evs)} events, at most "
                              f"{KVM_PMU_EVENT_FILTER_MAX_EVENTS} are allowed")
        for e in evs:
            if isinstance(e, bool) or not isinstance(e, int) or not 0 <= e < 1 << 64:
                raise FilterError(errno.EINVAL, f"event entries are 64-bit unsigned integers, not {e!r}")
            if self.masked and e & ~(_AMD_EVENT_SELECT | MASKED_UMASK_MATCH | MASKED_EXCLUDE
                                     | MASKED_UMASK_MASK):
                raise FilterError(errno.EINVAL, f"masked entry {e:#x} has bits outside the legal fields")
        object.__setattr__(self, "events", evs)
        object.__setattr__(self, "fixed_counter_bitmap",
                           _u32("fixed_counter_bitmap", fixed_counter_bitmap))

    @property
    def masked(self) -> bool:
        """The events are masked entries (KVM_PMU_EVENT_FLAG_MASKED_EVENTS)."""
        return bool(self.flags & KVM_PMU_EVENT_FLAG_MASKED_EVENTS)

    def compile(self, vendor: str) -> CompiledFilter:
        """Apply the vendor rules (§10.2 steps 7-8, §10.3); FilterError as KVM would."""
        select = _AMD_EVENT_SELECT if vendor == "amd" else _INTEL_EVENT_SELECT
        entries: list[int] = []
        if self.masked:
            legal = select | MASKED_UMASK_MATCH | MASKED_EXCLUDE | MASKED_UMASK_MASK
            for e in self.events:
                if e & ~legal:
                    raise FilterError(errno.EINVAL, f"masked entry {e:#x} has bits outside the "
                                      f"legal fields for {vendor}")
                entries.append(e)
        else:
            for e in self.events:
                if e & ~(select | _UMASK):
                    continue        # impossible legacy entry: silently dropped (§10.2 step 8)
                # legacy -> masked, exact umask match (§10.3)
                entries.append((e & select) | (e & _UMASK) | MASKED_UMASK_MASK)
        return CompiledFilter(self.action == "allow", entries, self.fixed_counter_bitmap, select)

    def to_kvm_bytes(self) -> bytes:
        """The exact KVM_SET_PMU_EVENT_FILTER argument (32-byte header + u64 events, §10.1)."""
        action = KVM_PMU_EVENT_ALLOW if self.action == "allow" else KVM_PMU_EVENT_DENY
        head = struct.pack("<IIII16x", action, len(self.events), self.fixed_counter_bitmap, self.flags)
        return head + struct.pack(f"<{len(self.events)}Q", *self.events)

    def to_dict(self) -> dict[str, object]:
        """JSON-serialisable form (``EventFilter(**d)`` rebuilds it)."""
        return {"action": self.action, "events": list(self.events),
                "fixed_counter_bitmap": self.fixed_counter_bitmap, "flags": self.flags}


class CompiledFilter:
    """A validated filter for one vendor, evaluated as KVM evaluates it (§10.4).

    Entries are grouped by event select; results per (event select, umask) are
    memoised, so the reprogram and emulated-event paths pay one dict lookup.
    """

    __slots__ = ("allow", "fixed_bitmap", "_include", "_exclude", "_memo", "_select")

    def __init__(self, allow: bool, entries: list[int], fixed_bitmap: int,
                 event_select: int = _INTEL_EVENT_SELECT) -> None:
        self.allow = allow
        self._select = event_select | _UMASK
        self.fixed_bitmap = fixed_bitmap
        self._include: dict[int, list[tuple[int, int]]] = {}
        self._exclude: dict[int, list[tuple[int, int]]] = {}
        for e in entries:
            table = self._exclude if e & MASKED_EXCLUDE else self._include
            table.setdefault(_event_select_key(e), []).append(((e >> 56) & 0xFF, (e >> 8) & 0xFF))
        self._memo: dict[int, bool] = {}

    @staticmethod
    def _matches(table: dict[int, list[tuple[int, int]]], ev: int, um: int) -> bool:
        return any(um & m == match for m, match in table.get(ev, ()))

    def allows_gp(self, eventsel: int) -> bool:
        """is_gp_event_allowed(): only the vendor event select and umask matter."""
        key = eventsel & self._select
        r = self._memo.get(key)
        if r is None:
            ev, um = _event_select_key(key), (key >> 8) & 0xFF
            hit = self._matches(self._include, ev, um) and not self._matches(self._exclude, ev, um)
            r = self._memo[key] = hit if self.allow else not hit
        return r

    def allows_fixed(self, j: int) -> bool:
        """is_fixed_event_allowed(): the bitmap alone decides (§10.4)."""
        bit = bool(self.fixed_bitmap >> j & 1)
        return bit if self.allow else not bit
