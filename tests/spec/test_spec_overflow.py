"""Spec §8: overflow, GLOBAL_STATUS and the PMI decision returned by service()."""
from __future__ import annotations

import pytest

from spec_helpers import (AMD_GLOBAL_CTL, AMD_GLOBAL_STATUS, AMD_GLOBAL_STATUS_CLR, FIXED_CTR0,
                          FIXED_CTR_CTRL, GLOBAL_CTRL, GLOBAL_OVF_CTRL, GLOBAL_STATUS,
                          IA32_A_PMC0, IA32_PMC0, IN_TXCP, K7_EVNTSEL0, K7_PERFCTR0, PERFEVTSEL0,
                          amd_ctl, amd_ctr, amd_legacy, amd_v2, intel, intel_fixed_on,
                          intel_gp_on, intel_host, intel_v1, mask, sel)

M48 = mask(48)


def armed_gp(make, left, intr, i=0, model=None):
    """Intel GP counter i at -left counting 0xC0, serviced (event created with exact period)."""
    pmu, sim = make(model or intel())
    pmu.wrmsr(IA32_A_PMC0 + i, (M48 + 1 - left) & M48)
    intel_gp_on(pmu, i, 0xC0, intr=intr)
    pmu.service()
    return pmu, sim


# ---------------------------------------------------------------- §8.3 status and PMI

def test_s8_3_overflow_sets_status_without_int_simulated(make):
    """§8.3: an overflow sets GLOBAL_STATUS bit idx even without INT; no PMI."""
    pmu, sim = armed_gp(make, 5, intr=False, i=1)
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x2
    assert pmu.rdmsr(IA32_PMC0 + 1) == 0


def test_s8_3_overflow_with_int_raises_pmi_simulated(make):
    """§8.3: with INT the overflow requests a PMI, delivered once."""
    pmu, sim = armed_gp(make, 5, intr=True, i=2)
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x4
    assert pmu.service() is False                   # the request was consumed
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x4          # nothing clears status automatically


def test_s8_3_no_overflow_before_wrap_simulated(make):
    """§6.3: the event fires exactly when the guest counter wraps."""
    pmu, sim = armed_gp(make, 1000, intr=True)
    sim.happen(0xC0, 999, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    assert pmu.rdmsr(IA32_PMC0) == M48
    sim.happen(0xC0, 1, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


@pytest.mark.parametrize("field,pmi", [(0xB, True), (0x3, False)])
def test_s8_3_fixed_counter_overflow_simulated(make, field, pmi):
    """§8.3 / §4.3: fixed overflow sets bit 32+j; PMI only with the field's PMI bit."""
    pmu, sim = make(intel(fixed_width=48))
    pmu.wrmsr(FIXED_CTR0 + 2, M48 - 2)                # -3
    intel_fixed_on(pmu, 2, field)
    pmu.service()
    sim.happen(0x013C, 3, cpl=3)
    assert pmu.service() is pmi
    assert pmu.rdmsr(GLOBAL_STATUS) == 1 << 34


def test_s8_3_two_counters_overflow_simulated(make):
    """§8.3: each overflowing counter sets its own bit; one PMI decision per service()."""
    pmu, sim = make(intel())
    pmu.wrmsr(IA32_A_PMC0, M48 - 1)
    pmu.wrmsr(IA32_A_PMC0 + 3, M48 - 1)
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    intel_gp_on(pmu, 3, 0xC0, intr=False)
    pmu.service()
    sim.happen(0xC0, 2, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x9


def test_s8_3_overflow_v1_pmi_simulated(make):
    """§8.3: on v1 (no GLOBAL_STATUS MSR) an overflow with INT still raises a PMI."""
    pmu, sim = make(intel_v1())
    pmu.wrmsr(IA32_PMC0, 0xFFFF_FFFE)                  # guest: -2 sign-extended to 40 bits
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0, intr=True))
    pmu.service()
    sim.happen(0xC0, 2, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(IA32_PMC0) == 0


def test_s8_3_amd_v2_status_and_pmi_simulated(make):
    """§8.3 on AMD PerfMonV2: GlobalStatus bit set; PMI only with INT."""
    pmu, sim = make(amd_v2())
    pmu.wrmsr(amd_ctr(4), M48 - 2)                    # -3
    pmu.wrmsr(amd_ctl(4), sel(0x76))
    pmu.wrmsr(amd_ctr(5), M48 - 3)                    # -4
    pmu.wrmsr(amd_ctl(5), sel(0x76, intr=True))
    pmu.service()
    sim.happen(0x76, 3, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x10
    sim.happen(0x76, 1, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0x30
    pmu.wrmsr(AMD_GLOBAL_STATUS_CLR, 0x30)
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0


@pytest.mark.parametrize("intr", [True, False])
def test_s8_3_amd_v1_pmi_only_with_int_simulated(make, intr):
    """§8.3: AMD PerfMonV1 overflow: PMI iff INT."""
    pmu, sim = make(amd_legacy())
    pmu.wrmsr(K7_PERFCTR0 + 3, M48)
    pmu.wrmsr(K7_EVNTSEL0 + 3, sel(0x76, intr=intr))
    pmu.service()
    sim.happen(0x76, 1, cpl=0)
    assert pmu.service() is intr


def test_s8_1_rearm_after_overflow_simulated(make):
    """§8.1 step 2: after an overflow the counter is re-armed from its wrapped value."""
    pmu, sim = armed_gp(make, 4, intr=True)
    sim.happen(0xC0, 4, cpl=3)
    assert pmu.service() is True
    pmu.wrmsr(GLOBAL_OVF_CTRL, 0x1)
    pmu.wrmsr(IA32_A_PMC0, M48 - 1)                    # -2 (quirk-free: the event was just resumed)
    sim.happen(0xC0, 2, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


# ---------------------------------------------------------------- §8.1 drop when pending

def test_s8_1_overflow_dropped_when_reprogram_pending_simulated(make):
    """§8.1 step 1: an overflow whose counter is already queued for reprogram is dropped."""
    pmu, sim = armed_gp(make, 5, intr=True)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0, intr=True, os=False))   # config change: reprogram pending
    sim.happen(0xC0, 5, cpl=3)                                # hardware overflow now
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    assert pmu.rdmsr(IA32_PMC0) == 0                          # the value still wrapped


def test_s8_1_overflow_not_dropped_without_pending_simulated(make):
    """§8.1 control: the same overflow with nothing pending is delivered."""
    pmu, sim = armed_gp(make, 5, intr=True)
    sim.happen(0xC0, 5, cpl=3)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0, intr=True, os=False))
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s8_1_drop_applies_to_global_ctrl_pending_simulated(make):
    """§8.1: a GLOBAL_CTRL change also queues the counter, so its overflow is dropped."""
    pmu, sim = armed_gp(make, 3, intr=True)
    pmu.wrmsr(GLOBAL_CTRL, 0xF & ~0x1)
    pmu.wrmsr(GLOBAL_CTRL, 0xF)                                 # pending, config back to same
    sim.happen(0xC0, 3, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0


# ---------------------------------------------------------------- §8.5 who clears what

def test_s8_5_ovf_ctrl_clears_status_after_overflow_simulated(make):
    """§8.5: the guest clears overflow bits with OVF_CTRL; other bits stay."""
    pmu, sim = make(intel())
    pmu.wrmsr(IA32_A_PMC0, M48)
    pmu.wrmsr(IA32_A_PMC0 + 1, M48)
    intel_gp_on(pmu, 0, 0xC0)
    intel_gp_on(pmu, 1, 0xC0)
    pmu.service()
    sim.happen(0xC0, 1, cpl=3)
    pmu.service()
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x3
    pmu.wrmsr(GLOBAL_OVF_CTRL, 0x2)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s8_5_host_status_write_raises_no_pmi(make):
    """§8.5: a host write of GLOBAL_STATUS replaces it and raises no PMI."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.wrmsr(GLOBAL_STATUS, 0x1, host=True)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s8_no_overflow_lost_across_pause_resume_simulated(make):
    """§7.4 / §8: a pause/resume recalibrates the period to the ticks left; the overflow is on time."""
    pmu, sim = armed_gp(make, 10, intr=True)
    sim.happen(0xC0, 6, cpl=3)
    pmu.wrmsr(GLOBAL_CTRL, 0)
    pmu.service()
    sim.happen(0xC0, 100, cpl=3)                               # not counted
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    pmu.service()
    sim.happen(0xC0, 3, cpl=3)
    assert pmu.service() is False
    sim.happen(0xC0, 1, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s8_no_overflow_lost_across_reconfig_simulated(make):
    """§7.3: a recreated event (new config) gets the period left before the wrap."""
    pmu, sim = armed_gp(make, 10, intr=True)
    sim.happen(0xC0, 6, cpl=3)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC4, intr=True))
    pmu.service()
    sim.happen(0xC4, 3, cpl=3)
    assert pmu.service() is False
    sim.happen(0xC4, 1, cpl=3)
    assert pmu.service() is True


def test_s8_3_amd_global_ctl_off_counter_does_not_overflow_simulated(make):
    """§6.1 + §8: a globally disabled AMD v2 counter neither counts nor overflows."""
    pmu, sim = make(amd_v2())
    pmu.wrmsr(amd_ctr(0), M48)
    pmu.wrmsr(amd_ctl(0), sel(0x76, intr=True))
    pmu.wrmsr(AMD_GLOBAL_CTL, 0x3E)
    pmu.service()
    sim.happen(0x76, 5, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0
    assert pmu.rdmsr(amd_ctr(0)) == M48


# ---------------------------------------------------------------- §7.1 what marks a counter pending,
# observed through §8.1 (an overflow is dropped only when its counter is already pending)

def test_s4_1_unchanged_perfevtsel_write_requests_nothing_simulated(make):
    """§4.1 / §7.1: rewriting PERFEVTSEL with its current value queues no reprogram."""
    pmu, sim = armed_gp(make, 5, intr=True)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0, intr=True))
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s4_1_unchanged_global_ctrl_write_requests_nothing_simulated(make):
    """§4.1: a GLOBAL_CTRL write that leaves it unchanged has no side effects."""
    pmu, sim = armed_gp(make, 5, intr=True)
    pmu.wrmsr(GLOBAL_CTRL, pmu.rdmsr(GLOBAL_CTRL))
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.service() is True


def test_s7_1_global_ctrl_queues_only_changed_indices_simulated(make):
    """§7.1: a GLOBAL_CTRL change queues the indices in old XOR new only."""
    pmu, sim = armed_gp(make, 5, intr=True)
    pmu.wrmsr(GLOBAL_CTRL, pmu.rdmsr(GLOBAL_CTRL) ^ 0x2)     # GP1 only
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s7_1_fixed_ctrl_queues_only_changed_fields_simulated(make):
    """§7.1: a FIXED_CTR_CTRL change queues only fixed counters whose field changed."""
    pmu, sim = make(intel())
    pmu.wrmsr(FIXED_CTR0, M48 - 2)                             # -3
    intel_fixed_on(pmu, 0, 0xB)
    pmu.service()
    pmu.wrmsr(FIXED_CTR_CTRL, 0xB | (0x2 << 4))                # fixed 1's field only
    sim.happen(0x00C0, 3, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 1 << 32


def test_s7_1_fixed_ctrl_changed_field_is_pending_simulated(make):
    """§7.1 + §8.1: changing fixed 0's own field queues it, so its overflow is dropped."""
    pmu, sim = make(intel())
    pmu.wrmsr(FIXED_CTR0, M48 - 2)
    intel_fixed_on(pmu, 0, 0xB)
    pmu.service()
    pmu.wrmsr(FIXED_CTR_CTRL, 0xA)                             # USR only now
    sim.happen(0x00C0, 3, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0


def test_s7_1_counter_write_is_not_pending_simulated(make):
    """§7.1: a counter write queues nothing — an overflow right after it is delivered."""
    pmu, sim = armed_gp(make, 50, intr=True)
    pmu.wrmsr(IA32_A_PMC0, M48 - 4)                            # -5, nothing counted yet: exact
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s6_3_in_txcp_counter_never_overflows_simulated(make):
    """§6.3: with IN_TXCP (host TSX) the event is a pure counting event: no overflow, no PMI."""
    pmu, sim = make(intel(tsx=True), host=intel_host(tsx=True))
    pmu.wrmsr(IA32_A_PMC0 + 2, M48)
    pmu.wrmsr(PERFEVTSEL0 + 2, sel(0xC0, intr=True) | IN_TXCP)
    pmu.service()
    sim.happen(0xC0, 3, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    assert pmu.rdmsr(IA32_PMC0 + 2) == 2


def test_s7_5_period_quirk_amd_simulated(make):
    """§7.5 quirk on AMD: the overflow after a write to a running counter comes N events late."""
    pmu, sim = make(amd_legacy())
    pmu.wrmsr(K7_EVNTSEL0, sel(0x76, intr=True))
    pmu.service()
    sim.happen(0x76, 40, cpl=3)                                # N = 40
    pmu.wrmsr(K7_PERFCTR0, M48 - 1)                            # -2
    sim.happen(0x76, 2, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(K7_PERFCTR0) == 0
    sim.happen(0x76, 39, cpl=3)
    assert pmu.service() is False
    sim.happen(0x76, 1, cpl=3)
    assert pmu.service() is True
