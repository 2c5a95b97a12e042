"""Spec §6.1 (when a counter counts) and §7 (reprogram, pause/resume, counter writes,
the §7.5 period quirk, lazy release, reset), observed through simulated hardware events."""
from __future__ import annotations

import pytest

from spec_helpers import (AMD_GLOBAL_CTL, AMD_GLOBAL_STATUS, EDGE, EN, FIXED_CTR0,
                          FIXED_CTR_CTRL, FW_WRITE, GLOBAL_CTRL, GLOBAL_STATUS, IA32_A_PMC0,
                          IA32_PMC0, INV, K7_EVNTSEL0, K7_PERFCTR0, OS, PERF_CAPABILITIES,
                          PERFEVTSEL0, USR, amd_core, amd_ctl, amd_ctr, amd_legacy, amd_v2, intel,
                          intel_fixed_on, intel_gp_on, intel_v1, mask, sel)


# ---------------------------------------------------------------- §6.1 counting conditions

def test_s6_1_gp_counts_when_enabled_simulated(make):
    """§6.1: globally + locally enabled GP counter counts its event (USR|OS: any CPL)."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    sim.happen(0xC0, 5, cpl=0)
    assert pmu.rdmsr(IA32_PMC0) == 15


def test_s6_1_other_events_not_counted_simulated(make):
    """§6.1 / contract: a GP counter counts only events whose code equals its own."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0x412E)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    sim.happen(0x012E, 10, cpl=3)             # same event select, other umask
    sim.happen(0x412E, 3, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 3


def test_s6_1_globally_disabled_does_not_count_simulated(make):
    """§6.1 cond. 1: with its GLOBAL_CTRL bit clear a GP counter does not count."""
    pmu, sim = make(intel())
    pmu.wrmsr(PERFEVTSEL0 + 1, sel(0xC0))
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    assert pmu.rdmsr(IA32_PMC0 + 1) == 0


def test_s6_1_locally_disabled_does_not_count_simulated(make):
    """§6.1 cond. 2: EN clear -> no counting."""
    pmu, sim = make(intel())
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0, en=False))
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 0


@pytest.mark.parametrize("usr,os_,cpl0,cpl3", [
    (True, False, 0, 7), (False, True, 5, 0), (True, True, 5, 7), (False, False, 0, 0)])
def test_s6_2_usr_os_select_cpl_simulated(make, usr, os_, cpl0, cpl3):
    """§6.2: exclude_user = !USR, exclude_kernel = !OS."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 2, 0xC0, usr=usr, os=os_)
    pmu.service()
    sim.happen(0xC0, 5, cpl=0)
    sim.happen(0xC0, 7, cpl=3)
    assert pmu.rdmsr(IA32_PMC0 + 2) == cpl0 + cpl3


def test_s4_4_v1_every_counter_globally_enabled_simulated(make):
    """§4.4 / §6.1: version 1 has no global control, EN alone enables."""
    pmu, sim = make(intel_v1())
    pmu.wrmsr(PERFEVTSEL0 + 3, sel(0x3C))
    pmu.service()
    sim.happen(0x3C, 1000, cpl=3)
    assert pmu.rdmsr(IA32_PMC0 + 3) == 1000


@pytest.mark.parametrize("j,event", [(0, 0x00C0), (1, 0x003C), (2, 0x013C), (2, 0x0300)])
def test_s6_5_fixed_counters_count_architectural_events_simulated(make, j, event):
    """§6.5 / contract: fixed 0 instructions, 1 core cycles, 2 reference cycles (0x013c, 0x0300)."""
    pmu, sim = make(intel())
    intel_fixed_on(pmu, j, 0x3)
    pmu.service()
    sim.happen(event, 17, cpl=3)
    sim.happen(0x00C4, 50, cpl=3)             # branches: no fixed counter counts them
    assert pmu.rdmsr(FIXED_CTR0 + j) == 17
    for k in range(3):
        if k != j:
            assert pmu.rdmsr(FIXED_CTR0 + k) == 0


@pytest.mark.parametrize("field,cpl0,cpl3", [(0x1, 4, 0), (0x2, 0, 6), (0x3, 4, 6),
                                             (0x8, 0, 0), (0x9, 4, 0), (0x0, 0, 0)])
def test_s4_3_fixed_field_enables_and_cpl_simulated(make, field, cpl0, cpl3):
    """§4.3: field bit 0 = OS, bit 1 = USR enable the counter; the PMI bit alone does not."""
    pmu, sim = make(intel())
    intel_fixed_on(pmu, 0, field)
    pmu.service()
    sim.happen(0x00C0, 4, cpl=0)
    sim.happen(0x00C0, 6, cpl=3)
    assert pmu.rdmsr(FIXED_CTR0) == cpl0 + cpl3


def test_s6_1_fixed_needs_global_enable_simulated(make):
    """§6.1: a fixed counter counts only with its GLOBAL_CTRL bit 32+j (off after refresh)."""
    pmu, sim = make(intel())
    pmu.wrmsr(FIXED_CTR_CTRL, 0x3)
    pmu.service()
    sim.happen(0x00C0, 9, cpl=3)
    assert pmu.rdmsr(FIXED_CTR0) == 0
    pmu.wrmsr(GLOBAL_CTRL, pmu.rdmsr(GLOBAL_CTRL) | (1 << 32))
    pmu.service()
    sim.happen(0x00C0, 9, cpl=3)
    assert pmu.rdmsr(FIXED_CTR0) == 9


def test_s6_1_amd_event_select_high_bits_simulated(make):
    """§5.2 / contract: AMD EventSelect[11:8] (bits 35:32) is part of the event code."""
    pmu, sim = make(amd_core())
    pmu.wrmsr(amd_ctl(0), sel(0xC0) | (1 << 32))
    pmu.wrmsr(amd_ctl(1), sel(0xC0))
    pmu.service()
    sim.happen(0x1_0000_00C0, 3, cpl=3)
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.rdmsr(amd_ctr(0)) == 3
    assert pmu.rdmsr(amd_ctr(1)) == 5


def test_s6_2_cmask_inv_edge_do_not_change_simulated_count(make):
    """Contract: the simulated backend counts n events whatever cmask/inv/edge say."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0, extra=EDGE | INV | (3 << 24))
    pmu.service()
    sim.happen(0xC0, 8, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 8


def test_contract_reads_include_unserviced_events_simulated(make):
    """Contract: rdmsr sees every event that happened, serviced or not."""
    pmu, sim = make(amd_legacy())
    pmu.wrmsr(K7_EVNTSEL0, sel(0x76))
    pmu.service()
    sim.happen(0x76, 3, cpl=3)
    assert pmu.rdmsr(K7_PERFCTR0) == 3
    sim.happen(0x76, 4, cpl=3)
    assert pmu.rdmsr(K7_PERFCTR0, host=True) == 7
    pmu.service()
    assert pmu.rdmsr(K7_PERFCTR0) == 7


# ---------------------------------------------------------------- §7.3/§7.4 pause, resume, recreate

def test_s7_4_pause_resume_keeps_count_simulated(make):
    """§7.4: pausing (global disable) folds the count; resume continues from it."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    pmu.wrmsr(GLOBAL_CTRL, 0)
    pmu.service()
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 10
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    pmu.service()
    sim.happen(0xC0, 7, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 17


def test_s7_3_new_config_keeps_value_and_counts_new_event_simulated(make):
    """§7.3 step 6: a changed selector recreates the event; the counter value is kept."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC4))
    pmu.service()
    sim.happen(0xC0, 100, cpl=3)
    sim.happen(0xC4, 3, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 13


def test_s7_2_many_writes_one_service_simulated(make):
    """§7.2: several selector writes before one service(): the last accepted config counts."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 1, 0xC0)
    pmu.wrmsr(PERFEVTSEL0 + 1, sel(0xC4))
    pmu.wrmsr(PERFEVTSEL0 + 1, sel(0x3C))
    pmu.service()
    sim.happen(0xC0, 5, cpl=3)
    sim.happen(0xC4, 6, cpl=3)
    sim.happen(0x3C, 7, cpl=3)
    assert pmu.rdmsr(IA32_PMC0 + 1) == 7


def test_s7_1_fixed_ctrl_change_reprograms_only_changed_fields_simulated(make):
    """§7.1: a FIXED_CTR_CTRL write reprograms the fixed counters whose field changed."""
    pmu, sim = make(intel())
    intel_fixed_on(pmu, 0, 0x3)
    intel_fixed_on(pmu, 1, 0x3)
    pmu.service()
    sim.happen(0x00C0, 4, cpl=3)
    sim.happen(0x003C, 4, cpl=3)
    pmu.wrmsr(FIXED_CTR_CTRL, 0x3 | (0x1 << 4))     # fixed 1: OS only now
    pmu.service()
    sim.happen(0x00C0, 4, cpl=3)
    sim.happen(0x003C, 4, cpl=3)
    assert pmu.rdmsr(FIXED_CTR0) == 8
    assert pmu.rdmsr(FIXED_CTR0 + 1) == 4


# ---------------------------------------------------------------- §7.5 counter writes

@pytest.mark.parametrize("msr,host", [(IA32_PMC0, True), (IA32_A_PMC0, False)])
def test_s7_5_write_running_counter_reads_back_then_counts_simulated(make, msr, host):
    """§7.5: after a write read(counter) == value, and counting continues from it."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    sim.happen(0xC0, 100, cpl=3)
    pmu.wrmsr(msr, 5000, host=host)
    assert pmu.rdmsr(IA32_PMC0) == 5000
    sim.happen(0xC0, 25, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 5025
    pmu.service()
    assert pmu.rdmsr(IA32_PMC0) == 5025


def test_s7_5_write_fixed_running_counter_simulated(make):
    """§7.5 for fixed counters."""
    pmu, sim = make(intel())
    intel_fixed_on(pmu, 1)
    pmu.service()
    sim.happen(0x003C, 1000, cpl=3)
    pmu.wrmsr(FIXED_CTR0 + 1, 10)
    sim.happen(0x003C, 1, cpl=3)
    assert pmu.rdmsr(FIXED_CTR0 + 1) == 11


def test_s7_5_period_quirk_overflow_late_after_write_simulated(make):
    """§7.5 quirk: a write to a running counter that had counted N arms period (N - val):
    the overflow arrives N events after the architectural wrap."""
    pmu, sim = make(intel(gp_width=48))
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.service()
    sim.happen(0xC0, 100, cpl=3)                      # N = 100 since creation
    pmu.wrmsr(IA32_PMC0, 0xFFFF_FFF6)                  # guest: sign-extended to -10
    assert pmu.rdmsr(IA32_PMC0) == mask(48) - 9
    assert pmu.service() is False
    sim.happen(0xC0, 10, cpl=3)                       # architectural wrap point
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    sim.happen(0xC0, 99, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    sim.happen(0xC0, 1, cpl=3)                        # 110 = (N - val) events after the write
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1
    assert pmu.rdmsr(IA32_PMC0) == 100


def test_s7_5_period_quirk_fixed_counter_simulated(make):
    """§7.5 quirk on a fixed counter (PMI bit in the field)."""
    pmu, sim = make(intel(fixed_width=48))
    intel_fixed_on(pmu, 0, 0xB)
    pmu.service()
    sim.happen(0x00C0, 50, cpl=3)
    pmu.wrmsr(FIXED_CTR0, mask(48) - 19)              # -20
    sim.happen(0x00C0, 20, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    sim.happen(0x00C0, 50, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 1 << 32


def test_s7_5_write_without_live_event_is_exact_simulated(make):
    """§7.5: with no live event nothing is re-armed; creation uses the exact value."""
    pmu, sim = make(intel())
    pmu.wrmsr(IA32_A_PMC0, mask(48) - 9)              # -10, before the event exists
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.service()
    sim.happen(0xC0, 9, cpl=3)
    assert pmu.service() is False
    sim.happen(0xC0, 1, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s7_5_write_while_paused_is_exact_simulated(make):
    """§7.5: a write to a paused counter takes effect exactly at the next resume."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.service()
    sim.happen(0xC0, 100, cpl=3)
    pmu.wrmsr(GLOBAL_CTRL, 0)
    pmu.service()                                      # paused, count folded
    pmu.wrmsr(IA32_A_PMC0, mask(48) - 9)
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    pmu.service()                                      # resume: period from the exact value
    sim.happen(0xC0, 9, cpl=3)
    assert pmu.service() is False
    sim.happen(0xC0, 1, cpl=3)
    assert pmu.service() is True


def test_s7_5_reprogram_resynchronises_period_simulated(make):
    """§7.5: the next pause/resume (any reprogram) folds perf's count and re-arms exactly."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.service()
    sim.happen(0xC0, 100, cpl=3)
    pmu.wrmsr(IA32_A_PMC0, mask(48) - 9)              # quirk: would fire 100 late
    pmu.wrmsr(GLOBAL_CTRL, 0)                          # toggle: reprogram pending
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    pmu.service()                                      # pause + resume (same config)
    sim.happen(0xC0, 9, cpl=3)
    assert pmu.service() is False
    sim.happen(0xC0, 1, cpl=3)
    assert pmu.service() is True
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s7_1_counter_write_does_not_reprogram_simulated(make):
    """§7.1: a counter write requests no reprogram — the quirky period stays armed."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0, intr=True)
    pmu.service()
    sim.happen(0xC0, 30, cpl=3)
    pmu.wrmsr(IA32_A_PMC0, mask(48) - 4)              # -5, N = 30: fires after 35
    pmu.wrmsr(IA32_A_PMC0, mask(48) - 4)              # again: offset -35, N still 30 -> 35
    for _ in range(3):
        assert pmu.service() is False
    sim.happen(0xC0, 34, cpl=3)
    assert pmu.service() is False
    sim.happen(0xC0, 1, cpl=3)
    assert pmu.service() is True


# ---------------------------------------------------------------- §7.6 lazy release

def test_s7_6_lazy_release_keeps_value_simulated(make):
    """§7.6: cleanup stops (folds, releases) unused disabled counters; the value survives."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0, en=False))
    pmu.service()
    pmu.tick()
    pmu.service()
    pmu.tick()
    pmu.service()                                      # not in use for a whole slice: released
    assert pmu.rdmsr(IA32_PMC0) == 10
    sim.happen(0xC0, 10, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 10
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0))
    pmu.service()
    sim.happen(0xC0, 5, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 15


def test_s7_6_enabled_counters_survive_ticks_simulated(make):
    """§7.6: locally enabled counters are never released by cleanup."""
    pmu, sim = make(amd_legacy())
    pmu.wrmsr(K7_EVNTSEL0 + 1, sel(0x76))
    pmu.service()
    for _ in range(3):
        pmu.tick()
        pmu.service()
        sim.happen(0x76, 10, cpl=3)
    assert pmu.rdmsr(K7_PERFCTR0 + 1) == 30


# ---------------------------------------------------------------- §7.7 reset

def test_s7_7_reset_clears_counters_and_controls(make):
    """§7.7: reset: counters 0, GP selectors 0, FIXED_CTR_CTRL = GLOBAL_CTRL = GLOBAL_STATUS = 0."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    intel_fixed_on(pmu, 0)
    pmu.wrmsr(IA32_PMC0 + 1, 99)
    pmu.wrmsr(GLOBAL_STATUS, 0x3, host=True)
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    pmu.reset()
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(IA32_PMC0 + 1) == 0
    assert pmu.rdmsr(FIXED_CTR0) == 0
    assert pmu.rdmsr(PERFEVTSEL0) == 0
    assert pmu.rdmsr(FIXED_CTR_CTRL) == 0
    assert pmu.rdmsr(GLOBAL_CTRL) == 0
    assert pmu.rdmsr(GLOBAL_STATUS) == 0
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(FIXED_CTR0) == 0


def test_s7_7_reset_keeps_model_and_perf_capabilities(make):
    """§7.7: reset is not a refresh: the counter set and PERF_CAPABILITIES are unchanged."""
    pmu, _ = make(intel(gp=4, pdcm=True, perf_caps=FW_WRITE))
    pmu.reset()
    assert pmu.rdmsr(PERF_CAPABILITIES) == FW_WRITE
    pmu.wrmsr(IA32_A_PMC0 + 3, 1 << 47)
    assert pmu.rdmsr(IA32_PMC0 + 3) == 1 << 47


def test_s7_7_reset_amd(make):
    """§7.7 on AMD: counters and selectors 0."""
    pmu, sim = make(amd_core())
    pmu.wrmsr(amd_ctl(5), sel(0xC0))
    pmu.wrmsr(amd_ctr(5), 1234)
    pmu.service()
    sim.happen(0xC0, 1, cpl=0)
    pmu.reset()
    assert pmu.rdmsr(amd_ctl(5)) == 0
    assert pmu.rdmsr(amd_ctr(5)) == 0


def test_close_is_idempotent(make):
    """Contract: close() is idempotent."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    pmu.close()
    pmu.close()


def test_s7_2_service_with_nothing_pending_changes_nothing_simulated(make):
    """§7.2: service() with nothing pending and no overflow returns False and keeps counting."""
    pmu, sim = make(intel())
    pmu.wrmsr(PERFEVTSEL0, OS | USR | EN | 0xC0)
    pmu.service()
    for k in range(1, 4):
        sim.happen(0xC0, 2, cpl=3)
        assert pmu.service() is False
        assert pmu.rdmsr(IA32_PMC0) == 2 * k
    assert pmu.rdmsr(PERFEVTSEL0) == OS | USR | EN | 0xC0


def test_s7_7_reset_amd_v2_global_msrs(make):
    """§7.7: reset clears GlobalCtl and GlobalStatus too (no GP(nr_gp) re-enable: that is refresh)."""
    pmu, _ = make(amd_v2())
    pmu.wrmsr(AMD_GLOBAL_STATUS, 0x3, host=True)
    assert pmu.rdmsr(AMD_GLOBAL_CTL) == 0x3F
    pmu.reset()
    assert pmu.rdmsr(AMD_GLOBAL_CTL) == 0
    assert pmu.rdmsr(AMD_GLOBAL_STATUS) == 0


def test_backing_report_names_each_programmed_counter_simulated(make):
    """Contract: backing_report() lists (counter, guest event, backing, why-not) per counter."""
    pmu, _ = make(intel())
    intel_gp_on(pmu, 0, 0xC0)
    intel_gp_on(pmu, 3, 0x3C)
    intel_fixed_on(pmu, 1)
    pmu.service()
    report = pmu.backing_report()
    assert all(len(row) == 4 for row in report)
    names = [row[0] for row in report]
    assert len(names) == len(set(names))
    assert len(report) >= 3
    backed = [row for row in report if row[2]]
    assert len(backed) >= 3                     # the simulated hardware backs all three
