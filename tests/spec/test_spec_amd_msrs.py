"""Spec §5: AMD PMU MSRs over the legacy / PerfCtrCore / PerfMonV2 variants."""
from __future__ import annotations

import pytest

from spec_helpers import (AMD_GLOBAL_CTL, AMD_GLOBAL_STATUS, AMD_GLOBAL_STATUS_CLR,
                          AMD_GLOBAL_STATUS_SET, EN, F15H_PERF_CTL0, F15H_PERF_CTR0, INT,
                          K7_EVNTSEL0, K7_PERFCTR0, amd_core, amd_ctl, amd_ctr, amd_legacy,
                          amd_v2, faults, mask, sel)

AMD_RSVD = 0xFFFF_FFF0_0028_0000
VARIANT = {"legacy": amd_legacy, "core": amd_core, "v2": amd_v2}


# ---------------------------------------------------------------- §5.2 PerfEvtSel

@pytest.mark.parametrize("variant", ["legacy", "core", "v2"])
@pytest.mark.parametrize("host", [False, True])
def test_s5_2_perfevtsel_reserved_bits_cleared(make, variant, host):
    """§5.2: reserved PerfEvtSel bits are silently cleared (AND ~0xFFFF_FFF0_0028_0000)."""
    pmu, _ = make(VARIANT[variant]())
    pmu.wrmsr(K7_EVNTSEL0 + 1, mask(64), host=host)
    assert pmu.rdmsr(K7_EVNTSEL0 + 1) == mask(64) & ~AMD_RSVD == 0xF_FFD7_FFFF


def test_s5_2_host_only_guest_only_bits_disappear(make):
    """§5.2: HostOnly (41) / GuestOnly (40), IntCoreEn/Sel, bits 19 and 21 are dropped."""
    pmu, _ = make(amd_core())
    v = sel(0x76) | (1 << 41) | (1 << 40) | (0xF << 36) | (1 << 19) | (1 << 21)
    pmu.wrmsr(F15H_PERF_CTL0, v)
    assert pmu.rdmsr(F15H_PERF_CTL0) == sel(0x76)


def test_s5_2_event_select_high_bits_kept(make):
    """§5.2: EventSelect[11:8] at bits 35:32 is kept."""
    pmu, _ = make(amd_core())
    v = sel(0xC0) | (0xF << 32)
    pmu.wrmsr(F15H_PERF_CTL0 + 2, v)
    assert pmu.rdmsr(F15H_PERF_CTL0 + 2) == v


# ---------------------------------------------------------------- §5.1 counters, aliasing

@pytest.mark.parametrize("variant", ["legacy", "core", "v2"])
@pytest.mark.parametrize("written,expected", [
    (0x8000_0000, 0x8000_0000),               # no sign extension
    (mask(64), mask(48)),                     # masked to 48 bits, no fault
    (0x1234_5678_9ABC, 0x1234_5678_9ABC),
])
def test_s5_1_counter_write_masked_48_bits(make, variant, written, expected):
    """§5.1: PerfCtr writes are stored masked to 48 bits and never fault (guest)."""
    pmu, _ = make(VARIANT[variant]())
    pmu.wrmsr(K7_PERFCTR0 + 3, written)
    assert pmu.rdmsr(K7_PERFCTR0 + 3) == expected


def test_s5_1_counter_host_write_masked(make):
    """§5.1: host PerfCtr writes are masked like guest writes."""
    pmu, _ = make(amd_core())
    pmu.wrmsr(F15H_PERF_CTR0 + 10, mask(64), host=True)
    assert pmu.rdmsr(F15H_PERF_CTR0 + 10) == mask(48)


@pytest.mark.parametrize("variant", ["core", "v2"])
def test_s5_1_k7_and_f15h_alias(make, variant):
    """§3.2 / §5.1: K7 counter i and F15H counter i (i < 4) are the same counter."""
    pmu, _ = make(VARIANT[variant]())
    for i in range(4):
        pmu.wrmsr(K7_EVNTSEL0 + i, sel(0x76) | (i << 8))
        assert pmu.rdmsr(amd_ctl(i)) == sel(0x76) | (i << 8)
        pmu.wrmsr(amd_ctr(i), 1000 + i)
        assert pmu.rdmsr(K7_PERFCTR0 + i) == 1000 + i
        pmu.wrmsr(K7_PERFCTR0 + i, 77 + i)
        assert pmu.rdmsr(amd_ctr(i)) == 77 + i


def test_s5_1_f15h_counters_4_and_5_with_perfctr_core(make):
    """§5.1: PerfCtrCore gives 6 counters; 4 and 5 only at the F15H block."""
    pmu, _ = make(amd_core())
    for i in (4, 5):
        pmu.wrmsr(amd_ctl(i), sel(0xC0))
        pmu.wrmsr(amd_ctr(i), 40 + i)
        assert pmu.rdmsr(amd_ctl(i)) == sel(0xC0)
        assert pmu.rdmsr(amd_ctr(i)) == 40 + i


def test_s5_1_f15h_absent_without_perfctr_core(make):
    """§5.1: without PerfCtrCore the F15H block does not exist (guest fault)."""
    pmu, _ = make(amd_legacy())
    for i in range(6):
        faults(pmu.rdmsr, amd_ctl(i))
        faults(pmu.wrmsr, amd_ctr(i), 0)


def test_s5_1_f15h_absent_host_leniency(make):
    """§4.8: F15H MSRs are in the save list: host read 0 / write 0 succeed, non-zero faults."""
    pmu, _ = make(amd_legacy())
    assert pmu.rdmsr(F15H_PERF_CTL0, host=True) == 0
    pmu.wrmsr(F15H_PERF_CTL0, 0, host=True)
    faults(pmu.wrmsr, F15H_PERF_CTL0, sel(0x76), host=True)


@pytest.mark.parametrize("i", [3])
@pytest.mark.parametrize("host", [False, True])
def test_s5_1_k7_existing_but_unmappable_faults(make, i, host):
    """§5.1: K7 MSRs with i >= nr_gp (PerfMonV2, NumPerfCtrCore 3) fault — for the host too."""
    pmu, _ = make(amd_v2(gp=3))
    for msr in (K7_EVNTSEL0 + i, K7_PERFCTR0 + i):
        faults(pmu.rdmsr, msr, host=host)
        faults(pmu.wrmsr, msr, 0, host=host)
        faults(pmu.wrmsr, msr, 1, host=host)
    pmu.wrmsr(K7_PERFCTR0 + 2, 9, host=host)
    assert pmu.rdmsr(K7_PERFCTR0 + 2, host=host) == 9


@pytest.mark.parametrize("host", [False, True])
def test_s5_1_f15h_existing_but_unmappable_faults(make, host):
    """§5.1: F15H MSRs with i >= nr_gp (PerfCtrCore + PerfMonV2 with 3 counters) fault, host too."""
    pmu, _ = make(amd_v2(gp=3))
    for i in (3, 4, 5):
        for msr in (amd_ctl(i), amd_ctr(i)):
            faults(pmu.rdmsr, msr, host=host)
            faults(pmu.wrmsr, msr, 0, host=host)


def test_s5_1_no_pmu_msr_above_f15h_block(make):
    """§5.1: nothing above 0xC001_020B is a PMU MSR (dead-code range is empty)."""
    pmu, _ = make(amd_v2())
    faults(pmu.rdmsr, 0xC001_020C)
    faults(pmu.wrmsr, 0xC001_020C, 0)


def test_s5_1_version0_k7_read_zero_f15h_fault(make):
    """§4.8: with no vPMU the K7 MSRs read 0 and ignore writes; F15H accesses fault."""
    pmu, _ = make(amd_core(version=0))
    pmu.wrmsr(K7_EVNTSEL0, sel(0x76))
    pmu.wrmsr(K7_PERFCTR0 + 3, 12345)
    assert pmu.rdmsr(K7_EVNTSEL0) == 0
    assert pmu.rdmsr(K7_PERFCTR0 + 3) == 0
    faults(pmu.rdmsr, F15H_PERF_CTL0)
    faults(pmu.rdpmc, 0)


# ---------------------------------------------------------------- §5.1 global MSRs

@pytest.mark.parametrize("variant", ["legacy", "core"])
def test_s5_1_global_msrs_need_perfmon_v2(make, variant):
    """§5.1: the PerfMonV2 global MSRs do not exist for version 1."""
    pmu, _ = make(VARIANT[variant]())
    for msr in (AMD_GLOBAL_STATUS, AMD_GLOBAL_CTL, AMD_GLOBAL_STATUS_CLR, AMD_GLOBAL_STATUS_SET):
        faults(pmu.rdmsr, msr)
        faults(pmu.wrmsr, msr, 1)


def test_s5_1_global_status_guest_write_ignored(make):
    """§5.1: PerfCntrGlobalStatus guest writes are ignored (read-only, no fault)."""
    pmu, _ = make(amd_v2())
    pmu.wrmsr(AMD_GLOBAL_STATUS, 0x5, host=True)
    pmu.wrmsr(AMD_GLOBAL_STATUS, 0x3F)
    pmu.wrmsr(AMD_GLOBAL_STATUS, 0)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x5


def test_s5_1_global_status_host_write(make):
    """§5.1: host write replaces GlobalStatus; reserved bits fault."""
    pmu, _ = make(amd_v2(gp=6))
    pmu.wrmsr(AMD_GLOBAL_STATUS, 0x21, host=True)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x21
    pmu.wrmsr(AMD_GLOBAL_STATUS, 0x2, host=True)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x2
    faults(pmu.wrmsr, AMD_GLOBAL_STATUS, 1 << 6, host=True)
    faults(pmu.wrmsr, AMD_GLOBAL_STATUS, 1 << 62, host=True)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x2


@pytest.mark.parametrize("host", [False, True])
def test_s5_1_global_ctl_reserved_bits_cleared(make, host):
    """§5.1: PerfCntrGlobalCtl reserved bits are silently cleared."""
    pmu, _ = make(amd_v2(gp=4))
    pmu.wrmsr(AMD_GLOBAL_CTL, mask(64), host=host)
    assert pmu.rdmsr(AMD_GLOBAL_CTL) == 0xF
    pmu.wrmsr(AMD_GLOBAL_CTL, 0x5 | (1 << 40), host=host)
    assert pmu.rdmsr(AMD_GLOBAL_CTL) == 0x5


def test_s5_1_global_status_clr(make):
    """§5.1: GlobalStatusClr reads 0; guest write clears (no reserved check); host write ignored."""
    pmu, _ = make(amd_v2())
    pmu.wrmsr(AMD_GLOBAL_STATUS, 0x7, host=True)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS_CLR) == 0
    pmu.wrmsr(AMD_GLOBAL_STATUS_CLR, 0x3, host=True)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x7
    pmu.wrmsr(AMD_GLOBAL_STATUS_CLR, 0x1)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x6
    pmu.wrmsr(AMD_GLOBAL_STATUS_CLR, mask(64))
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0


def test_s5_1_global_status_set_6_12_backport(make):
    """§5.1 (6.12.117 backport): GlobalStatusSet reads 0, guest write ORs legal bits, no PMI."""
    pmu, _ = make(amd_v2(gp=4))
    assert pmu.rdmsr(AMD_GLOBAL_STATUS_SET) == 0
    pmu.wrmsr(AMD_GLOBAL_STATUS_SET, 0x2)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x2
    pmu.wrmsr(AMD_GLOBAL_STATUS_SET, mask(64))
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0xF
    assert pmu.service() is False


def test_s5_1_global_status_set_host_write_ignored(make):
    """§5.1: host writes to GlobalStatusSet are ignored."""
    pmu, _ = make(amd_v2())
    pmu.wrmsr(AMD_GLOBAL_STATUS_SET, 0x3, host=True)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0


def test_s5_1_global_ctl_gates_counting_simulated(make):
    """§6.1 on AMD v2: a counter counts only while its GlobalCtl bit is set."""
    pmu, sim = make(amd_v2())
    pmu.wrmsr(amd_ctl(1), sel(0xC0))
    pmu.wrmsr(AMD_GLOBAL_CTL, 0x1)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    assert pmu.rdmsr(amd_ctr(1)) == 0
    pmu.wrmsr(AMD_GLOBAL_CTL, 0x3)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    assert pmu.rdmsr(amd_ctr(1)) == 10


def test_s5_1_amd_v1_counters_globally_enabled_simulated(make):
    """§6.1: PerfMonV1 has no global control: EN alone makes a K7 counter count."""
    pmu, sim = make(amd_legacy())
    pmu.wrmsr(K7_EVNTSEL0 + 2, sel(0x76))
    pmu.service()
    sim.happen(0x76, 25, cpl=0)
    assert pmu.rdmsr(K7_PERFCTR0 + 2) == 25


def test_s5_2_reserved_clearing_applies_before_compare_simulated(make):
    """§5.1: 'if the result changed: store, reprogram' — a write differing only in cleared bits is a no-op."""
    pmu, sim = make(amd_core())
    pmu.wrmsr(amd_ctl(0), sel(0x76))
    pmu.service()
    sim.happen(0x76, 5, cpl=3)
    pmu.wrmsr(amd_ctl(0), sel(0x76) | (1 << 41))   # HostOnly vanishes: same value
    assert pmu.rdmsr(amd_ctl(0)) == sel(0x76)
    pmu.service()
    sim.happen(0x76, 5, cpl=3)
    assert pmu.rdmsr(amd_ctr(0)) == 10


def test_s5_2_int_and_en_bits_kept(make):
    """§5.2: EN (22) and INT (20) are kept."""
    pmu, _ = make(amd_legacy())
    pmu.wrmsr(K7_EVNTSEL0, 0x76 | EN | INT)
    assert pmu.rdmsr(K7_EVNTSEL0) == 0x76 | EN | INT
