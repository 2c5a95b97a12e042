"""Spec §9: software-emulated instructions/branches retired (6.9+ rules) and §8.2 emulated overflow."""
from __future__ import annotations

import pytest

from spec_helpers import (AMD_GLOBAL_CTL, EDGE, EN, FIXED_CTR0, GLOBAL_CTRL, GLOBAL_STATUS,
                          IA32_A_PMC0, IA32_PMC0, INV, K7_EVNTSEL0, K7_PERFCTR0, OS, PC,
                          PERFEVTSEL0, USR, EventFilter, amd_core, amd_ctl, amd_ctr, amd_legacy,
                          amd_v2, intel, intel_fixed_on, intel_gp_on, intel_v1, mask, sel)

M48 = mask(48)


# ---------------------------------------------------------------- §9.2 which counters

def test_s9_2_intel_instructions_and_branches(make):
    """§2.1 step 5 / §9.2: Intel selectors 0x00C0 (instructions) and 0x00C4 (branches)."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0x00C0)
    intel_gp_on(pmu, 1, 0x00C4)
    intel_gp_on(pmu, 2, 0x00C2)
    pmu.service()
    for _ in range(3):
        pmu.instruction_retired()
    for _ in range(2):
        pmu.branch_retired()
    assert pmu.rdmsr(IA32_PMC0) == 3
    assert pmu.rdmsr(IA32_PMC0 + 1) == 2
    assert pmu.rdmsr(IA32_PMC0 + 2) == 0


@pytest.mark.parametrize("factory", [amd_legacy, amd_core, amd_v2])
def test_s9_2_amd_instructions_and_branches(make, factory):
    """§2.1 step 5 / §9.2: AMD selectors 0x00C0 (instructions) and 0x00C2 (branches)."""
    pmu, _ = make(factory())
    pmu.wrmsr(K7_EVNTSEL0, sel(0x00C0))
    pmu.wrmsr(K7_EVNTSEL0 + 1, sel(0x00C2))
    pmu.wrmsr(K7_EVNTSEL0 + 2, sel(0x00C4))
    pmu.service()
    pmu.instruction_retired()
    pmu.branch_retired()
    pmu.branch_retired()
    assert pmu.rdmsr(K7_PERFCTR0) == 1
    assert pmu.rdmsr(K7_PERFCTR0 + 1) == 2
    assert pmu.rdmsr(K7_PERFCTR0 + 2) == 0


def test_s9_2_fixed0_counts_emulated_instructions(make):
    """§9.2 step 2: fixed 0's pseudo encoding 0x00C0 matches emulated instructions (Intel)."""
    pmu, _ = make(intel())
    intel_fixed_on(pmu, 0, 0x3)
    intel_fixed_on(pmu, 1, 0x3)
    pmu.service()
    pmu.instruction_retired()
    pmu.instruction_retired()
    pmu.branch_retired()
    assert pmu.rdmsr(FIXED_CTR0) == 2
    assert pmu.rdmsr(FIXED_CTR0 + 1) == 0


@pytest.mark.parametrize("extra", [EDGE, INV, 0x7F << 24, PC, EDGE | INV | (1 << 24)])
def test_s9_2_match_ignores_edge_inv_cmask_pc(make, extra):
    """§9.2 step 2: only event[7:0], umask and bits 35:32 are compared."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0x00C0, extra=extra)
    pmu.service()
    pmu.instruction_retired()
    assert pmu.rdmsr(IA32_PMC0) == 1


def test_s9_2_match_needs_umask(make):
    """§9.2 step 2: a different unit mask does not match."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0x01C0)
    intel_gp_on(pmu, 1, 0x01C4)
    pmu.service()
    pmu.instruction_retired()
    pmu.branch_retired()
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(IA32_PMC0 + 1) == 0


def test_s9_2_amd_match_includes_event_bits_35_32(make):
    """§9.2 step 2: on AMD EventSelect[11:8] must match too."""
    pmu, _ = make(amd_core())
    pmu.wrmsr(amd_ctl(0), sel(0xC0) | (1 << 32))
    pmu.wrmsr(amd_ctl(1), sel(0xC0))
    pmu.service()
    pmu.instruction_retired()
    assert pmu.rdmsr(amd_ctr(0)) == 0
    assert pmu.rdmsr(amd_ctr(1)) == 1


def test_s9_2_step1_globally_disabled_not_counted(make):
    """§9.2 step 1 (6.9+): with version >= 2 only counters enabled in GLOBAL_CTRL are candidates."""
    pmu, _ = make(intel())
    pmu.wrmsr(PERFEVTSEL0 + 1, sel(0xC0))
    intel_fixed_on(pmu, 0)
    pmu.wrmsr(GLOBAL_CTRL, 0)
    pmu.service()
    pmu.instruction_retired()
    assert pmu.rdmsr(IA32_PMC0 + 1) == 0
    assert pmu.rdmsr(FIXED_CTR0) == 0


def test_s9_2_step1_amd_global_ctl(make):
    """§9.2 step 1 on AMD PerfMonV2: GlobalCtl gates emulated counting."""
    pmu, _ = make(amd_v2())
    pmu.wrmsr(amd_ctl(0), sel(0xC0))
    pmu.wrmsr(amd_ctl(1), sel(0xC0))
    pmu.wrmsr(AMD_GLOBAL_CTL, 0x2)
    pmu.service()
    pmu.instruction_retired()
    assert pmu.rdmsr(amd_ctr(0)) == 0
    assert pmu.rdmsr(amd_ctr(1)) == 1


def test_s9_2_v1_all_valid_are_candidates(make):
    """§9.2 step 1: version 1: every valid counter is a candidate (no global control)."""
    pmu, _ = make(intel_v1())
    pmu.wrmsr(PERFEVTSEL0 + 3, sel(0xC4))
    pmu.service()
    pmu.branch_retired()
    assert pmu.rdmsr(IA32_PMC0 + 3) == 1


def test_s9_2_locally_disabled_not_counted(make):
    """§9.2 step 2: EN clear (GP) or an empty field (fixed) -> not counted."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0xC0, en=False)
    intel_fixed_on(pmu, 0, 0x8)                         # PMI bit only: not enabled
    pmu.service()
    pmu.instruction_retired()
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(FIXED_CTR0) == 0


@pytest.mark.parametrize("usr,os_,at0,at3", [
    (True, True, 1, 1), (False, True, 1, 0), (True, False, 0, 1), (False, False, 0, 0)])
def test_s9_2_step3_cpl_match_gp(make, usr, os_, at0, at3):
    """§9.2 step 3: both -> counted; neither (EN=1, OS=USR=0) -> NOT counted; one -> by CPL."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0xC0, usr=usr, os=os_)
    pmu.service()
    pmu.instruction_retired(cpl=0)
    assert pmu.rdmsr(IA32_PMC0) == at0
    pmu.instruction_retired(cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == at0 + at3
    pmu.instruction_retired(cpl=1)                       # CPL > 0 is user
    assert pmu.rdmsr(IA32_PMC0) == at0 + 2 * at3


@pytest.mark.parametrize("field,at0,at3", [(0x3, 1, 1), (0x1, 1, 0), (0x2, 0, 1), (0xB, 1, 1)])
def test_s9_2_step3_cpl_match_fixed(make, field, at0, at3):
    """§9.2 step 3: fixed counters use field bits 0 (OS) / 1 (USR)."""
    pmu, _ = make(intel())
    intel_fixed_on(pmu, 0, field)
    pmu.service()
    pmu.instruction_retired(cpl=0)
    pmu.instruction_retired(cpl=3)
    assert pmu.rdmsr(FIXED_CTR0) == at0 + at3


def test_s9_2_amd_cpl_match(make):
    """§9.2 step 3 on AMD: OS-only counts CPL0 branches only."""
    pmu, _ = make(amd_legacy())
    pmu.wrmsr(K7_EVNTSEL0, 0xC2 | OS | EN)
    pmu.wrmsr(K7_EVNTSEL0 + 1, 0xC2 | USR | EN)
    pmu.wrmsr(K7_EVNTSEL0 + 2, 0xC2 | EN)
    pmu.service()
    pmu.branch_retired(cpl=0)
    pmu.branch_retired(cpl=3)
    pmu.branch_retired(cpl=3)
    assert pmu.rdmsr(K7_PERFCTR0) == 1
    assert pmu.rdmsr(K7_PERFCTR0 + 1) == 2
    assert pmu.rdmsr(K7_PERFCTR0 + 2) == 0


def test_s9_2_filter_blocks_emulated_events(make):
    """§9.2 step 2 / §10.5: a denied event is not incremented by emulation."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    intel_gp_on(pmu, 1, 0xC4)
    pmu.set_event_filter(EventFilter(action="deny", events=[0xC0]))
    pmu.service()
    pmu.instruction_retired()
    pmu.branch_retired()
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(IA32_PMC0 + 1) == 1


def test_s9_2_fixed_filter_bitmap_blocks_emulated(make):
    """§10.4: a fixed counter denied by the bitmap does not count emulated instructions."""
    pmu, _ = make(intel())
    intel_fixed_on(pmu, 0)
    pmu.set_event_filter(EventFilter(action="deny", events=[], fixed_counter_bitmap=0x1))
    pmu.service()
    pmu.instruction_retired()
    assert pmu.rdmsr(FIXED_CTR0) == 0


# ---------------------------------------------------------------- §9.2 step 4, §8.2

def test_s9_2_step4_count_visible_before_service_and_after(make):
    """§9.2 step 4 / §7.4: emulated counts are part of read() at once and survive folding."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    pmu.instruction_retired()
    assert pmu.rdmsr(IA32_PMC0) == 11
    pmu.service()
    assert pmu.rdmsr(IA32_PMC0) == 11
    sim.happen(0xC0, 1, cpl=3)
    pmu.instruction_retired()
    assert pmu.rdpmc(0) == 13


def test_s9_counter_write_drops_unfolded_emulated_counts(make):
    """§7.5: a counter write sets emulated_counter = 0: read() == value afterwards."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    pmu.instruction_retired()
    pmu.instruction_retired()
    pmu.wrmsr(IA32_PMC0, 100)
    assert pmu.rdmsr(IA32_PMC0) == 100
    pmu.service()
    assert pmu.rdmsr(IA32_PMC0) == 100


def test_s8_2_emulated_overflow_with_int(make):
    """§8.2 / §7.3 step 3: an emulated wrap is detected at reprogram: status bit + PMI with INT."""
    pmu, _ = make(intel())
    pmu.wrmsr(IA32_A_PMC0 + 1, M48)
    intel_gp_on(pmu, 1, 0xC0, intr=True)
    pmu.service()
    pmu.instruction_retired()
    assert pmu.rdmsr(IA32_PMC0 + 1) == 0
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x2


def test_s8_2_emulated_overflow_without_int(make):
    """§8.3: emulated overflow without INT sets the status bit, no PMI."""
    pmu, _ = make(intel())
    intel_fixed_on(pmu, 0, 0x3)
    pmu.wrmsr(FIXED_CTR0, M48)
    pmu.service()
    pmu.instruction_retired()
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 1 << 32


def test_s8_2_emulated_overflow_fixed_pmi(make):
    """§8.2 on a fixed counter with the PMI bit."""
    pmu, _ = make(intel())
    intel_fixed_on(pmu, 0, 0xB)
    pmu.wrmsr(FIXED_CTR0, M48)
    pmu.service()
    pmu.instruction_retired()
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 1 << 32


def test_s8_2_emulated_overflow_amd_v1_pmi(make):
    """§8.2 / §8.3 on AMD PerfMonV1: emulated overflow with INT gives a PMI."""
    pmu, _ = make(amd_legacy())
    pmu.wrmsr(K7_PERFCTR0 + 1, M48)
    pmu.wrmsr(K7_EVNTSEL0 + 1, sel(0xC2, intr=True))
    pmu.service()
    pmu.branch_retired()
    assert pmu.service() is True
    assert pmu.rdmsr(K7_PERFCTR0 + 1) == 0


def test_s8_2_emulated_overflow_lost_when_not_counting(make):
    """§8.2: if the counter is not counting when reprogrammed, the emulated overflow is lost."""
    pmu, _ = make(intel())
    pmu.wrmsr(IA32_A_PMC0, M48)
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.service()
    pmu.instruction_retired()
    pmu.wrmsr(GLOBAL_CTRL, 0)                             # disabled before the reprogram
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    assert pmu.rdmsr(IA32_PMC0) == 0
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    assert pmu.service() is False                         # not re-reported later either
    assert pmu.rdmsr(GLOBAL_STATUS) == 0


def test_s8_2_emulated_plus_hardware_events_wrap(make):
    """§8.2 / §7.4: hardware events then one emulated event cross the wrap: one overflow."""
    pmu, sim = make(intel())
    pmu.wrmsr(IA32_A_PMC0, M48 - 4)                       # -5
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.service()
    sim.happen(0xC0, 4, cpl=3)
    assert pmu.service() is False
    pmu.instruction_retired()
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1
    assert pmu.rdmsr(IA32_PMC0) == 0
