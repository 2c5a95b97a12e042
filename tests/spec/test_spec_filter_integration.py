"""Spec §10: the PMU event filter — validation (§10.2), evaluation (§10.4) and
its effect on counting (§10.5), observed with simulated hardware events."""
from __future__ import annotations

import errno

import pytest

from spec_helpers import (FIXED_CTR0, GLOBAL_STATUS, IA32_A_PMC0, IA32_PMC0, INT, K7_EVNTSEL0,
                          K7_PERFCTR0, PERFEVTSEL0, EventFilter, FilterError, amd_core, amd_ctl,
                          amd_ctr, amd_legacy, intel, intel_fixed_on, intel_gp_on, sel)

MASKED = 1   # KVM_PMU_EVENT_FLAG_MASKED_EVENTS


def masked(event, mask, match, exclude=False):
    """§10.1 masked entry encoding."""
    return ((event & 0xFF) | ((event & 0xF00) << 24) | (mask << 56) | (match << 8)
            | (int(exclude) << 55))


def set_filter(pmu, **kw):
    pmu.set_event_filter(EventFilter(**kw))


def counting_intel(make, events):
    """Intel PMU with GP counter i counting events[i] (USR|OS), serviced."""
    pmu, sim = make(intel(gp=max(4, len(events))))
    for i, ev in enumerate(events):
        intel_gp_on(pmu, i, ev)
    pmu.service()
    return pmu, sim


def fire(sim, events, n=10):
    for ev in events:
        sim.happen(ev, n, cpl=3)


# ---------------------------------------------------------------- §10.4 GP evaluation

def test_s10_4_deny_list_simulated(make):
    """§10.4: DENY: listed events do not count, others do."""
    evs = [0x00C0, 0x00C4, 0x003C]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="deny", events=[0x00C4])
    pmu.service()
    fire(sim, evs)
    assert [pmu.rdmsr(IA32_PMC0 + i) for i in range(3)] == [10, 0, 10]


def test_s10_4_allow_list_simulated(make):
    """§10.4: ALLOW: only listed events count."""
    evs = [0x00C0, 0x00C4, 0x003C]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="allow", events=[0x00C0, 0x003C])
    pmu.service()
    fire(sim, evs)
    assert [pmu.rdmsr(IA32_PMC0 + i) for i in range(3)] == [10, 0, 10]


def test_s10_4_legacy_entry_matches_exact_umask_simulated(make):
    """§10.3: a legacy entry becomes a masked entry with umask mask 0xFF (exact umask)."""
    evs = [0x412E, 0x4F2E]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="allow", events=[0x412E])
    pmu.service()
    fire(sim, evs)
    assert [pmu.rdmsr(IA32_PMC0 + i) for i in range(2)] == [10, 0]


def test_s10_4_selector_bits_irrelevant_simulated(make):
    """§10.4: USR/OS/INT/CMASK/... of the selector play no part in the match."""
    pmu, sim = make(intel())
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0, intr=True, extra=(1 << 24)))
    pmu.wrmsr(PERFEVTSEL0 + 1, sel(0xC0, os=False))
    pmu.service()
    set_filter(pmu, action="deny", events=[0x00C0])
    pmu.service()
    sim.happen(0xC0, 10, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(IA32_PMC0 + 1) == 0


def test_s10_4_masked_include_simulated(make):
    """§10.4: masked entry matches when (umask & mask) == match."""
    evs = [0x10C0, 0x13C0, 0x20C0, 0x00C0]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="allow", events=[masked(0xC0, 0xF0, 0x10)], flags=MASKED)
    pmu.service()
    fire(sim, evs)
    assert [pmu.rdmsr(IA32_PMC0 + i) for i in range(4)] == [10, 10, 0, 0]


def test_s10_4_masked_exclude_simulated(make):
    """§10.4: hit = some include matches and no exclude matches."""
    evs = [0x10C0, 0x13C0, 0x20C0, 0x00C0]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="allow", flags=MASKED,
               events=[masked(0xC0, 0x00, 0x00), masked(0xC0, 0xFF, 0x13, exclude=True)])
    pmu.service()
    fire(sim, evs)
    assert [pmu.rdmsr(IA32_PMC0 + i) for i in range(4)] == [10, 0, 10, 10]


def test_s10_4_masked_exclude_deny_simulated(make):
    """§10.4: DENY with an exclude: allowed iff not hit."""
    evs = [0x10C0, 0x13C0, 0x00C4]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="deny", flags=MASKED,
               events=[masked(0xC0, 0x00, 0x00), masked(0xC0, 0xFF, 0x13, exclude=True)])
    pmu.service()
    fire(sim, evs)
    assert [pmu.rdmsr(IA32_PMC0 + i) for i in range(3)] == [0, 10, 10]


def test_s10_4_exclude_only_never_hits_simulated(make):
    """§10.4: with no include entry nothing is hit: ALLOW denies everything."""
    evs = [0x00C0]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="allow", flags=MASKED, events=[masked(0xC0, 0, 0, exclude=True)])
    pmu.service()
    fire(sim, evs)
    assert pmu.rdmsr(IA32_PMC0) == 0


def test_s10_4_amd_event_select_bits_35_32_simulated(make):
    """§10.4: on AMD the event select includes bits 35:32."""
    pmu, sim = make(amd_core())
    pmu.wrmsr(amd_ctl(0), sel(0xC0) | (1 << 32))
    pmu.wrmsr(amd_ctl(1), sel(0xC0))
    pmu.service()
    set_filter(pmu, action="deny", events=[0x1_0000_00C0])
    pmu.service()
    sim.happen(0x1_0000_00C0, 4, cpl=3)
    sim.happen(0xC0, 6, cpl=3)
    assert pmu.rdmsr(amd_ctr(0)) == 0
    assert pmu.rdmsr(amd_ctr(1)) == 6


def test_s10_4_amd_masked_bits_35_32_accepted(make):
    """§10.2 step 7: event-select bits 35:32 are legal in masked entries on AMD."""
    pmu, sim = make(amd_core())
    pmu.wrmsr(amd_ctl(0), sel(0xC0) | (1 << 32))
    pmu.service()
    set_filter(pmu, action="deny", flags=MASKED, events=[masked(0x1C0, 0, 0)])
    pmu.service()
    sim.happen(0x1_0000_00C0, 4, cpl=3)
    assert pmu.rdmsr(amd_ctr(0)) == 0


def test_s10_2_step8_legacy_impossible_entries_dropped_simulated(make):
    """§10.2 step 8: legacy entries with bits outside event/umask are silently dropped."""
    evs = [0x00C0]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="allow", events=[0x00C0 | (1 << 16)])
    pmu.service()
    fire(sim, evs)
    assert pmu.rdmsr(IA32_PMC0) == 0                  # dropped: nothing allowed


def test_s10_2_step8_intel_bits_35_32_dropped_simulated(make):
    """§10.2 step 8: on Intel, bits 35:32 are not event-select bits: such entries are dropped."""
    evs = [0x00C0]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="deny", events=[0x1_0000_00C0])
    pmu.service()
    fire(sim, evs)
    assert pmu.rdmsr(IA32_PMC0) == 10


# ---------------------------------------------------------------- §10.4 fixed counters

@pytest.mark.parametrize("action,bitmap,expect", [
    ("allow", 0b001, [10, 0, 0]), ("allow", 0b110, [0, 10, 10]),
    ("deny", 0b010, [10, 0, 10]), ("deny", 0b000, [10, 10, 10])])
def test_s10_4_fixed_counter_bitmap_simulated(make, action, bitmap, expect):
    """§10.4: fixed j: ALLOW iff bitmap bit j; DENY iff bit j clear."""
    pmu, sim = make(intel())
    for j in range(3):
        intel_fixed_on(pmu, j)
    pmu.service()
    set_filter(pmu, action=action, events=[], fixed_counter_bitmap=bitmap)
    pmu.service()
    fire(sim, [0x00C0, 0x003C, 0x013C])
    assert [pmu.rdmsr(FIXED_CTR0 + j) for j in range(3)] == expect


def test_s10_4_fixed_counters_ignore_event_list_simulated(make):
    """§10.4: the event list is not consulted for fixed counters."""
    pmu, sim = make(intel())
    intel_fixed_on(pmu, 0)
    intel_gp_on(pmu, 0, 0xC0)
    pmu.service()
    set_filter(pmu, action="deny", events=[0x00C0], fixed_counter_bitmap=0)
    pmu.service()
    sim.happen(0x00C0, 10, cpl=3)
    assert pmu.rdmsr(FIXED_CTR0) == 10
    assert pmu.rdmsr(IA32_PMC0) == 0
    set_filter(pmu, action="allow", events=[0x00C0], fixed_counter_bitmap=0)
    pmu.service()
    sim.happen(0x00C0, 10, cpl=3)
    assert pmu.rdmsr(FIXED_CTR0) == 10
    assert pmu.rdmsr(IA32_PMC0) == 10


def test_s10_2_fixed_bitmap_extra_bits_not_validated(make):
    """§10.2: bits of fixed_counter_bitmap beyond the existing counters are accepted."""
    pmu, _ = make(intel())
    set_filter(pmu, action="allow", events=[], fixed_counter_bitmap=0xFFFF_FFFF)


def test_s10_2_deny_empty_equals_no_filter_simulated(make):
    """§10.2: DENY with no events and an empty bitmap is equivalent to no filter."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0x3C)
    intel_fixed_on(pmu, 1)
    pmu.service()
    set_filter(pmu, action="deny", events=[], fixed_counter_bitmap=0)
    pmu.service()
    sim.happen(0x3C, 10, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 10
    assert pmu.rdmsr(FIXED_CTR0 + 1) == 10


# ---------------------------------------------------------------- §10.2 validation

def filter_errno(pmu, **kw):
    with pytest.raises(FilterError) as ei:
        pmu.set_event_filter(EventFilter(**kw))
    assert isinstance(ei.value, OSError)
    return ei.value.errno


@pytest.mark.parametrize("action", ["maybe", 2, None, ""])
def test_s10_2_step2_bad_action_einval(make, action):
    """§10.2 step 2: action not allow/deny -> EINVAL."""
    pmu, _ = make(intel())
    assert filter_errno(pmu, action=action, events=[]) == errno.EINVAL


@pytest.mark.parametrize("flags", [2, 0x80000000, 3])
def test_s10_2_step3_unknown_flags_einval(make, flags):
    """§10.2 step 3: unknown flags bits -> EINVAL."""
    pmu, _ = make(intel())
    assert filter_errno(pmu, action="allow", events=[], flags=flags) == errno.EINVAL


def test_s10_2_step4_too_many_events_e2big(make):
    """§10.2 step 4: nevents > 300 -> E2BIG; exactly 300 is fine."""
    pmu, _ = make(intel())
    assert filter_errno(pmu, action="deny", events=[0xC0] * 301) == errno.E2BIG
    set_filter(pmu, action="deny", events=[0xC0] * 300)


@pytest.mark.parametrize("entry", [masked(0xC0, 0, 0) | (1 << 16),
                                   masked(0xC0, 0, 0) | (1 << 40),
                                   masked(0x1C0, 0, 0)])          # bits 35:32 on Intel
def test_s10_2_step7_bad_masked_entry_einval(make, entry):
    """§10.2 step 7: masked entries with bits outside the legal fields -> EINVAL."""
    pmu, _ = make(intel())
    assert filter_errno(pmu, action="allow", events=[entry], flags=MASKED) == errno.EINVAL


def test_s10_2_error_order(make):
    """§10.2: action before flags before nevents before entry validation."""
    pmu, _ = make(intel())
    bad = masked(0xC0, 0, 0) | (1 << 16)
    assert filter_errno(pmu, action="maybe", events=[0xC0] * 301) == errno.EINVAL
    assert filter_errno(pmu, action="allow", flags=2, events=[0xC0] * 301) == errno.EINVAL
    assert filter_errno(pmu, action="allow", flags=MASKED, events=[bad] * 301) == errno.E2BIG


def test_s10_2_failed_filter_leaves_previous_simulated(make):
    """§10.2: a rejected filter does not replace the current one."""
    evs = [0x00C0]
    pmu, sim = counting_intel(make, evs)
    set_filter(pmu, action="deny", events=[0x00C0])
    pmu.service()
    filter_errno(pmu, action="deny", events=[0xC4] * 301)
    pmu.service()
    fire(sim, evs)
    assert pmu.rdmsr(IA32_PMC0) == 0


def test_s10_2_filter_accepted_without_vpmu(make):
    """§10.2: the filter is not validated against the VM's vPMU state (v0 accepts it)."""
    pmu, _ = make(intel(version=0))
    set_filter(pmu, action="allow", events=[0xC0])
    pmu.set_event_filter(None)


# ---------------------------------------------------------------- §10.5 when it applies

def test_s10_5_set_filter_reprograms_all_counters_simulated(make):
    """§10.5: setting a filter reprograms every counter before the next entry, without MSR writes."""
    evs = [0x00C0, 0x00C4]
    pmu, sim = counting_intel(make, evs)
    intel_fixed_on(pmu, 0)
    pmu.service()
    fire(sim, evs + [0x00C0])
    set_filter(pmu, action="allow", events=[0x00C4], fixed_counter_bitmap=0)
    pmu.service()
    fire(sim, evs)
    assert pmu.rdmsr(IA32_PMC0) == 20                  # frozen at its pre-filter value
    assert pmu.rdmsr(IA32_PMC0 + 1) == 20
    assert pmu.rdmsr(FIXED_CTR0) == 20
    before = [pmu.rdmsr(IA32_PMC0), pmu.rdmsr(FIXED_CTR0)]
    sim.happen(0x00C0, 5, cpl=3)
    assert [pmu.rdmsr(IA32_PMC0), pmu.rdmsr(FIXED_CTR0)] == before
    pmu.set_event_filter(None)
    pmu.service()
    sim.happen(0x00C0, 5, cpl=3)
    assert [pmu.rdmsr(IA32_PMC0), pmu.rdmsr(FIXED_CTR0)] == [b + 5 for b in before]


def test_s10_5_filtered_counter_keeps_value_and_accepts_writes_simulated(make):
    """§10.5: reads/writes of counter MSRs are never filtered; a disallowed counter is frozen."""
    pmu, sim = make(amd_legacy())
    pmu.wrmsr(K7_EVNTSEL0, sel(0x76))
    pmu.service()
    sim.happen(0x76, 7, cpl=3)
    set_filter(pmu, action="deny", events=[0x76])
    pmu.service()
    assert pmu.rdmsr(K7_PERFCTR0) == 7
    sim.happen(0x76, 7, cpl=3)
    assert pmu.rdmsr(K7_PERFCTR0) == 7
    pmu.wrmsr(K7_PERFCTR0, 1000)
    assert pmu.rdmsr(K7_PERFCTR0) == 1000
    assert pmu.rdpmc(0) == 1000
    sim.happen(0x76, 7, cpl=3)
    assert pmu.rdmsr(K7_PERFCTR0) == 1000


def test_s10_5_filtered_counter_never_overflows_simulated(make):
    """§10.5 / §7.3 step 2: a disallowed counter does not count, so it cannot overflow."""
    pmu, sim = make(intel())
    pmu.wrmsr(IA32_A_PMC0, (1 << 48) - 1)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0) | INT)
    set_filter(pmu, action="deny", events=[0xC0])
    pmu.service()
    sim.happen(0xC0, 3, cpl=3)
    assert pmu.service() is False
    assert pmu.rdmsr(GLOBAL_STATUS) == 0


def test_s10_5_filter_then_allowed_counter_resumes_simulated(make):
    """§10.5: replacing the filter re-enables a frozen counter from its kept value."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 0, 0xC4)
    pmu.service()
    set_filter(pmu, action="allow", events=[0xC0])
    pmu.service()
    sim.happen(0xC4, 10, cpl=3)
    set_filter(pmu, action="allow", events=[0xC0, 0xC4])
    pmu.service()
    sim.happen(0xC4, 10, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 10
