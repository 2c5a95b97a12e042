"""Named CPU PMU models: ``models.get(name)``, ``models.names()``.

The named profiles state what each part's own CPUID reports for its PMU (and
its IA32_PERF_CAPABILITIES); ``VirtualPMU`` clamps them as KVM would (spec
§2), e.g. every Intel profile becomes architectural version 2 with at most
8 GP and 3 fixed counters.  ``host`` is derived from this machine
(:class:`kvmpmu.host.caps.HostCaps`): with no hardware PMU it advertises as
available only the events this host can back (core and reference cycles,
from TSC ticks).
"""
from __future__ import annotations

import dataclasses
import functools

from kvmpmu.pmu import constants as C
from kvmpmu.pmu.model import PmuModel

_FW = C.PERF_CAP_FW_WRITES

# IA32_PERF_CAPABILITIES as the parts report them: LBR format, PEBS trap/arch
# regs/format, freeze-in-SMM, FW_WRITE, (ICL+) PEBS baseline and PERF_METRICS.
_SKX_CAPS = 0x05 | 0xC0 | (3 << 8) | C.PERF_CAP_FREEZE_SMM | _FW
_ICX_CAPS = 0x05 | 0xC0 | (4 << 8) | C.PERF_CAP_FREEZE_SMM | _FW | C.PERF_CAP_PEBS_BASELINE \
    | C.PERF_CAP_PERF_METRICS
_SPR_CAPS = C.LBR_FMT_ARCH | 0xC0 | (5 << 8) | C.PERF_CAP_FREEZE_SMM | _FW \
    | C.PERF_CAP_PEBS_BASELINE | C.PERF_CAP_PERF_METRICS | C.PERF_CAP_PEBS_OUTPUT_PT

_NAMED: dict[str, PmuModel] = {
    "icelake-server": PmuModel(
        name="icelake-server", vendor="intel", family=6, model=0x6A, version=5,
        gp_counters=8, gp_width=48, fixed_counters=4, fixed_width=48, events_len=8,
        events_unavailable=0, pdcm=True, perf_capabilities=_ICX_CAPS, tsx=True,
        fixed_counter_bitmap=0xF, ds=True, dtes64=True),
    "icelake-client": PmuModel(
        name="icelake-client", vendor="intel", family=6, model=0x7E, version=5,
        gp_counters=8, gp_width=48, fixed_counters=4, fixed_width=48, events_len=8,
        events_unavailable=0, pdcm=True, perf_capabilities=_ICX_CAPS, tsx=False,
        fixed_counter_bitmap=0xF, ds=True, dtes64=True),
    "skylake-server": PmuModel(
        name="skylake-server", vendor="intel", family=6, model=0x55, version=4,
        gp_counters=4, gp_width=48, fixed_counters=3, fixed_width=48, events_len=7,
        events_unavailable=0, pdcm=True, perf_capabilities=_SKX_CAPS, tsx=True,
        fixed_counter_bitmap=0, ds=True, dtes64=True),
    "sapphire-rapids": PmuModel(
        name="sapphire-rapids", vendor="intel", family=6, model=0x8F, version=5,
        gp_counters=8, gp_width=48, fixed_counters=4, fixed_width=48, events_len=8,
        events_unavailable=0, pdcm=True, perf_capabilities=_SPR_CAPS, tsx=True,
        fixed_counter_bitmap=0xF, ds=True, dtes64=True),
    "zen3": PmuModel(
        name="zen3", vendor="amd", family=0x19, model=0x01, version=1, gp_counters=6,
        gp_width=48, fixed_counters=0, fixed_width=0, events_len=0, events_unavailable=0,
        pdcm=False, perf_capabilities=0, tsx=False, amd_perfctr_core=True,
        amd_perfmon_v2=False),
    "zen4": PmuModel(
        name="zen4", vendor="amd", family=0x19, model=0x11, version=2, gp_counters=6,
        gp_width=48, fixed_counters=0, fixed_width=0, events_len=0, events_unavailable=0,
        pdcm=False, perf_capabilities=0, tsx=False, amd_perfctr_core=True,
        amd_perfmon_v2=True),
}

# CPUID.0AH.EBX bits (1 = NOT available), spec §2.2
_EBX_CORE_CYCLES = 1 << 0
_EBX_REF_CYCLES = 1 << 2
_EBX_ALL7 = 0x7F


def names() -> list[str]:
    """The model names ``get`` accepts (``host`` included)."""
    return list(_NAMED) + ["host"]


def get(name: str) -> PmuModel:
    """A named model; ``host`` probes this machine (once per process)."""
    if name == "host":
        return host_model()
    try:
        return _NAMED[name]
    except KeyError:
        raise ValueError(f"unknown PMU model {name!r}; known: {', '.join(names())}") from None


@functools.lru_cache(maxsize=1)
def host_model() -> PmuModel:
    """The ``host`` model, from :meth:`kvmpmu.host.caps.HostCaps.probe`."""
    from kvmpmu.host.caps import HostCaps
    return model_from_caps(HostCaps.probe())


def model_from_caps(caps) -> PmuModel:  # caps: kvmpmu.host.caps.HostCaps
    """Derive the ``host`` model from a HostCaps snapshot (usable with a saved one)."""
    flags = set(caps.cpu_flags)
    amd = caps.cpu_vendor in ("AuthenticAMD", "HygonGenuine")
    if amd:
        base = dataclasses.replace(_NAMED["zen4"], name="host", family=caps.cpu_family,
                                   model=caps.cpu_model)
        if caps.has_hardware_pmu:
            v2 = "perfmon_v2" in flags
            core = "perfctr_core" in flags
            gp = 6 if core else 4
            if v2:
                from kvmpmu.host.caps import cpuid
                gp = cpuid(0x8000_0022)[1] & 0xF
            return dataclasses.replace(base, version=2 if v2 else 1, gp_counters=gp,
                                       amd_perfctr_core=core, amd_perfmon_v2=v2)
        if caps.can_back_cycles_with_tsc:
            return base
        return dataclasses.replace(base, version=0)
    base = PmuModel(
        name="host", vendor="intel", family=caps.cpu_family, model=caps.cpu_model, version=2,
        gp_counters=C.INTEL_MAX_GP, gp_width=48, fixed_counters=C.INTEL_MAX_FIXED,
        fixed_width=48, events_len=7, events_unavailable=_EBX_ALL7, pdcm=True,
        perf_capabilities=_FW, tsx=False)
    if caps.has_hardware_pmu:
        from kvmpmu.host.caps import cpuid
        eax, ebx, _ecx, edx = cpuid(0xA)
        return dataclasses.replace(
            base, version=eax & 0xFF, gp_counters=(eax >> 8) & 0xFF,
            gp_width=(eax >> 16) & 0xFF, events_len=(eax >> 24) & 0xFF,
            events_unavailable=ebx, fixed_counters=edx & 0x1F, fixed_width=(edx >> 5) & 0xFF,
            pdcm="pdcm" in flags, tsx=bool(flags & {"hle", "rtm"}))
    if caps.can_back_cycles_with_tsc:
        # only cycle-class events can be backed (TSC ticks of guest time)
        return dataclasses.replace(
            base, events_unavailable=_EBX_ALL7 & ~(_EBX_CORE_CYCLES | _EBX_REF_CYCLES))
    return dataclasses.replace(base, version=0)
