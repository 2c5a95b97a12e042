"""Spec §4: Intel PMU MSRs — existence, read, guest-write and host-write rules."""
from __future__ import annotations

import pytest

from spec_helpers import (ANY, DS_AREA, EN, FIXED_CTR0, FIXED_CTR3, FIXED_CTR_CTRL, FW_WRITE,
                          GLOBAL_CTRL, GLOBAL_INUSE, GLOBAL_OVF_CTRL, GLOBAL_STATUS,
                          GLOBAL_STATUS_SET, GuestFault, IA32_A_PMC0, IA32_PMC0, IN_TX, IN_TXCP, PC,
                          PEBS_DATA_CFG, PEBS_ENABLE, PERF_CAPABILITIES, PERF_METRICS,
                          PERFEVTSEL0, faults, intel, intel_host, intel_v1, mask, sel)

BIT62 = 1 << 62
BIT63 = 1 << 63


# ---------------------------------------------------------------- §4.5 counter aliases

@pytest.mark.parametrize("written,expected", [
    (0x8000_0000, 0xFFFF_8000_0000),
    (0xFFFF_FFFF, mask(48)),
    (0x7FFF_FFFF, 0x7FFF_FFFF),
    (0x1_2345_6789, 0x2345_6789),            # bits above 31 are dropped before extension
    (0xABCD_0000_8000_0001, 0xFFFF_8000_0001),
])
def test_s4_5_legacy_guest_write_sign_extends(make, written, expected):
    """§4.5: legacy alias, guest write: sign_extend_64(v[31:0]) then masked to the width."""
    pmu, _ = make(intel(gp_width=48))
    pmu.wrmsr(IA32_PMC0 + 1, written)
    assert pmu.rdmsr(IA32_PMC0 + 1) == expected


def test_s4_5_legacy_guest_write_sign_extends_width40_v1(make):
    """§4.5 on the v1 variant (40-bit counters)."""
    pmu, _ = make(intel_v1())
    pmu.wrmsr(IA32_PMC0, 0x8000_0000)
    assert pmu.rdmsr(IA32_PMC0) == 0xFF_8000_0000
    pmu.wrmsr(IA32_PMC0 + 3, 0x1234)
    assert pmu.rdmsr(IA32_PMC0 + 3) == 0x1234


@pytest.mark.parametrize("written,expected", [
    (0x8000_0000, 0x8000_0000),
    (0xFFFF_FFFF, 0xFFFF_FFFF),
    (0x1_2345_6789, 0x1_2345_6789),
    (mask(64), mask(48)),                     # masked, never a fault
])
def test_s4_5_legacy_host_write_no_sign_extension(make, written, expected):
    """§4.5: legacy alias, host write: stored masked, no sign extension, no fault."""
    pmu, _ = make(intel(gp_width=48))
    pmu.wrmsr(IA32_PMC0, written, host=True)
    assert pmu.rdmsr(IA32_PMC0) == expected
    assert pmu.rdmsr(IA32_PMC0, host=True) == expected


@pytest.mark.parametrize("host", [False, True])
def test_s4_5_full_width_alias_faults_above_width(make, host):
    """§4.5: 0x4C1+i: any bit above the width faults (guest and host); the value is unchanged."""
    pmu, _ = make(intel(gp_width=48))
    pmu.wrmsr(IA32_A_PMC0, 0x1234, host=host)
    faults(pmu.wrmsr, IA32_A_PMC0, 1 << 48, host=host)
    faults(pmu.wrmsr, IA32_A_PMC0, mask(64), host=host)
    assert pmu.rdmsr(IA32_PMC0) == 0x1234


@pytest.mark.parametrize("host", [False, True])
def test_s4_5_full_width_alias_stored_as_is(make, host):
    """§4.5: 0x4C1+i within the width is stored as is (no sign extension); both aliases read it."""
    pmu, _ = make(intel(gp_width=48))
    pmu.wrmsr(IA32_A_PMC0 + 2, 0x8000_0000, host=host)
    assert pmu.rdmsr(IA32_PMC0 + 2) == 0x8000_0000
    pmu.wrmsr(IA32_A_PMC0 + 2, mask(48), host=host)
    assert pmu.rdmsr(IA32_A_PMC0 + 2) == mask(48)
    assert pmu.rdmsr(IA32_PMC0 + 2) == mask(48)


def test_s4_5_reads_return_full_width(make):
    """§4.5: reads of either GP alias return the full width, not 32 bits."""
    pmu, _ = make(intel(gp_width=48))
    pmu.wrmsr(IA32_PMC0, 0xABCD_1234_5678, host=True)
    assert pmu.rdmsr(IA32_PMC0) == 0xABCD_1234_5678
    assert pmu.rdmsr(IA32_A_PMC0) == 0xABCD_1234_5678


def test_s4_5_full_width_alias_needs_pdcm(make):
    """§4.1: 0x4C1+i exists only with PDCM (guest and host: it is never in the save list)."""
    pmu, _ = make(intel(pdcm=False, perf_caps=FW_WRITE))
    faults(pmu.rdmsr, IA32_A_PMC0)
    faults(pmu.wrmsr, IA32_A_PMC0, 1)
    faults(pmu.wrmsr, IA32_A_PMC0, 1, host=True)
    pmu.wrmsr(IA32_PMC0, 7)                       # the legacy alias is unaffected
    assert pmu.rdmsr(IA32_PMC0) == 7


def test_s4_5_full_width_alias_needs_fw_write(make):
    """§4.1: 0x4C1+i exists only with FW_WRITE in PERF_CAPABILITIES."""
    pmu, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    pmu.wrmsr(PERF_CAPABILITIES, 0, host=True)
    faults(pmu.rdmsr, IA32_A_PMC0)
    faults(pmu.wrmsr, IA32_A_PMC0, 1)


def test_s4_5_full_width_alias_beyond_nr_gp_faults(make):
    """§3.2: 0x4C1+i for i >= nr_gp is not a counter."""
    pmu, _ = make(intel(gp=2))
    pmu.wrmsr(IA32_A_PMC0 + 1, 3)
    faults(pmu.rdmsr, IA32_A_PMC0 + 2)
    faults(pmu.wrmsr, IA32_A_PMC0 + 2, 0)


@pytest.mark.parametrize("written,expected", [
    (0x8000_0000, 0x8000_0000),              # no sign extension
    (mask(64), mask(48)),                     # masked, no fault
])
@pytest.mark.parametrize("host", [False, True])
def test_s4_5_fixed_counter_write_masked(make, written, expected, host):
    """§4.5: fixed counters: stored masked to the fixed width, no fault, no sign extension."""
    pmu, _ = make(intel(fixed_width=48))
    pmu.wrmsr(FIXED_CTR0 + 1, written, host=host)
    assert pmu.rdmsr(FIXED_CTR0 + 1) == expected


# ---------------------------------------------------------------- §4.1/§4.2 PERFEVTSEL

def test_s4_2_perfevtsel_legal_mask_accepted(make):
    """§4.2: legal bits 0xFFDF_FFFF (incl. PC, INV, CMASK) are stored and read back."""
    pmu, _ = make(intel())
    for v in (0xFFDF_FFFF, sel(0xC0) | PC, 0x0):
        pmu.wrmsr(PERFEVTSEL0 + 1, v)
        assert pmu.rdmsr(PERFEVTSEL0 + 1) == v


@pytest.mark.parametrize("bit", [21, 32, 33, 34, 35, 36, 37, 40, 47, 63])
@pytest.mark.parametrize("host", [False, True])
def test_s4_2_perfevtsel_reserved_bits_fault(make, bit, host):
    """§4.2: ANY (21), IN_TX/IN_TXCP without TSX, ADAPTIVE (34, no BASELINE in M), 35+ fault."""
    pmu, _ = make(intel())
    pmu.wrmsr(PERFEVTSEL0 + 2, sel(0xC0))
    faults(pmu.wrmsr, PERFEVTSEL0 + 2, sel(0xC0) | (1 << bit), host=host)
    assert pmu.rdmsr(PERFEVTSEL0 + 2) == sel(0xC0)


def test_s4_2_in_tx_legal_with_tsx_simulated(make):
    """§2.3 step 8 / §4.2: with host TSX, IN_TX (bit 32) is legal on every GP counter."""
    pmu, _ = make(intel(tsx=True), host=intel_host(tsx=True))
    for i in range(4):
        pmu.wrmsr(PERFEVTSEL0 + i, sel(0xC0) | IN_TX)
        assert pmu.rdmsr(PERFEVTSEL0 + i) == sel(0xC0) | IN_TX


def test_s4_2_in_txcp_only_on_counter_2_simulated(make):
    """§4.2: IN_TXCP (bit 33) is legal only on GP counter 2, and only with TSX."""
    pmu, _ = make(intel(tsx=True), host=intel_host(tsx=True))
    pmu.wrmsr(PERFEVTSEL0 + 2, sel(0xC0) | IN_TXCP)
    assert pmu.rdmsr(PERFEVTSEL0 + 2) == sel(0xC0) | IN_TXCP
    for i in (0, 1, 3):
        faults(pmu.wrmsr, PERFEVTSEL0 + i, sel(0xC0) | IN_TXCP)


def test_s4_2_in_tx_needs_host_tsx_simulated(make):
    """§2.3 step 8: IN_TX stays reserved when the host has neither HLE nor RTM."""
    pmu, _ = make(intel(tsx=True), host=intel_host(tsx=False))
    faults(pmu.wrmsr, PERFEVTSEL0, sel(0xC0) | IN_TX)
    faults(pmu.wrmsr, PERFEVTSEL0 + 2, sel(0xC0) | IN_TXCP)


def test_s4_1_perfevtsel_beyond_nr_gp_faults(make):
    """§4.1: PERFEVTSEL i >= nr_gp does not exist (0x186/0x187 are P6 aliases, §4.8)."""
    pmu, _ = make(intel(gp=3))
    pmu.wrmsr(PERFEVTSEL0 + 2, EN)
    faults(pmu.wrmsr, PERFEVTSEL0 + 3, 0)
    faults(pmu.rdmsr, PERFEVTSEL0 + 3)
    faults(pmu.rdmsr, IA32_PMC0 + 3)


# ---------------------------------------------------------------- §4.3 FIXED_CTR_CTRL

def test_s4_3_fixed_ctrl_legal_mask(make):
    """§4.3: with 3 fixed counters and no PEBS the legal mask is 0xBBB."""
    pmu, _ = make(intel(fixed=3))
    pmu.wrmsr(FIXED_CTR_CTRL, 0xBBB)
    assert pmu.rdmsr(FIXED_CTR_CTRL) == 0xBBB
    pmu.wrmsr(FIXED_CTR_CTRL, 0x0, host=True)
    assert pmu.rdmsr(FIXED_CTR_CTRL) == 0


@pytest.mark.parametrize("value", [0x4, 0x40, 0x400, 0x1000, 0x8000, 1 << 32, 1 << 36, 1 << 63])
@pytest.mark.parametrize("host", [False, True])
def test_s4_3_fixed_ctrl_reserved_fault(make, value, host):
    """§4.3: AnyThread bits, fields of absent counters, ADAPTIVE (32+4j) and the rest fault."""
    pmu, _ = make(intel(fixed=3))
    pmu.wrmsr(FIXED_CTR_CTRL, 0x3)
    faults(pmu.wrmsr, FIXED_CTR_CTRL, 0x3 | value, host=host)
    assert pmu.rdmsr(FIXED_CTR_CTRL) == 0x3


def test_s4_1_fixed_counter_beyond_nr_fixed_faults(make):
    """§4.1: IA32_FIXED_CTRj exists for j < nr_fixed only."""
    pmu, _ = make(intel(fixed=2))
    pmu.wrmsr(FIXED_CTR0 + 1, 1)
    faults(pmu.rdmsr, FIXED_CTR0 + 2)
    faults(pmu.wrmsr, FIXED_CTR0 + 2, 0)


def test_s4_4_v1_has_no_global_or_fixed_msrs(make):
    """§4.1 / §4.4: version 1 has no FIXED_CTRj, FIXED_CTR_CTRL, GLOBAL_* MSRs."""
    pmu, _ = make(intel_v1())
    for msr in (FIXED_CTR0, FIXED_CTR_CTRL, GLOBAL_STATUS, GLOBAL_CTRL, GLOBAL_OVF_CTRL):
        faults(pmu.rdmsr, msr)
        faults(pmu.wrmsr, msr, 0)
    pmu.wrmsr(PERFEVTSEL0 + 3, sel(0xC0))
    assert pmu.rdmsr(PERFEVTSEL0 + 3) == sel(0xC0)


# ---------------------------------------------------------------- §4.1 global MSRs

@pytest.mark.parametrize("value", [0, 1, BIT62])
def test_s4_1_global_status_guest_write_always_faults(make, value):
    """§4.1: PERF_GLOBAL_STATUS is read-only for the guest: every write faults."""
    pmu, _ = make(intel())
    faults(pmu.wrmsr, GLOBAL_STATUS, value)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0


def test_s4_1_global_status_host_write_replaces(make):
    """§4.1: host write of legal bits (counters, 62, 63) replaces the whole value."""
    pmu, _ = make(intel(gp=4, fixed=3))
    legal = 0xF | (0x7 << 32) | BIT62 | BIT63
    pmu.wrmsr(GLOBAL_STATUS, legal, host=True)
    assert pmu.rdmsr(GLOBAL_STATUS) == legal
    pmu.wrmsr(GLOBAL_STATUS, 0x2, host=True)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x2


@pytest.mark.parametrize("bit", [4, 35, 55, 58, 59, 61])
def test_s4_1_global_status_host_write_reserved_faults(make, bit):
    """§4.1 (6.5+): a host write with a reserved GLOBAL_STATUS bit faults (55 only with PT)."""
    pmu, _ = make(intel(gp=4, fixed=3))
    pmu.wrmsr(GLOBAL_STATUS, 0x1, host=True)
    faults(pmu.wrmsr, GLOBAL_STATUS, 1 << bit, host=True)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


def test_s4_1_ovf_ctrl_reads_zero(make):
    """§4.1: PERF_GLOBAL_OVF_CTRL always reads 0 (guest and host), whatever GLOBAL_STATUS is."""
    pmu, _ = make(intel())
    pmu.wrmsr(GLOBAL_STATUS, 0x3 | BIT62, host=True)
    assert pmu.rdmsr(GLOBAL_OVF_CTRL) == 0
    assert pmu.rdmsr(GLOBAL_OVF_CTRL, host=True) == 0


def test_s4_1_ovf_ctrl_guest_write_clears_status(make):
    """§4.1: guest write to OVF_CTRL: global_status &= ~data (62/63 clearable too)."""
    pmu, _ = make(intel())
    pmu.wrmsr(GLOBAL_STATUS, 0x3 | (1 << 32) | BIT62 | BIT63, host=True)
    pmu.wrmsr(GLOBAL_OVF_CTRL, 0x1 | BIT63)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x2 | (1 << 32) | BIT62
    pmu.wrmsr(GLOBAL_OVF_CTRL, 0x2 | (1 << 32) | BIT62)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0


def test_s4_1_ovf_ctrl_host_write_ignored(make):
    """§4.1: host write to OVF_CTRL passes the reserved check and is otherwise ignored."""
    pmu, _ = make(intel())
    pmu.wrmsr(GLOBAL_STATUS, 0x3, host=True)
    pmu.wrmsr(GLOBAL_OVF_CTRL, 0x3, host=True)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x3


@pytest.mark.parametrize("host", [False, True])
def test_s4_1_ovf_ctrl_reserved_faults(make, host):
    """§4.1: OVF_CTRL writes with bits outside global_status's legal set fault."""
    pmu, _ = make(intel(gp=4, fixed=3))
    pmu.wrmsr(GLOBAL_STATUS, 0x1, host=True)
    faults(pmu.wrmsr, GLOBAL_OVF_CTRL, 0x1 | (1 << 61), host=host)
    faults(pmu.wrmsr, GLOBAL_OVF_CTRL, 1 << 4, host=host)
    assert pmu.rdmsr(GLOBAL_STATUS) == 0x1


@pytest.mark.parametrize("host", [False, True])
def test_s4_1_global_ctrl_reserved_faults(make, host):
    """§4.1 / §4.4: GLOBAL_CTRL bits other than counter enables fault; legal values stored."""
    pmu, _ = make(intel(gp=4, fixed=3))
    pmu.wrmsr(GLOBAL_CTRL, 0x5 | (0x2 << 32), host=host)
    assert pmu.rdmsr(GLOBAL_CTRL) == 0x5 | (0x2 << 32)
    for bit in (4, 35, 62, 63):
        faults(pmu.wrmsr, GLOBAL_CTRL, 1 << bit, host=host)
    assert pmu.rdmsr(GLOBAL_CTRL) == 0x5 | (0x2 << 32)


@pytest.mark.parametrize("msr", [GLOBAL_STATUS_SET, GLOBAL_INUSE, FIXED_CTR3, PERF_METRICS])
def test_s4_1_never_existing_msrs_fault_guest_and_host(make, msr):
    """§4.1: STATUS_SET, INUSE, FIXED_CTR3, PERF_METRICS never exist (not in the save list)."""
    pmu, _ = make(intel(version=5, fixed=4))
    faults(pmu.rdmsr, msr)
    faults(pmu.wrmsr, msr, 1)
    faults(pmu.rdmsr, msr, host=True)
    faults(pmu.wrmsr, msr, 1, host=True)


def test_s4_1_pebs_enable_absent_without_pebs_format(make):
    """§4.1: IA32_PEBS_ENABLE needs PDCM and a PEBS format (host=None has no PEBS)."""
    pmu, _ = make(intel(pdcm=True))
    faults(pmu.rdmsr, PEBS_ENABLE)
    faults(pmu.wrmsr, PEBS_ENABLE, 1)


def test_s4_1_pebs_data_cfg_never_exists_in_m(make):
    """§4.1: MSR_PEBS_DATA_CFG needs PEBS_BASELINE, which M never supports."""
    pmu, _ = make(intel(pdcm=True))
    faults(pmu.rdmsr, PEBS_DATA_CFG)
    faults(pmu.wrmsr, PEBS_DATA_CFG, 0)


def test_s4_1_ds_area_needs_guest_ds(make):
    """§4.1: IA32_DS_AREA exists only with guest CPUID DS."""
    pmu, _ = make(intel(ds=False))
    faults(pmu.rdmsr, DS_AREA)
    faults(pmu.wrmsr, DS_AREA, 0x1000)


# ---------------------------------------------------------------- §4.8 absent PMU MSRs

@pytest.mark.parametrize("kw", [dict(version=0), dict(gp=1)], ids=["v0", "gp1"])
def test_s4_8_p6_aliases_read_zero_ignore_writes(make, kw):
    """§4.8: invalid 0xC2 / 0x187 (and 0xC1/0x186 with v0) read 0 and ignore any write."""
    pmu, _ = make(intel(**kw))
    for msr in (IA32_PMC0 + 1, PERFEVTSEL0 + 1):
        pmu.wrmsr(msr, 0xDEAD_BEEF)
        pmu.wrmsr(msr, mask(64))
        assert pmu.rdmsr(msr) == 0
        assert pmu.rdmsr(msr, host=True) == 0
    faults(pmu.rdmsr, IA32_PMC0 + 2)              # not a P6 alias: faults
    faults(pmu.wrmsr, PERFEVTSEL0 + 2, 0)


def test_s4_8_p6_aliases_v0_include_counter0(make):
    """§4.8: with no vPMU even PMC0/PERFEVTSEL0 are alias MSRs: read 0, writes ignored."""
    pmu, _ = make(intel(version=0))
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0))
    pmu.wrmsr(IA32_PMC0, 55)
    assert pmu.rdmsr(PERFEVTSEL0) == 0
    assert pmu.rdmsr(IA32_PMC0) == 0


@pytest.mark.parametrize("msr", [IA32_PMC0 + 4, PERFEVTSEL0 + 4, IA32_PMC0 + 7, PERFEVTSEL0 + 7])
def test_s4_8_host_leniency_for_listed_msrs(make, msr):
    """§4.8: absent MSRs in KVM's save list: host read 0 and host write 0 succeed, others fault."""
    pmu, _ = make(intel(gp=2))                     # host=None: the list has PMC0-7/EVTSEL0-7
    faults(pmu.rdmsr, msr)
    assert pmu.rdmsr(msr, host=True) == 0
    pmu.wrmsr(msr, 0, host=True)
    faults(pmu.wrmsr, msr, 1, host=True)


def test_s4_8_host_leniency_fixed_and_global_v1(make):
    """§4.8: v1 has no fixed/global MSRs, but they are listed: host read 0 / write 0 only."""
    pmu, _ = make(intel_v1())
    for msr in (FIXED_CTR0, FIXED_CTR_CTRL, GLOBAL_STATUS, GLOBAL_CTRL):
        assert pmu.rdmsr(msr, host=True) == 0
        pmu.wrmsr(msr, 0, host=True)
        faults(pmu.wrmsr, msr, 1, host=True)


def test_s4_8_existing_but_failing_faults_for_host(make):
    """§4.8: an existing MSR whose access fails (reserved bits) faults for the host too."""
    pmu, _ = make(intel())
    faults(pmu.wrmsr, PERFEVTSEL0, ANY, host=True)
    faults(pmu.wrmsr, FIXED_CTR_CTRL, 0x4, host=True)
    faults(pmu.wrmsr, GLOBAL_CTRL, BIT63, host=True)


# ---------------------------------------------------------------- msr_indices

def test_s7_8_msr_indices_cover_every_existing_msr_intel(make):
    """§7.8 / contract: msr_indices() has every PMU MSR of this vCPU, incl. the 0x4C1 aliases."""
    pmu, _ = make(intel(gp=4, fixed=3, pdcm=True, perf_caps=FW_WRITE))
    idx = set(pmu.msr_indices())
    want = ({IA32_PMC0 + i for i in range(4)} | {IA32_A_PMC0 + i for i in range(4)}
            | {PERFEVTSEL0 + i for i in range(4)} | {FIXED_CTR0 + j for j in range(3)}
            | {FIXED_CTR_CTRL, GLOBAL_STATUS, GLOBAL_CTRL, GLOBAL_OVF_CTRL, PERF_CAPABILITIES})
    assert want <= idx


def test_s7_8_msr_indices_include_every_guest_readable_pmu_msr(make):
    """§7.8: whatever the guest can read without a fault among the PMU ranges is routed."""
    pmu, _ = make(intel(gp=8, fixed=3))
    idx = set(pmu.msr_indices())
    ranges = (list(range(0xC1, 0xC9)) + list(range(0x186, 0x18E)) + list(range(0x309, 0x30D))
              + list(range(0x38D, 0x393)) + list(range(0x4C1, 0x4C9))
              + [PEBS_ENABLE, PEBS_DATA_CFG, DS_AREA, PERF_CAPABILITIES, PERF_METRICS])
    readable = []
    for msr in ranges:
        try:
            pmu.rdmsr(msr)
        except GuestFault:
            continue
        readable.append(msr)
    assert len(readable) >= 8 + 8 + 3 + 4
    assert set(readable) <= idx
