"""Guest event names → PERFEVTSEL encodings, as ``perf`` users write them.

Accepted forms (each may carry ``:u``, ``:k`` or ``:uk`` modifiers):

* perf generic names: ``cycles``, ``instructions``, ``ref-cycles``, ``branches``
  (``branch-instructions``), ``branch-misses``, ``cache-references``,
  ``cache-misses``, ``bus-cycles`` — encoded as KVM's architectural events
  for the model's vendor (spec §6.6 tables, §2.2);
* raw ``rNNNN``: the PERFEVTSEL event code in hex, ``umask << 8 | event``
  (AMD: event select bits 11:8 at 35:32);
* ``cpu/event=0x3c,umask=0x1,cmask=1,inv,edge/``;
* model-specific names through libpfm4 (``INST_RETIRED.ANY_P`` on Intel,
  ``RETIRED_INSTRUCTIONS`` on Zen), with the PMU libpfm4 is forced to chosen
  from the guest model.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from kvmpmu.events import pfm

USR = 1 << 16
OS = 1 << 17
EDGE = 1 << 18
INV = 1 << 23

# Architectural (Intel, CPUID.0AH.EBX order) and AMD generic encodings.
_GENERIC: dict[str, dict[str, int]] = {
    "intel": {
        "cycles": 0x003C, "cpu-cycles": 0x003C,
        "instructions": 0x00C0,
        "ref-cycles": 0x013C, "bus-cycles": 0x013C,
        "cache-references": 0x4F2E, "cache-misses": 0x412E,
        "branches": 0x00C4, "branch-instructions": 0x00C4,
        "branch-misses": 0x00C5,
    },
    "amd": {
        "cycles": 0x0076, "cpu-cycles": 0x0076,
        "instructions": 0x00C0,
        "cache-references": 0xFF60, "cache-misses": 0x0964,
        "branches": 0x00C2, "branch-instructions": 0x00C2,
        "branch-misses": 0x00C3,
    },
}


class EventSyntaxError(ValueError):
    """An event name that cannot be encoded; the message says which and why."""


@dataclass(frozen=True)
class GuestEvent:
    """One guest event: what the guest writes into a PERFEVTSEL (minus EN/INT)."""

    name: str
    code: int          # event select | umask << 8 (AMD: | select[11:8] << 32)
    usr: bool = True
    os: bool = True
    extra: int = 0     # edge / inv / cmask bits, at their PERFEVTSEL positions

    @property
    def eventsel(self) -> int:
        """The PERFEVTSEL value without EN and INT."""
        return self.code | self.extra | (USR if self.usr else 0) | (OS if self.os else 0)

    @property
    def fixed_index(self) -> int | None:
        """Intel fixed counter that counts exactly this event, if any (spec §6.5)."""
        return {0x00C0: 0, 0x003C: 1, 0x013C: 2, 0x0300: 2}.get(self.code) if not self.extra else None

    @property
    def fixed_only(self) -> bool:
        """KVM's pseudo encoding 0x0300 exists only on fixed counter 2."""
        return self.code == 0x0300


_MOD = re.compile(r"^(?P<body>.+?)(?::(?P<mods>[a-zA-Z]{1,3}))?$")
_RAW = re.compile(r"^r(?P<hex>[0-9a-fA-F]{1,9})$")
_PMU = re.compile(r"^cpu/(?P<terms>[^/]*)/$")


def _modifiers(mods: str | None, name: str) -> tuple[bool, bool]:
    if not mods:
        return True, True
    bad = set(mods) - set("uk")
    if bad:
        raise EventSyntaxError(f"event {name!r}: modifier(s) {''.join(sorted(bad))!r} not supported "
                               "(use :u, :k or :uk)")
    return "u" in mods, "k" in mods


def _pmu_terms(terms: str, name: str, vendor: str) -> tuple[int, int]:
    code = extra = 0
    for term in filter(None, terms.split(",")):
        key, _, val = term.partition("=")
        try:
            v = int(val, 0) if val else 1
        except ValueError:
            raise EventSyntaxError(f"event {name!r}: {term!r} is not a number") from None
        if key == "event":
            code |= (v & 0xFF) | (((v >> 8) & 0xF) << 32 if vendor == "amd" else 0)
            if v > (0xFFF if vendor == "amd" else 0xFF):
                raise EventSyntaxError(f"event {name!r}: event={v:#x} is too wide for {vendor}")
        elif key == "umask":
            if v > 0xFF:
                raise EventSyntaxError(f"event {name!r}: umask={v:#x} is wider than 8 bits")
            code |= v << 8
        elif key == "cmask":
            if v > 0xFF:
                raise EventSyntaxError(f"event {name!r}: cmask={v:#x} is wider than 8 bits")
            extra |= v << 24
        elif key == "inv":
            extra |= INV if v else 0
        elif key == "edge":
            extra |= EDGE if v else 0
        else:
            raise EventSyntaxError(f"event {name!r}: unknown term {key!r} "
                                   "(known: event, umask, cmask, inv, edge)")
    if "event=" not in terms:
        raise EventSyntaxError(f"event {name!r}: needs event=")
    return code, extra


def parse_event(spec: str, vendor: str = "intel", pfm_pmu: str | None = None) -> GuestEvent:
    """Encode one event name for a guest of ``vendor``.

    ``pfm_pmu`` is the libpfm4 PMU name used for model-specific names
    (see :func:`kvmpmu.events.pfm.pmu_for_model`).  Raises EventSyntaxError.
    """
    spec = spec.strip()
    if not spec:
        raise EventSyntaxError("empty event name")
    pmu_m = None
    if spec.startswith("cpu/"):
        head, sep, tail = spec.rpartition("/")
        body, mods = head + sep, tail.lstrip(":") or None
        pmu_m = _PMU.match(body)
        if pmu_m is None:
            raise EventSyntaxError(f"event {spec!r}: expected cpu/event=0x..,umask=0x../")
    else:
        m = _MOD.match(spec)
        assert m is not None
        body, mods = m.group("body"), m.group("mods")
    usr, os_ = _modifiers(mods, spec)
    if pmu_m is not None:
        code, extra = _pmu_terms(pmu_m.group("terms"), spec, vendor)
        return GuestEvent(spec, code, usr, os_, extra)
    generic = _GENERIC[vendor].get(body.lower())
    if generic is not None:
        return GuestEvent(spec, generic, usr, os_)
    if body.lower() in _GENERIC["intel"]:
        raise EventSyntaxError(f"event {spec!r}: {body} has no architectural encoding on {vendor}")
    raw = _RAW.match(body)
    if raw is not None:
        v = int(raw.group("hex"), 16)
        if vendor == "intel" and v > 0xFFFF:
            raise EventSyntaxError(f"event {spec!r}: raw code {v:#x} is wider than umask<<8|event")
        code = (v & 0xFFFF) | ((v >> 16) & 0xF) << 32 if vendor == "amd" else v
        return GuestEvent(spec, code, usr, os_)
    if pfm_pmu is None:
        raise EventSyntaxError(f"unknown event {spec!r} (no libpfm4 PMU for this model to look it up)")
    try:
        sel = pfm.encode(body, pfm_pmu)
    except pfm.PfmError as e:
        raise EventSyntaxError(f"unknown event {spec!r}: {e}") from None
    code = sel & 0xFFFF | ((sel >> 32) & 0xF) << 32 if vendor == "amd" else sel & 0xFFFF
    extra = sel & (EDGE | INV | 0xFF00_0000)
    return GuestEvent(spec, code, usr, os_, extra)


def parse_events(specs: str, vendor: str = "intel", pfm_pmu: str | None = None) -> list[GuestEvent]:
    """Parse a comma-separated ``-e`` list (commas inside ``cpu/.../`` are kept)."""
    out: list[GuestEvent] = []
    depth, cur = 0, ""
    for ch in specs:
        if ch == "/":
            depth ^= 1
        if ch == "," and depth == 0:
            out.append(parse_event(cur, vendor, pfm_pmu))
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(parse_event(cur, vendor, pfm_pmu))
    if not out:
        raise EventSyntaxError("no events given")
    return out


__all__ = ["GuestEvent", "EventSyntaxError", "parse_event", "parse_events"]
