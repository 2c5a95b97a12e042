"""Constants and helpers for the black-box conformance suite (spec/vpmu-semantics.md, baseline M, 6.12).

Only the public API is used: ``from kvmpmu import ...``.  The MSR and bit
constants below are this suite's own table, written from the spec (§2.5, §3, §4,
§5), so that the tests do not depend on the implementation's constants.
"""
from __future__ import annotations

import dataclasses

import pytest

import kvmpmu


class _Missing:
    """Stands in for a public name kvmpmu does not export (yet): every use fails the test.

    This keeps collection of the whole suite working while the device model lands;
    a test touching a missing name fails with an AttributeError naming it.
    """

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        raise AttributeError(f"kvmpmu does not export {self._name}")

    def __call__(self, *args, **kwargs):
        raise AttributeError(f"kvmpmu does not export {self._name}")


def _public(name):
    return getattr(kvmpmu, name, None) or _Missing(name)


VirtualPMU = _public("VirtualPMU")
PmuModel = _public("PmuModel")
SimulatedBackend = _public("SimulatedBackend")
EventFilter = _public("EventFilter")
models = _public("models")
GuestFault = getattr(kvmpmu, "GuestFault", None) or type("GuestFault", (Exception,), {})
FilterError = getattr(kvmpmu, "FilterError", None) or type("FilterError", (OSError,), {})

# ---- Intel MSRs (spec §4.1) -------------------------------------------------
IA32_PMC0 = 0xC1            # legacy counter alias (P6 PERFCTR0 / IA32_PMC0)
IA32_A_PMC0 = 0x4C1         # full-width alias
PERFEVTSEL0 = 0x186
FIXED_CTR0 = 0x309
FIXED_CTR3 = 0x30C
FIXED_CTR_CTRL = 0x38D
GLOBAL_STATUS = 0x38E
GLOBAL_CTRL = 0x38F
GLOBAL_OVF_CTRL = 0x390
GLOBAL_STATUS_SET = 0x391
GLOBAL_INUSE = 0x392
PEBS_ENABLE = 0x3F1
PEBS_DATA_CFG = 0x3F2
DS_AREA = 0x600
PERF_CAPABILITIES = 0x345
PERF_METRICS = 0x329

# ---- AMD MSRs (spec §5.1) ---------------------------------------------------
K7_EVNTSEL0 = 0xC001_0000
K7_PERFCTR0 = 0xC001_0004
F15H_PERF_CTL0 = 0xC001_0200
F15H_PERF_CTR0 = 0xC001_0201
AMD_GLOBAL_STATUS = 0xC000_0300
AMD_GLOBAL_CTL = 0xC000_0301
AMD_GLOBAL_STATUS_CLR = 0xC000_0302
AMD_GLOBAL_STATUS_SET = 0xC000_0303

# ---- selector bits (spec §4.2 / §5.2) ---------------------------------------
USR = 1 << 16
OS = 1 << 17
EDGE = 1 << 18
PC = 1 << 19
INT = 1 << 20
ANY = 1 << 21
EN = 1 << 22
INV = 1 << 23
IN_TX = 1 << 32
IN_TXCP = 1 << 33

# ---- PERF_CAPABILITIES bits (spec §2.5) --------------------------------------
FW_WRITE = 1 << 13
PEBS_BASELINE = 1 << 14

# ---- event codes as they sit in PERFEVTSEL ----------------------------------
INTEL_INSTRUCTIONS = 0x00C0
INTEL_BRANCHES = 0x00C4
INTEL_CYCLES = 0x003C
INTEL_REF_CYCLES = 0x013C
INTEL_LLC_MISSES = 0x412E
AMD_INSTRUCTIONS = 0x00C0
AMD_BRANCHES = 0x00C2
AMD_CYCLES = 0x0076

FIXED_PSEUDO = {0: 0x00C0, 1: 0x003C, 2: 0x0300}


def mask(w: int) -> int:
    return (1 << w) - 1


# ---- model variants (built from the named profiles with dataclasses.replace) --

def intel(version=2, gp=4, gp_width=48, fixed=3, fixed_width=48, pdcm=True,
          perf_caps=FW_WRITE, **kw):
    """An Intel guest model; defaults: v2, 4 GP x 48 bit, 3 fixed x 48 bit, PDCM+FW_WRITE."""
    fields = dict(version=version, gp_counters=gp, gp_width=gp_width,
                  fixed_counters=fixed, fixed_width=fixed_width, pdcm=pdcm,
                  perf_capabilities=perf_caps, tsx=False, ds=False, dtes64=False,
                  events_unavailable=0, fixed_counter_bitmap=0)
    fields.update(kw)
    return dataclasses.replace(models.get("icelake-server"), **fields)


def intel_v1(**kw):
    """The Intel v1 variant of the brief: version=1, 4 GP counters, 40 bit wide."""
    kw.setdefault("version", 1)
    kw.setdefault("gp", 4)
    kw.setdefault("gp_width", 40)
    return intel(**kw)


def amd_legacy(**kw):
    """AMD without PerfCtrCore (4 K7 counters, PerfMonV1)."""
    fields = dict(version=1, gp_counters=4, gp_width=48, fixed_counters=0,
                  amd_perfctr_core=False, amd_perfmon_v2=False)
    fields.update(kw)
    return dataclasses.replace(models.get("zen4"), **fields)


def amd_core(**kw):
    """AMD with PerfCtrCore (6 counters at the F15H block), PerfMonV1."""
    fields = dict(version=1, gp_counters=6, gp_width=48, fixed_counters=0,
                  amd_perfctr_core=True, amd_perfmon_v2=False)
    fields.update(kw)
    return dataclasses.replace(models.get("zen4"), **fields)


def amd_v2(gp=6, **kw):
    """AMD with PerfCtrCore and PerfMonV2; ``gp`` is NumPerfCtrCore (0x80000022 EBX[3:0])."""
    fields = dict(version=2, gp_counters=gp, gp_width=48, fixed_counters=0,
                  amd_perfctr_core=True, amd_perfmon_v2=True)
    fields.update(kw)
    return dataclasses.replace(models.get("zen4"), **fields)


def intel_host(**kw):
    """A simulated Intel host PMU (for the §2.1 clamps)."""
    return dataclasses.replace(models.get("icelake-server"), **kw)


def amd_host(**kw):
    """A simulated AMD host PMU (for the §2.1 clamps)."""
    return dataclasses.replace(models.get("zen4"), **kw)


NAMED_MODELS = ["icelake-server", "icelake-client", "skylake-server",
                "sapphire-rapids", "zen3", "zen4"]

VARIANTS = {
    "intel-v1": lambda: intel_v1(),
    "intel-v2": lambda: intel(),
    "amd-legacy": lambda: amd_legacy(),
    "amd-core": lambda: amd_core(),
    "amd-v2": lambda: amd_v2(),
}


def faults(fn, *args, **kw):
    """Assert that fn(*args, **kw) raises GuestFault; return the fault."""
    with pytest.raises(GuestFault) as ei:
        fn(*args, **kw)
    return ei.value


def sel(event, usr=True, os=True, en=True, intr=False, extra=0):
    """A PERFEVTSEL value for ``event`` (event select | umask << 8 [| AMD bits 35:32])."""
    v = event | extra
    if usr:
        v |= USR
    if os:
        v |= OS
    if en:
        v |= EN
    if intr:
        v |= INT
    return v


def intel_gp_on(pmu, i, event, **kw):
    """Program Intel GP counter i for ``event`` and make sure it is globally enabled."""
    pmu.wrmsr(PERFEVTSEL0 + i, sel(event, **kw))
    try:
        g = pmu.rdmsr(GLOBAL_CTRL)
    except GuestFault:
        return  # version 1: no global control
    pmu.wrmsr(GLOBAL_CTRL, g | (1 << i))


def intel_fixed_on(pmu, j, field=0x3):
    """Set fixed counter j's 4-bit control field and its GLOBAL_CTRL enable."""
    ctrl = pmu.rdmsr(FIXED_CTR_CTRL)
    ctrl = (ctrl & ~(0xF << (4 * j))) | (field << (4 * j))
    pmu.wrmsr(FIXED_CTR_CTRL, ctrl)
    pmu.wrmsr(GLOBAL_CTRL, pmu.rdmsr(GLOBAL_CTRL) | (1 << (32 + j)))


def amd_ctl(i, core=True):
    return (F15H_PERF_CTL0 + 2 * i) if core else (K7_EVNTSEL0 + i)


def amd_ctr(i, core=True):
    return (F15H_PERF_CTR0 + 2 * i) if core else (K7_PERFCTR0 + i)


def cpuid_leaf(pmu, leaf, subleaf=0):
    """The (eax, ebx, ecx, edx) the PMU contributes for a leaf, or None if absent."""
    for (l, s, a, b, c, d) in pmu.cpuid():
        if l == leaf and s == subleaf:
            return (a, b, c, d)
    return None


def cpuid_reg(pmu, leaf, reg, subleaf=0):
    """One register (0=EAX .. 3=EDX) of a contributed leaf; 0 when the leaf is absent."""
    entry = cpuid_leaf(pmu, leaf, subleaf)
    return 0 if entry is None else entry[reg]
