"""MSR indices, bit masks and architectural constants of the x86 PMU (spec §2-§6).

Names follow the SDM / APM and Linux's ``msr-index.h`` so that a reader can
grep either.  Values are written from the spec tables, not copied from code.
"""
from __future__ import annotations

M64 = (1 << 64) - 1


def mask(width: int) -> int:
    """2**width - 1 (``mask(0) == 0``)."""
    return (1 << width) - 1 if width > 0 else 0


# ---------------------------------------------------------------- Intel MSRs (§4.1)
MSR_IA32_PERFCTR0 = 0xC1            # legacy counter alias IA32_PMCi (P6 PERFCTR0)
MSR_IA32_PMC0 = 0x4C1               # full-width alias IA32_A_PMCi
MSR_PMC_FULL_WIDTH_BIT = 0x400      # distinguishes 0x4C1+i from 0xC1+i (§4.5)
MSR_P6_EVNTSEL0 = 0x186             # IA32_PERFEVTSELi
MSR_CORE_PERF_FIXED_CTR0 = 0x309
MSR_CORE_PERF_FIXED_CTR3 = 0x30C    # TOPDOWN.SLOTS: never exposed (§2.1)
MSR_CORE_PERF_FIXED_CTR_CTRL = 0x38D
MSR_CORE_PERF_GLOBAL_STATUS = 0x38E
MSR_CORE_PERF_GLOBAL_CTRL = 0x38F
MSR_CORE_PERF_GLOBAL_OVF_CTRL = 0x390
MSR_PERF_GLOBAL_STATUS_SET = 0x391  # v4: never exists in the perf-based vPMU
MSR_PERF_GLOBAL_INUSE = 0x392       # v4: never exists
MSR_IA32_PEBS_ENABLE = 0x3F1
MSR_PEBS_DATA_CFG = 0x3F2
MSR_IA32_DS_AREA = 0x600
MSR_IA32_PERF_CAPABILITIES = 0x345
MSR_PERF_METRICS = 0x329            # never exists

INTEL_MAX_GP = 8                    # KVM_MAX_NR_INTEL_GP_COUNTERS
INTEL_MAX_FIXED = 3                 # KVM_MAX_NR_FIXED_COUNTERS
FIXED_IDX_BASE = 32                 # global index of fixed counter 0 (§3.1)

# P6 aliases that KVM's MSR core handles itself when they are not PMU MSRs (§4.8)
P6_ALIASES = (0xC1, 0xC2, 0x186, 0x187)

# ---------------------------------------------------------------- AMD MSRs (§5.1)
MSR_K7_EVNTSEL0 = 0xC001_0000
MSR_K7_PERFCTR0 = 0xC001_0004
MSR_F15H_PERF_CTL0 = 0xC001_0200
MSR_F15H_PERF_CTR0 = 0xC001_0201
MSR_F15H_PERF_CTR5 = 0xC001_020B
MSR_AMD64_PERF_CNTR_GLOBAL_STATUS = 0xC000_0300
MSR_AMD64_PERF_CNTR_GLOBAL_CTL = 0xC000_0301
MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR = 0xC000_0302
MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET = 0xC000_0303

AMD_MAX_GP = 6                      # KVM_MAX_NR_AMD_GP_COUNTERS
AMD_LEGACY_GP = 4                   # AMD64_NUM_COUNTERS
AMD_CORE_GP = 6                     # AMD64_NUM_COUNTERS_CORE
AMD_COUNTER_WIDTH = 48

K7_ALIASES = tuple(range(0xC001_0000, 0xC001_0008))

# ---------------------------------------------------------------- PERFEVTSEL bits (§4.2 / §5.2)
EVENTSEL_EVENT = 0xFF
EVENTSEL_UMASK = 0xFF00
EVENTSEL_USR = 1 << 16
EVENTSEL_OS = 1 << 17
EVENTSEL_EDGE = 1 << 18
EVENTSEL_PIN_CONTROL = 1 << 19
EVENTSEL_INT = 1 << 20
EVENTSEL_ANY = 1 << 21
EVENTSEL_ENABLE = 1 << 22
EVENTSEL_INV = 1 << 23
EVENTSEL_CMASK = 0xFF00_0000
HSW_IN_TX = 1 << 32
HSW_IN_TX_CHECKPOINTED = 1 << 33
ICL_EVENTSEL_ADAPTIVE = 1 << 34
AMD64_EVENTSEL_EVENT = 0xF_0000_00FF           # event select 7:0 and 35:32

INTEL_EVENTSEL_RSVD_DEFAULT = 0xFFFF_FFFF_0020_0000
X86_RAW_EVENT_MASK = 0x0000_0000_FF84_FFFF
AMD_EVENTSEL_RSVD = 0xFFFF_FFF0_0028_0000
AMD64_RAW_EVENT_MASK = 0x0000_000F_FF84_FFFF
# §9.2 step 2: what an emulated event's selector is compared on
EMULATED_MATCH_MASK = 0x0000_000F_0000_FFFF

# ---------------------------------------------------------------- FIXED_CTR_CTRL (§4.3)
FIXED_BITS_STRIDE = 4
FIXED_FIELD_MASK = 0xF
FIXED_KERNEL = 0x1
FIXED_USER = 0x2
FIXED_ANYTHREAD = 0x4
FIXED_PMI = 0x8
ICL_FIXED_ADAPTIVE = 1 << 32

# fixed counter j -> (pseudo encoding umask<<8|event (§6.5), name)
FIXED_PSEUDO = (0x00C0, 0x003C, 0x0300)
FIXED_NAMES = ("INST_RETIRED.ANY", "CPU_CLK_UNHALTED.THREAD", "CPU_CLK_UNHALTED.REF_TSC")

# ---------------------------------------------------------------- GLOBAL_STATUS (§4.4)
GLOBAL_STATUS_TRACE_TOPA_PMI = 1 << 55
GLOBAL_STATUS_LBRS_FROZEN = 1 << 58
GLOBAL_STATUS_BUFFER_OVF = 1 << 62
GLOBAL_STATUS_COND_CHGD = 1 << 63
GLOBAL_STATUS_BUFFER_OVF_BIT = 62

# ---------------------------------------------------------------- PERF_CAPABILITIES (§2.5)
PERF_CAP_LBR_FMT = 0x3F
PERF_CAP_PEBS_TRAP = 1 << 6
PERF_CAP_ARCH_REG = 1 << 7
PERF_CAP_PEBS_FORMAT = 0xF00
PERF_CAP_FREEZE_SMM = 1 << 12
PERF_CAP_FW_WRITES = 1 << 13
PERF_CAP_PEBS_BASELINE = 1 << 14
PERF_CAP_PERF_METRICS = 1 << 15
PERF_CAP_PEBS_OUTPUT_PT = 1 << 16
PERF_CAP_PEBS_MASK = PERF_CAP_PEBS_TRAP | PERF_CAP_ARCH_REG | PERF_CAP_PEBS_FORMAT | PERF_CAP_PEBS_BASELINE
LBR_FMT_ARCH = 0x3F                 # what an arch-LBR part reports in bits 5:0

# ---------------------------------------------------------------- CPUID bits (§2.2 / §2.4)
CPUID_1_ECX_DTES64 = 1 << 2
CPUID_1_ECX_PDCM = 1 << 15
CPUID_1_EDX_DS = 1 << 21
CPUID_80000001_ECX_PERFCTR_CORE = 1 << 23
CPUID_80000022_EAX_PERFMON_V2 = 1 << 0
CPUID_0A_EDX_ANYTHREAD_DEPRECATED = 1 << 15

# ---------------------------------------------------------------- RDPMC (§3.3 / §3.4)
INTEL_RDPMC_TYPE_MASK = 0xFFFF_0000
INTEL_RDPMC_INDEX_MASK = 0xFFFF
INTEL_RDPMC_GP = 0
INTEL_RDPMC_FIXED = 0x4000_0000
VMWARE_BACKDOOR_PMC_HOST_TSC = 0x10000
VMWARE_BACKDOOR_PMC_REAL_TIME = 0x10001
VMWARE_BACKDOOR_PMC_APPARENT_TIME = 0x10002

# ---------------------------------------------------------------- emulated events (§2.1 step 5)
INTEL_INSTRUCTIONS_RETIRED = 0x00C0
INTEL_BRANCHES_RETIRED = 0x00C4
AMD_INSTRUCTIONS_RETIRED = 0x00C0
AMD_BRANCHES_RETIRED = 0x00C2

# Intel CPU models with PEBS precise-distribution counters (§6.4)
INTEL_ICELAKE_X = 0x6A
INTEL_ICELAKE_D = 0x6C
INTEL_SAPPHIRERAPIDS_X = 0x8F
