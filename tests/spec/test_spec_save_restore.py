"""save()/restore() (contract; restore applies host-initiated rules, §0.2 / §4.5 / §7.8)."""
from __future__ import annotations

import copy
import json

import pytest

from spec_helpers import (AMD_GLOBAL_CTL, AMD_GLOBAL_STATUS, FIXED_CTR0, FIXED_CTR_CTRL,
                          FW_WRITE, GLOBAL_CTRL, GLOBAL_STATUS, IA32_A_PMC0, IA32_PMC0,
                          K7_EVNTSEL0, K7_PERFCTR0, PERF_CAPABILITIES, PERFEVTSEL0, EventFilter,
                          GuestFault, amd_ctl, amd_ctr, amd_legacy, amd_v2, intel,
                          intel_fixed_on, intel_gp_on, intel_v1, mask, sel)


def host_view(pmu):
    """Every routed MSR as the host reads it (faulting ones recorded as None)."""
    out = {}
    for msr in sorted(pmu.msr_indices()):
        try:
            out[msr] = pmu.rdmsr(msr, host=True)
        except GuestFault:
            out[msr] = None
    return out


def programmed_intel(make):
    pmu, sim = make(intel(gp=4, fixed=3))
    pmu.wrmsr(IA32_PMC0, 0x8000_0000, host=True)          # host: no sign extension
    pmu.wrmsr(IA32_A_PMC0 + 1, 0xABCD_EF01_2345)
    intel_gp_on(pmu, 2, 0xC4, intr=True)
    pmu.wrmsr(PERFEVTSEL0 + 3, sel(0x3C, os=False))
    intel_fixed_on(pmu, 1, 0xB)
    pmu.wrmsr(FIXED_CTR0 + 2, 77)
    pmu.wrmsr(GLOBAL_STATUS, 0x5 | (1 << 62), host=True)
    pmu.service()
    sim.happen(0xC4, 1234, cpl=3)
    sim.happen(0x3C, 99, cpl=3)
    sim.happen(0x3C, 50, cpl=0)
    return pmu, sim


def test_save_is_versioned_json(make):
    """Contract: save() returns a JSON-serialisable dict with an integer "version"."""
    pmu, _ = programmed_intel(make)
    state = pmu.save()
    assert isinstance(state, dict)
    assert isinstance(state["version"], int) and not isinstance(state["version"], bool)
    assert json.loads(json.dumps(state)) == state


def test_restore_reproduces_every_msr_intel_simulated(make):
    """Contract: restore into a fresh PMU reproduces every MSR (incl. unserviced counts)."""
    src, _ = programmed_intel(make)
    state = json.loads(json.dumps(src.save()))
    dst, _ = make(intel(gp=4, fixed=3))
    dst.restore(state)
    assert host_view(dst) == host_view(src)
    assert dst.rdmsr(IA32_PMC0) == 0x8000_0000              # no sign extension on restore
    assert dst.rdmsr(IA32_PMC0 + 2) == 1234
    assert dst.rdmsr(GLOBAL_STATUS) == 0x5 | (1 << 62)


def test_restore_reproduces_every_msr_amd_simulated(make):
    """Contract: the same on AMD PerfMonV2."""
    src, sim = make(amd_v2())
    src.wrmsr(amd_ctl(5), sel(0x76, intr=True))
    src.wrmsr(amd_ctr(4), mask(48) - 3)
    src.wrmsr(AMD_GLOBAL_CTL, 0x30)
    src.wrmsr(AMD_GLOBAL_STATUS, 0x11, host=True)
    src.service()
    sim.happen(0x76, 8, cpl=3)
    dst, _ = make(amd_v2())
    dst.restore(json.loads(json.dumps(src.save())))
    assert host_view(dst) == host_view(src)
    assert dst.rdmsr(amd_ctr(5)) == 8


def test_save_restore_save_identity(make):
    """Contract: save -> restore -> save is the identity."""
    src, _ = programmed_intel(make)
    s1 = src.save()
    dst, _ = make(intel(gp=4, fixed=3))
    dst.restore(copy.deepcopy(s1))
    assert dst.save() == s1


def test_counting_continues_from_restored_values_simulated(make):
    """Contract: after restore the counters count on from the restored values."""
    src, _ = programmed_intel(make)
    dst, sim = make(intel(gp=4, fixed=3))
    dst.restore(src.save())
    dst.service()
    sim.happen(0xC4, 6, cpl=3)
    sim.happen(0x003C, 4, cpl=3)
    assert dst.rdmsr(IA32_PMC0 + 2) == 1240
    assert dst.rdmsr(FIXED_CTR0 + 1) == src.rdmsr(FIXED_CTR0 + 1) + 4
    assert dst.rdmsr(IA32_PMC0 + 3) == 99 + 4             # USR only: 99 before, +4 at CPL3
    sim.happen(0x3C, 3, cpl=0)
    assert dst.rdmsr(IA32_PMC0 + 3) == 103


def test_overflow_not_lost_across_save_restore_simulated(make):
    """Contract / §8: a counter saved close to its wrap overflows on time after restore."""
    src, sim = make(intel())
    src.wrmsr(IA32_A_PMC0, mask(48) - 9)
    intel_gp_on(src, 0, 0xC0, intr=True)
    src.service()
    sim.happen(0xC0, 6, cpl=3)
    dst, sim2 = make(intel())
    dst.restore(src.save())
    dst.service()
    sim2.happen(0xC0, 3, cpl=3)
    assert dst.service() is False
    sim2.happen(0xC0, 1, cpl=3)
    assert dst.service() is True
    assert dst.rdmsr(GLOBAL_STATUS) == 0x1


def test_pending_status_survives_save_restore(make):
    """Contract: GLOBAL_STATUS set by an overflow is part of the saved state."""
    src, sim = make(intel())
    src.wrmsr(IA32_A_PMC0 + 1, mask(48))
    intel_gp_on(src, 1, 0xC0)
    src.service()
    sim.happen(0xC0, 1, cpl=3)
    src.service()
    dst, _ = make(intel())
    dst.restore(src.save())
    assert dst.rdmsr(GLOBAL_STATUS) == 0x2


def test_restore_newer_version_refused_and_changes_nothing(make):
    """Contract: restore() of a newer state version raises ValueError and changes nothing."""
    src, _ = programmed_intel(make)
    dst, _ = make(intel(gp=4, fixed=3))
    dst.wrmsr(IA32_PMC0 + 1, 4242)
    before = dst.save()
    state = src.save()
    state["version"] = state["version"] + 1
    with pytest.raises(ValueError):
        dst.restore(state)
    assert dst.save() == before
    assert dst.rdmsr(IA32_PMC0 + 1) == 4242


def test_restore_v1_and_amd_legacy_identity(make):
    """Contract: identity also on Intel v1 and AMD legacy."""
    for factory, ctl, ctr in ((intel_v1, PERFEVTSEL0, IA32_PMC0),
                              (amd_legacy, K7_EVNTSEL0, K7_PERFCTR0)):
        src, sim = make(factory())
        src.wrmsr(ctl + 1, sel(0xC0))
        src.wrmsr(ctr + 2, 12345, host=True)
        src.service()
        sim.happen(0xC0, 11, cpl=0)
        dst, _ = make(factory())
        dst.restore(src.save())
        assert dst.save() == src.save()
        assert dst.rdmsr(ctr + 1) == 11
        assert dst.rdmsr(ctr + 2) == 12345


def test_restore_keeps_perf_capabilities(make):
    """§2.5: PERF_CAPABILITIES is restored with host rules (a supported value)."""
    src, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    src.wrmsr(PERF_CAPABILITIES, 0, host=True)
    dst, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    dst.restore(src.save())
    assert dst.rdmsr(PERF_CAPABILITIES) == 0
    with pytest.raises(GuestFault):
        dst.rdmsr(IA32_A_PMC0)


def test_restore_with_filter_still_filters_simulated(make):
    """§10: the filter is per VM and not part of the MSR state; a filtered counter stays frozen."""
    src, _ = make(intel())
    intel_gp_on(src, 0, 0xC0)
    src.service()
    dst, sim = make(intel())
    dst.set_event_filter(EventFilter(action="deny", events=[0xC0]))
    dst.restore(src.save())
    dst.service()
    sim.happen(0xC0, 5, cpl=3)
    assert dst.rdmsr(IA32_PMC0) == 0
    assert dst.rdmsr(GLOBAL_CTRL) == src.rdmsr(GLOBAL_CTRL)
    assert dst.rdmsr(FIXED_CTR_CTRL) == 0
