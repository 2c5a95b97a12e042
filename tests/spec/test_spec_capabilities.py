"""Spec §2: capabilities, the §2.1 clamps, CPUID leaves, refresh, PERF_CAPABILITIES (6.12 rules)."""
from __future__ import annotations

import dataclasses

import pytest

from spec_helpers import (AMD_GLOBAL_CTL, FIXED_CTR0, FIXED_CTR3, FIXED_CTR_CTRL, FW_WRITE,
                          GLOBAL_CTRL, GLOBAL_STATUS, IA32_A_PMC0, IA32_PMC0, K7_EVNTSEL0,
                          K7_PERFCTR0, F15H_PERF_CTL0, PEBS_BASELINE, PERF_CAPABILITIES,
                          PERFEVTSEL0, amd_core, amd_host, amd_legacy, amd_v2, cpuid_leaf,
                          PmuModel, cpuid_reg, faults, intel, intel_host, intel_v1, mask,
                          models, sel)


# ---------------------------------------------------------------- §2.1 clamps

def test_s2_1_gp_count_clamped_to_host_simulated(make):
    """§2.1 step 4 / §2.3 step 3: nr_gp = min(guest, host #GP)."""
    pmu, _ = make(intel(gp=8), host=intel_host(gp_counters=4))
    pmu.wrmsr(PERFEVTSEL0 + 3, sel(0xC0))
    faults(pmu.wrmsr, PERFEVTSEL0 + 4, 0)
    faults(pmu.rdmsr, IA32_PMC0 + 4)
    eax = cpuid_leaf(pmu, 0xA)[0]
    assert (eax >> 8) & 0xFF == 4


def test_s2_1_gp_count_capped_at_kvm_max_8_intel(make):
    """§2.1 step 4: Intel #GP capped at 8 (KVM's internal maximum)."""
    pmu, _ = make(intel(gp=12))
    pmu.wrmsr(PERFEVTSEL0 + 7, sel(0xC0))
    assert pmu.rdmsr(PERFEVTSEL0 + 7) == sel(0xC0)
    faults(pmu.wrmsr, PERFEVTSEL0 + 8, 0)
    faults(pmu.rdmsr, IA32_PMC0 + 8)
    assert (cpuid_leaf(pmu, 0xA)[0] >> 8) & 0xFF == 8


def test_s2_1_fixed_count_capped_at_3(make):
    """§2.1 step 4: #fixed <= 3; fixed counter 3 (TOPDOWN.SLOTS) is never exposed."""
    pmu, _ = make(intel(fixed=4))
    pmu.wrmsr(FIXED_CTR0 + 2, 5)
    assert pmu.rdmsr(FIXED_CTR0 + 2) == 5
    faults(pmu.rdmsr, FIXED_CTR3)
    faults(pmu.wrmsr, FIXED_CTR_CTRL, 0x1 << 12)
    faults(pmu.wrmsr, GLOBAL_CTRL, 1 << 35)
    assert cpuid_leaf(pmu, 0xA)[3] & 0x1F == 3


def test_s2_1_fixed_count_clamped_to_host_simulated(make):
    """§2.1 step 4 / §2.3 step 4: nr_fixed = min(guest EDX[4:0], host #fixed)."""
    pmu, _ = make(intel(fixed=3), host=intel_host(fixed_counters=1))
    pmu.wrmsr(FIXED_CTR0, 1)
    faults(pmu.rdmsr, FIXED_CTR0 + 1)
    faults(pmu.wrmsr, FIXED_CTR_CTRL, 0x30)
    faults(pmu.wrmsr, GLOBAL_CTRL, 1 << 33)
    assert cpuid_leaf(pmu, 0xA)[3] & 0x1F == 1


def test_s2_1_gp_width_clamped_to_host_simulated(make):
    """§2.3 step 3 / §6.7: GP width = min(guest, host width)."""
    pmu, _ = make(intel(gp_width=48), host=intel_host(gp_width=40))
    pmu.wrmsr(IA32_PMC0, mask(64), host=True)
    assert pmu.rdmsr(IA32_PMC0) == mask(40)
    assert (cpuid_leaf(pmu, 0xA)[0] >> 16) & 0xFF == 40


def test_s2_1_fixed_width_clamped_to_host_simulated(make):
    """§2.3 step 4 / §6.7: fixed width = min(guest EDX[12:5], host fixed width)."""
    pmu, _ = make(intel(fixed_width=48), host=intel_host(fixed_width=36))
    pmu.wrmsr(FIXED_CTR0, mask(64))
    assert pmu.rdmsr(FIXED_CTR0) == mask(36)
    assert (cpuid_leaf(pmu, 0xA)[3] >> 5) & 0xFF == 36


def test_s2_1_guest_width_smaller_than_host_kept(make):
    """§2.3 step 3: a guest width below the host's is the width (min)."""
    pmu, _ = make(intel(gp_width=32, fixed_width=40))
    pmu.wrmsr(IA32_PMC0, mask(64), host=True)
    pmu.wrmsr(FIXED_CTR0, mask(64))
    assert pmu.rdmsr(IA32_PMC0) == mask(32)
    assert pmu.rdmsr(FIXED_CTR0) == mask(40)


def test_s2_1_host_without_gp_counters_disables_vpmu_simulated(make):
    """§2.1 step 3: host #GP = 0 disables the vPMU: leaf 0xA is zero, no PMU MSRs, RDPMC faults."""
    pmu, _ = make(intel(), host=intel_host(gp_counters=0))
    leaf = cpuid_leaf(pmu, 0xA)
    assert leaf is None or leaf == (0, 0, 0, 0)
    faults(pmu.rdmsr, GLOBAL_CTRL)
    faults(pmu.rdmsr, IA32_PMC0 + 2)
    faults(pmu.rdpmc, 0)
    assert pmu.supported_perf_capabilities == 0


def test_s2_1_amd_host_below_4_counters_disables_vpmu_simulated(make):
    """§2.1 step 3: AMD host with fewer than 4 GP counters: vPMU disabled."""
    pmu, _ = make(amd_core(), host=amd_host(gp_counters=3, amd_perfmon_v2=False))
    faults(pmu.rdpmc, 0)
    faults(pmu.rdmsr, F15H_PERF_CTL0)
    # K7 aliases of a PMU that does not exist read 0, writes are ignored (§4.8)
    pmu.wrmsr(K7_EVNTSEL0, sel(0x76))
    assert pmu.rdmsr(K7_EVNTSEL0) == 0


def test_s2_1_amd_host_below_6_counters_no_perfctr_core_simulated(make):
    """§2.1 step 6: AMD host #GP < 6: PerfCtrCore and PerfMonV2 not advertised, #GP = min(4, host)."""
    pmu, _ = make(amd_v2(), host=amd_host(gp_counters=5))
    ecx = cpuid_reg(pmu, 0x8000_0001, 2)
    assert not ecx & (1 << 23)
    ext = cpuid_leaf(pmu, 0x8000_0022)
    assert ext is None or not ext[0] & 1
    for i in range(4):
        pmu.wrmsr(K7_PERFCTR0 + i, i + 1)
        assert pmu.rdmsr(K7_PERFCTR0 + i) == i + 1
    faults(pmu.rdpmc, 4)


def test_s2_1_amd_perfmon_v2_needs_host_support_simulated(make):
    """§2.1 step 6: PerfMonV2 advertised only if the host has it."""
    pmu, _ = make(amd_v2(), host=amd_host(gp_counters=6, amd_perfctr_core=True,
                                          amd_perfmon_v2=False))
    ecx = cpuid_reg(pmu, 0x8000_0001, 2)
    assert ecx & (1 << 23)
    ext = cpuid_leaf(pmu, 0x8000_0022)
    assert ext is None or not ext[0] & 1


def test_s2_1_amd_gp_capped_at_6(make):
    """§2.1 step 4: AMD #GP capped at 6 (NumPerfCtrCore 15 -> 6)."""
    pmu, _ = make(amd_v2(gp=15))
    assert cpuid_leaf(pmu, 0x8000_0022)[1] & 0xF == 6
    assert pmu.rdmsr(AMD_GLOBAL_CTL) == 0x3F
    pmu.rdpmc(5)
    faults(pmu.rdpmc, 6)


# ---------------------------------------------------------------- §2.2 leaf 0xA

def test_s2_2_leaf_0a_fields_v2(make):
    """§2.2: leaf 0xA reports version, #GP, GP width, #fixed and fixed width of the vPMU."""
    pmu, _ = make(intel(gp=4, gp_width=48, fixed=3, fixed_width=48))
    eax, ebx, ecx, edx = cpuid_leaf(pmu, 0xA)
    assert eax & 0xFF == 2
    assert (eax >> 8) & 0xFF == 4
    assert (eax >> 16) & 0xFF == 48
    assert edx & 0x1F == 3
    assert (edx >> 5) & 0xFF == 48
    assert edx & ((0x3 << 13) | (0xFFFF << 16)) == 0   # reserved EDX bits


def test_s2_2_leaf_0a_v1_has_no_fixed_counters(make):
    """§2.3 step 4: version 1 -> nr_fixed = 0."""
    pmu, _ = make(intel_v1())
    eax, _, _, edx = cpuid_leaf(pmu, 0xA)
    assert eax & 0xFF == 1
    assert (eax >> 8) & 0xFF == 4
    assert (eax >> 16) & 0xFF == 40
    assert edx & 0x1F == 0
    faults(pmu.rdmsr, FIXED_CTR0)


def test_s2_2_version0_leaf_0a_zero(make):
    """§2.6 / §2.3 step 2: version 0 = no vPMU: leaf 0xA empty, no PMU MSRs."""
    pmu, _ = make(intel(version=0))
    leaf = cpuid_leaf(pmu, 0xA)
    assert leaf is None or leaf == (0, 0, 0, 0)
    faults(pmu.rdmsr, GLOBAL_CTRL)
    faults(pmu.rdmsr, FIXED_CTR0)
    faults(pmu.rdmsr, IA32_PMC0 + 3)


def test_s2_2_guest_version_3_plus_behaves_like_v2(make):
    """§2.2: a guest-claimed version >= 3 is accepted and behaves as v2 (no v4 MSRs)."""
    pmu, _ = make(intel(version=5))
    assert pmu.rdmsr(GLOBAL_CTRL) == 0xF
    pmu.wrmsr(FIXED_CTR_CTRL, 0xBBB)
    faults(pmu.rdmsr, 0x391)
    faults(pmu.wrmsr, 0x391, 1)
    faults(pmu.rdmsr, 0x392)


# ---------------------------------------------------------------- §2.3 refresh

def test_s2_3_step5_fixed_ctrl_legal_bits_follow_nr_fixed(make):
    """§2.3 step 5: FIXED_CTR_CTRL legal bits 4j+{0,1,3} for j < nr_fixed only."""
    pmu, _ = make(intel(fixed=2))
    pmu.wrmsr(FIXED_CTR_CTRL, 0xBB)
    assert pmu.rdmsr(FIXED_CTR_CTRL) == 0xBB
    faults(pmu.wrmsr, FIXED_CTR_CTRL, 0x100)
    faults(pmu.wrmsr, FIXED_CTR_CTRL, 0x800)


def test_s2_3_step6_global_ctrl_reserved_follow_counts(make):
    """§2.3 step 6: GLOBAL_CTRL legal = GP(nr_gp) | GP(nr_fixed) << 32."""
    pmu, _ = make(intel(gp=3, fixed=2))
    pmu.wrmsr(GLOBAL_CTRL, 0x7 | (0x3 << 32))
    assert pmu.rdmsr(GLOBAL_CTRL) == 0x7 | (0x3 << 32)
    faults(pmu.wrmsr, GLOBAL_CTRL, 1 << 3)
    faults(pmu.wrmsr, GLOBAL_CTRL, 1 << 34)
    faults(pmu.wrmsr, GLOBAL_CTRL, 1 << 62, host=True)


@pytest.mark.parametrize("gp,expected", [(4, 0xF), (8, 0xFF), (1, 0x1), (0, 0)])
def test_s2_3_step12_global_ctrl_reset_value_intel(make, gp, expected):
    """§2.3 step 12 (6.9+): after refresh GLOBAL_CTRL = GP(nr_gp), fixed enables off."""
    pmu, _ = make(intel(gp=gp, fixed=3))
    assert pmu.rdmsr(GLOBAL_CTRL) == expected
    assert pmu.rdmsr(GLOBAL_CTRL, host=True) == expected


@pytest.mark.parametrize("gp,expected", [(6, 0x3F), (3, 0x7), (0, 0)])
def test_s2_4_step5_global_ctrl_reset_value_amd(make, gp, expected):
    """§2.4 step 5: AMD PerfMonV2 also starts with GlobalCtl = GP(nr_gp) (0 when nr_gp = 0)."""
    pmu, _ = make(amd_v2(gp=gp))
    assert pmu.rdmsr(AMD_GLOBAL_CTL) == expected


def test_s2_3_step12_after_set_model_refresh(make):
    """§2.3 steps 1+12: set_model refreshes: counters reset, GLOBAL_CTRL = GP(new nr_gp)."""
    pmu, _ = make(intel(gp=4))
    pmu.wrmsr(GLOBAL_CTRL, 0)
    pmu.wrmsr(IA32_PMC0, 1234)
    pmu.wrmsr(PERFEVTSEL0, sel(0xC0))
    pmu.set_model(intel(gp=2))
    assert pmu.rdmsr(GLOBAL_CTRL) == 0x3
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(PERFEVTSEL0) == 0
    faults(pmu.rdmsr, PERFEVTSEL0 + 2)


def test_s2_3_set_model_after_run_refused(make):
    """Contract: after mark_vcpu_ran() only an identical model is accepted (KVM_SET_CPUID2)."""
    m = intel(gp=4)
    pmu, _ = make(m)
    pmu.mark_vcpu_ran()
    pmu.set_model(m)
    with pytest.raises(ValueError):
        pmu.set_model(intel(gp=2))
    pmu.wrmsr(PERFEVTSEL0 + 3, sel(0xC0))     # still 4 counters


def test_s2_3_events_unavailable_does_not_gate_counting_simulated(make):
    """§2.3 / §11 6.9: CPUID.0AH.EBX no longer gates GP events or fixed counters."""
    pmu, sim = make(intel(events_unavailable=0x7F))
    pmu.wrmsr(PERFEVTSEL0, sel(0x3C))
    pmu.wrmsr(FIXED_CTR_CTRL, 0x3)
    pmu.wrmsr(GLOBAL_CTRL, 0x1 | (1 << 32))
    pmu.service()
    sim.happen(0x3C, 11, cpl=3)
    sim.happen(0xC0, 7, cpl=3)
    assert pmu.rdmsr(IA32_PMC0) == 11
    assert pmu.rdmsr(FIXED_CTR0) == 7


# ---------------------------------------------------------------- §2.4 AMD CPUID

def test_s2_4_amd_legacy_cpuid_and_counters(make):
    """§2.4: no PerfCtrCore -> 4 K7 counters, F15H block absent, no 0x80000022 PerfMonV2."""
    pmu, _ = make(amd_legacy())
    ecx = cpuid_leaf(pmu, 0x8000_0001)
    assert ecx is None or not ecx[2] & (1 << 23)
    ext = cpuid_leaf(pmu, 0x8000_0022)
    assert ext is None or not ext[0] & 1
    for i in range(4):
        pmu.wrmsr(K7_EVNTSEL0 + i, sel(0x76))
        assert pmu.rdmsr(K7_EVNTSEL0 + i) == sel(0x76)
    faults(pmu.rdmsr, F15H_PERF_CTL0)
    faults(pmu.rdpmc, 4)


def test_s2_4_amd_perfctr_core_cpuid(make):
    """§2.4: PerfCtrCore -> 8000_0001h.ECX[23] and 6 counters."""
    pmu, _ = make(amd_core())
    assert cpuid_reg(pmu, 0x8000_0001, 2) & (1 << 23)
    pmu.wrmsr(F15H_PERF_CTL0 + 10, sel(0x76))
    assert pmu.rdmsr(F15H_PERF_CTL0 + 10) == sel(0x76)
    pmu.rdpmc(5)
    faults(pmu.rdmsr, AMD_GLOBAL_CTL)


def test_s2_4_amd_perfmon_v2_cpuid(make):
    """§2.4: PerfMonV2 -> 8000_0022h EAX bit 0 only, EBX[3:0] = #GP, other fields 0."""
    pmu, _ = make(amd_v2(gp=6))
    eax, ebx, ecx, edx = cpuid_leaf(pmu, 0x8000_0022)
    assert eax == 1
    assert ebx == 6
    assert ecx == 0 and edx == 0
    assert cpuid_reg(pmu, 0x8000_0001, 2) & (1 << 23)


def test_s2_4_amd_perfmon_v2_num_counters_from_ebx(make):
    """§2.4 step 2: with PerfMonV2, nr_gp = EBX[3:0] of 8000_0022h."""
    pmu, _ = make(amd_v2(gp=3))
    assert cpuid_leaf(pmu, 0x8000_0022)[1] & 0xF == 3
    pmu.rdpmc(2)
    faults(pmu.rdpmc, 3)
    assert pmu.rdmsr(AMD_GLOBAL_CTL) == 0x7


# ---------------------------------------------------------------- §2.5 PERF_CAPABILITIES

def test_s2_5_supported_value_host_none_is_fw_write_only(make):
    """§2.5: KVM-supported value always has FW_WRITE; host=None has no LBR/PEBS -> 0x2000."""
    pmu, _ = make(intel())
    assert pmu.supported_perf_capabilities == FW_WRITE


def test_s2_5_supported_value_fw_write_even_if_host_lacks_it_simulated(make):
    """§2.5: FW_WRITE is set even when the host lacks it (counters are virtual)."""
    pmu, _ = make(intel(), host=intel_host(perf_capabilities=0))
    assert pmu.supported_perf_capabilities & FW_WRITE


def test_s2_5_supported_value_never_has_baseline_simulated(make):
    """§2.5 (6.9+): PEBS_BASELINE (bit 14) is always cleared from the supported value."""
    host_caps = FW_WRITE | PEBS_BASELINE | (4 << 8) | (1 << 7) | (1 << 6)
    pmu, _ = make(intel(), host=intel_host(perf_capabilities=host_caps))
    sup = pmu.supported_perf_capabilities
    assert sup & PEBS_BASELINE == 0
    assert sup & ~(host_caps | FW_WRITE) == 0


def test_s2_5_supported_value_amd_is_zero(make):
    """§2.5: AMD reports 0."""
    pmu, _ = make(amd_v2())
    assert pmu.supported_perf_capabilities == 0


@pytest.mark.parametrize("caps", [0, FW_WRITE])
def test_s2_5_model_perf_capabilities_is_initial_value(make, caps):
    """§2.5 / contract: the model's PERF_CAPABILITIES (a supported subset) is what the guest reads."""
    pmu, _ = make(intel(pdcm=True, perf_caps=caps))
    assert pmu.rdmsr(PERF_CAPABILITIES) == caps
    assert pmu.rdmsr(PERF_CAPABILITIES, host=True) == caps


def test_s2_5_guest_read_needs_pdcm(make):
    """§2.5 / §4.1: guest read of 0x345 faults without PDCM, returns the value with it."""
    pmu, _ = make(intel(pdcm=False))
    faults(pmu.rdmsr, PERF_CAPABILITIES)
    pmu2, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    assert pmu2.rdmsr(PERF_CAPABILITIES) == FW_WRITE


def test_s2_5_guest_write_always_faults(make):
    """§2.5: guest write of PERF_CAPABILITIES always faults, even of the current value."""
    pmu, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    faults(pmu.wrmsr, PERF_CAPABILITIES, FW_WRITE)
    faults(pmu.wrmsr, PERF_CAPABILITIES, 0)
    assert pmu.rdmsr(PERF_CAPABILITIES) == FW_WRITE


def test_s2_5_6_12_host_access_not_gated_on_pdcm(make):
    """§2.5 (6.9-6.12, decides): without PDCM host writes are stored and host reads return them."""
    pmu, _ = make(intel(pdcm=False))
    pmu.wrmsr(PERF_CAPABILITIES, 0, host=True)
    assert pmu.rdmsr(PERF_CAPABILITIES, host=True) == 0
    pmu.wrmsr(PERF_CAPABILITIES, FW_WRITE, host=True)
    assert pmu.rdmsr(PERF_CAPABILITIES, host=True) == FW_WRITE
    faults(pmu.rdmsr, PERF_CAPABILITIES)                  # guest still needs PDCM
    faults(pmu.rdmsr, IA32_A_PMC0)                        # no PDCM -> caps used are 0


def test_s2_5_6_12_nonzero_host_write_needs_version(make):
    """§2.5 (6.9-6.12): a non-zero host write needs PMU version != 0; 0 is always accepted."""
    pmu, _ = make(intel(version=0, pdcm=True))
    faults(pmu.wrmsr, PERF_CAPABILITIES, FW_WRITE, host=True)
    pmu.wrmsr(PERF_CAPABILITIES, 0, host=True)
    assert pmu.rdmsr(PERF_CAPABILITIES, host=True) == 0


@pytest.mark.parametrize("value", [FW_WRITE | PEBS_BASELINE, 0x5, 1 << 8, 1 << 15, 1 << 40])
def test_s2_5_host_write_must_be_subset_of_supported(make, value):
    """§2.5 checks 1-3: LBR format, PEBS bits and the subset rule; any failure faults."""
    pmu, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    faults(pmu.wrmsr, PERF_CAPABILITIES, value, host=True)
    assert pmu.rdmsr(PERF_CAPABILITIES, host=True) == FW_WRITE


def test_s2_5_unchanged_host_write_is_noop(make):
    """§2.5 check 4: an unchanged value is a no-op (no refresh, no reset)."""
    pmu, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    pmu.wrmsr(IA32_PMC0, 77)
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    pmu.wrmsr(PERF_CAPABILITIES, FW_WRITE, host=True)
    assert pmu.rdmsr(IA32_PMC0) == 77
    assert pmu.rdmsr(GLOBAL_CTRL) == 0x1


def test_s2_5_changed_host_write_refreshes(make):
    """§2.5 check 4: a changed value is stored and refreshes (reset; FW alias follows FW_WRITE)."""
    pmu, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    pmu.wrmsr(IA32_A_PMC0, 1 << 40)
    pmu.wrmsr(GLOBAL_CTRL, 0x1)
    pmu.wrmsr(PERF_CAPABILITIES, 0, host=True)
    assert pmu.rdmsr(PERF_CAPABILITIES, host=True) == 0
    assert pmu.rdmsr(IA32_PMC0) == 0
    assert pmu.rdmsr(GLOBAL_CTRL) == 0xF
    faults(pmu.rdmsr, IA32_A_PMC0)
    pmu.wrmsr(PERF_CAPABILITIES, FW_WRITE, host=True)
    pmu.wrmsr(IA32_A_PMC0, 1 << 40)
    assert pmu.rdmsr(IA32_PMC0) == 1 << 40


def test_s2_5_immutable_after_first_run(make):
    """§2.5 (6.4+): after the first run a host write of a different value faults; same value ok."""
    pmu, _ = make(intel(pdcm=True, perf_caps=FW_WRITE))
    pmu.mark_vcpu_ran()
    faults(pmu.wrmsr, PERF_CAPABILITIES, 0, host=True)
    pmu.wrmsr(PERF_CAPABILITIES, FW_WRITE, host=True)
    assert pmu.rdmsr(PERF_CAPABILITIES, host=True) == FW_WRITE
    pmu.wrmsr(IA32_A_PMC0, 5)                           # FW alias still there
    assert pmu.rdmsr(IA32_PMC0) == 5


def test_s2_5_amd_only_zero_accepted(make):
    """§2.5: on AMD (supported 0) only a host write of 0 is accepted; guest access faults."""
    pmu, _ = make(amd_v2())
    pmu.wrmsr(PERF_CAPABILITIES, 0, host=True)
    faults(pmu.wrmsr, PERF_CAPABILITIES, FW_WRITE, host=True)
    faults(pmu.rdmsr, PERF_CAPABILITIES)


def test_s2_5_guest_fault_carries_index(make):
    """Contract: GuestFault is an Exception (not OSError) with .index and .reason."""
    pmu, _ = make(intel())
    f = faults(pmu.wrmsr, GLOBAL_STATUS, 0)
    assert f.index == GLOBAL_STATUS
    assert isinstance(f.reason, str) and f.reason
    assert not isinstance(f, OSError)
    g = faults(pmu.rdpmc, 0x4000_0003)
    assert g.index == 0x4000_0003


# ---------------------------------------------------------------- models (contract)

@pytest.mark.parametrize("name,vendor", [
    ("icelake-server", "intel"), ("icelake-client", "intel"), ("skylake-server", "intel"),
    ("sapphire-rapids", "intel"), ("zen3", "amd"), ("zen4", "amd")])
def test_models_named_profiles(make, name, vendor):
    """Contract: the named models exist, are frozen dataclasses and build a working vPMU."""
    m = models.get(name)
    assert isinstance(m, PmuModel)
    assert m.vendor == vendor
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.version = 0
    pmu, _ = make(m)
    pmu.rdpmc(0)
    if vendor == "intel":
        assert cpuid_leaf(pmu, 0xA)[0] & 0xFF >= 1
    pmu.service()


def test_models_vpmu_from_name(make):
    """Contract: VirtualPMU(model="zen4") is the same as the zen4 profile."""
    by_name, _ = make("zen4")
    by_obj, _ = make(models.get("zen4"))
    assert by_name.cpuid() == by_obj.cpuid()
    assert sorted(by_name.msr_indices()) == sorted(by_obj.msr_indices())


def test_s2_4_amd_create_without_cpuid_gate(make):
    """§2.4 / §7.7: an AMD vPMU always has at least the 4 legacy counters."""
    pmu, _ = make(amd_legacy(gp_counters=0))
    for i in range(4):
        pmu.wrmsr(K7_PERFCTR0 + i, 5)
        assert pmu.rdmsr(K7_PERFCTR0 + i) == 5
