"""Spec §3.3-§3.5: RDPMC decoding (6.9+), permission rules, VMware pseudo-PMCs, order."""
from __future__ import annotations

import time

import pytest

from spec_helpers import (FIXED_CTR0, IA32_PMC0, K7_PERFCTR0, amd_core, amd_ctr, amd_legacy,
                          amd_v2, faults, intel, intel_v1, intel_gp_on, mask)

VMW_TSC = 0x10000
VMW_REAL = 0x10001
VMW_APPARENT = 0x10002


# ---------------------------------------------------------------- §3.3 Intel decoding

def test_s3_3_intel_gp_type(make):
    """§3.3: Intel type 0x0000: ECX[15:0] is the GP index; result = counter value."""
    pmu, _ = make(intel(gp=4))
    for i in range(4):
        pmu.wrmsr(IA32_PMC0 + i, 0x1_0000_0000 * (i + 1) + i, host=True)
    for i in range(4):
        assert pmu.rdpmc(i) == 0x1_0000_0000 * (i + 1) + i


def test_s3_3_intel_fixed_type(make):
    """§3.3: Intel type 0x4000 (ECX bit 30) selects fixed counter ECX[15:0]."""
    pmu, _ = make(intel(fixed=3))
    for j in range(3):
        pmu.wrmsr(FIXED_CTR0 + j, 0xABC_0000_0000 + j)
    for j in range(3):
        assert pmu.rdpmc(0x4000_0000 | j) == 0xABC_0000_0000 + j


@pytest.mark.parametrize("ecx", [0x4000_0003, 0x4000_0010, 4, 7, 32, 33, 0xFFFF])
def test_s3_3_intel_index_out_of_range_faults(make, ecx):
    """§3.3: the index must be < the number of counters of that type; 32 is not fixed 0 (§3.1)."""
    pmu, _ = make(intel(gp=4, fixed=3))
    f = faults(pmu.rdpmc, ecx)
    assert f.index == ecx


@pytest.mark.parametrize("ecx", [0x8000_0000, 0x8000_0001, 0xC000_0000, 0x2000_0000,
                                 0x0001_0005, 0x0003_0000, 0x0100_0000, 0x6000_0000])
def test_s3_3_intel_unknown_type_faults(make, ecx):
    """§3.3 (6.9+): any type other than GP/fixed — incl. the fast bit 31 and metrics — faults."""
    pmu, _ = make(intel(gp=4, fixed=3))
    pmu.wrmsr(IA32_PMC0, 5)
    faults(pmu.rdpmc, ecx)


def test_s3_3_intel_v1_fixed_type_faults(make):
    """§3.3: v1 has no fixed counters, so type 0x4000 finds none."""
    pmu, _ = make(intel_v1())
    faults(pmu.rdpmc, 0x4000_0000)
    pmu.wrmsr(IA32_PMC0 + 3, 9)
    assert pmu.rdpmc(3) == 9


def test_s3_3_intel_result_masked_to_width(make):
    """§3.3: the result is ANDed with that type's width mask."""
    pmu, _ = make(intel(gp_width=40, fixed_width=44))
    pmu.wrmsr(IA32_PMC0, mask(64), host=True)
    pmu.wrmsr(FIXED_CTR0, mask(64))
    assert pmu.rdpmc(0) == mask(40)
    assert pmu.rdpmc(0x4000_0000) == mask(44)


# ---------------------------------------------------------------- §3.3 AMD decoding

@pytest.mark.parametrize("variant,n", [(amd_legacy, 4), (amd_core, 6), (amd_v2, 6)])
def test_s3_3_amd_plain_index(make, variant, n):
    """§3.3 (AMD 6.9+): ECX is the counter index, must be < nr_gp."""
    pmu, _ = make(variant())
    for i in range(n):
        pmu.wrmsr(amd_ctr(i) if n == 6 else K7_PERFCTR0 + i, 100 + i)
    for i in range(n):
        assert pmu.rdpmc(i) == 100 + i
    faults(pmu.rdpmc, n)


@pytest.mark.parametrize("ecx", [0x4000_0000, 0x8000_0000, 0xC000_0001, 0x4000_0002])
def test_s3_3_amd_high_bits_not_stripped(make, ecx):
    """§3.3 (AMD 6.9+): no bits are stripped — 0x4000_0000 | i does not alias counter i."""
    pmu, _ = make(amd_core())
    pmu.wrmsr(K7_PERFCTR0, 1)
    faults(pmu.rdpmc, ecx)


# ---------------------------------------------------------------- §3.5 algorithm

@pytest.mark.parametrize("factory", [lambda: intel(version=0), lambda: amd_core(version=0)],
                         ids=["intel", "amd"])
def test_s3_5_step1_version0_faults(make, factory):
    """§3.5 step 1: version 0 -> #GP for every ECX, VMware pseudo-PMCs included."""
    pmu, _ = make(factory(), vmware_backdoor=True)
    for ecx in (0, 1, 0x4000_0000, VMW_TSC, VMW_REAL, VMW_APPARENT):
        faults(pmu.rdpmc, ecx)


@pytest.mark.parametrize("factory", [intel, amd_core], ids=["intel", "amd"])
def test_s3_5_step4_permission(make, factory):
    """§3.5 step 4: fault iff CR4.PCE = 0 and CPL != 0 and CR0.PE = 1."""
    pmu, _ = make(factory())
    pmu.wrmsr(IA32_PMC0 if factory is intel else K7_PERFCTR0, 42)
    assert pmu.rdpmc(0, cpl=0, cr4_pce=False) == 42
    assert pmu.rdpmc(0, cpl=3, cr4_pce=True) == 42
    assert pmu.rdpmc(0, cpl=1, cr4_pce=True) == 42
    assert pmu.rdpmc(0, cpl=3, cr4_pce=False, cr0_pe=False) == 42
    faults(pmu.rdpmc, 0, cpl=3, cr4_pce=False)
    faults(pmu.rdpmc, 0, cpl=1, cr4_pce=False, cr0_pe=True)


def test_s3_5_step3_decode_before_permission(make):
    """§3.5 steps 3-4: a non-existent counter faults even when permitted."""
    pmu, _ = make(intel(gp=2))
    faults(pmu.rdpmc, 2, cpl=0, cr4_pce=True)


def test_s3_5_step5_reads_live_count_simulated(make):
    """§3.5 step 5 / contract: RDPMC returns the live value, incl. events not yet serviced."""
    pmu, sim = make(intel())
    intel_gp_on(pmu, 1, 0xC0)
    pmu.service()
    sim.happen(0xC0, 123, cpl=3)
    assert pmu.rdpmc(1) == 123
    assert pmu.rdpmc(1) == pmu.rdmsr(IA32_PMC0 + 1)


# ---------------------------------------------------------------- §3.4 VMware pseudo-PMCs

def test_s3_4_vmware_pmcs_skip_permission_check(make):
    """§3.4: with the VMware backdoor, 0x10000-0x10002 are readable at CPL3 with CR4.PCE = 0."""
    pmu, _ = make(intel(), vmware_backdoor=True)
    for ecx in (VMW_TSC, VMW_REAL, VMW_APPARENT):
        assert pmu.rdpmc(ecx, cpl=3, cr4_pce=False) > 0


def test_s3_4_vmware_tsc_is_monotonic(make):
    """§3.4: 0x10000 returns the host TSC (never goes backwards)."""
    pmu, _ = make(amd_core(), vmware_backdoor=True)
    a = pmu.rdpmc(VMW_TSC)
    b = pmu.rdpmc(VMW_TSC)
    assert 0 < a <= b < (1 << 64)


def test_s3_4_vmware_real_time_is_boottime_ns(make):
    """§3.4: 0x10001 returns the host boot-time clock in ns."""
    pmu, _ = make(intel(), vmware_backdoor=True)
    before = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    v = pmu.rdpmc(VMW_REAL)
    after = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    assert before <= v <= after


def test_s3_4_vmware_pmcs_decoded_before_counters(make):
    """§3.5 step 2: pseudo-PMCs are recognised before normal decoding (0x10000 is not type 1)."""
    pmu, _ = make(intel(), vmware_backdoor=True)
    pmu.rdpmc(VMW_TSC, cpl=0)
    faults(pmu.rdpmc, 0x10003, cpl=0)


def test_s3_4_vmware_pmcs_need_backdoor_at_cpl3(make):
    """§3.4: without the backdoor, CPL3 RDPMC with CR4.PCE = 0 faults for the pseudo-PMCs too."""
    pmu, _ = make(intel(), vmware_backdoor=False)
    for ecx in (VMW_TSC, VMW_REAL, VMW_APPARENT):
        faults(pmu.rdpmc, ecx, cpl=3, cr4_pce=False)
