"""CPU PMU models (what the guest CPUID asks for) and the guest CPUID built from them.

A :class:`PmuModel` states what a VMM would put in the guest's CPUID for the
PMU: leaf 0xA on Intel, 8000_0001h.ECX[23] and 8000_0022h on AMD, the PDCM,
DS and DTES64 bits of leaf 1, and the initial IA32_PERF_CAPABILITIES.  The
device model clamps it as KVM clamps guest CPUID to what KVM and the host
support (spec §2.1-§2.4); the result is a :class:`GuestCpuid`, which is what
``VirtualPMU.cpuid()`` returns and what refresh reads.
"""
from __future__ import annotations

from dataclasses import dataclass

from kvmpmu.pmu import constants as C


@dataclass(frozen=True)
class PmuModel:
    """The PMU of one CPU model, as guest CPUID would describe it.

    Intel fields mirror CPUID.0AH (``version`` = EAX[7:0], ``gp_counters`` =
    EAX[15:8], ``gp_width`` = EAX[23:16], ``events_len`` = EAX[31:24],
    ``events_unavailable`` = EBX, ``fixed_counter_bitmap`` = ECX,
    ``fixed_counters`` = EDX[4:0], ``fixed_width`` = EDX[12:5]).

    AMD: ``version`` 0 disables the vPMU (KVM's per-VM switch); otherwise the
    version is 2 with ``amd_perfmon_v2`` and 1 without, ``gp_counters`` is
    NumPerfCtrCore (8000_0022h EBX[3:0], used only with PerfMonV2), and the
    widths are architecturally 48.
    """

    vendor: str                       # "intel" | "amd"
    family: int
    model: int
    version: int
    gp_counters: int
    gp_width: int
    fixed_counters: int
    fixed_width: int
    events_len: int
    events_unavailable: int
    pdcm: bool
    perf_capabilities: int
    tsx: bool                         # guest CPUID has HLE/RTM
    amd_perfctr_core: bool = False
    amd_perfmon_v2: bool = False
    fixed_counter_bitmap: int = 0
    ds: bool = False                  # CPUID.1.EDX[21]
    dtes64: bool = False              # CPUID.1.ECX[2]
    name: str = "custom"

    def cpuid(self) -> list[tuple[int, int, int, int, int, int]]:
        """The guest CPUID leaves for this model on a host at KVM's own limits.

        ``VirtualPMU.cpuid()`` gives the leaves clamped to its backend's host.
        """
        from kvmpmu.pmu.vendor import get_ops   # vendor rules live behind the ops table
        ops = get_ops(self.vendor)
        return ops.guest_cpuid(self, ops.kvm_cap(None)).leaves()


@dataclass(frozen=True)
class GuestCpuid:
    """The PMU part of the guest CPUID after KVM's clamps (what refresh reads).

    ``version`` is leaf 0xA's EAX[7:0] on Intel (0 = no vPMU); on AMD 0 means
    the vPMU is disabled for the VM and any other value is ignored (refresh
    derives 1 or 2 from PerfMonV2).
    """

    vendor: str
    family: int
    model: int
    version: int
    gp_counters: int
    gp_width: int
    fixed_counters: int
    fixed_width: int
    events_len: int
    events_unavailable: int
    fixed_counter_bitmap: int
    pdcm: bool
    ds: bool
    dtes64: bool
    tsx: bool
    amd_perfctr_core: bool
    amd_perfmon_v2: bool

    def leaves(self) -> list[tuple[int, int, int, int, int, int]]:
        """(leaf, subleaf, eax, ebx, ecx, edx) with only the PMU's bits set.

        Leaf 1 carries PDCM/DTES64/DS (Intel) and leaf 8000_0001h PerfCtrCore
        (AMD): a VMM merges these bits into its own leaves; leaf 0xA and
        8000_0022h belong to the PMU entirely.
        """
        if self.vendor == "intel":
            ecx1 = (C.CPUID_1_ECX_PDCM if self.pdcm else 0) | (C.CPUID_1_ECX_DTES64 if self.dtes64 else 0)
            edx1 = C.CPUID_1_EDX_DS if self.ds else 0
            if self.version == 0:
                leaf_a = (0, 0, 0, 0)
            else:
                eax = (self.version & 0xFF) | (self.gp_counters << 8) | (self.gp_width << 16) \
                    | (self.events_len << 24)
                ebx = self.events_unavailable & C.mask(self.events_len)
                ecx = self.fixed_counter_bitmap
                edx = self.fixed_counters | (self.fixed_width << 5) | C.CPUID_0A_EDX_ANYTHREAD_DEPRECATED
                leaf_a = (eax, ebx, ecx, edx)
            return [(0x1, 0, 0, 0, ecx1, edx1), (0xA, 0, *leaf_a)]
        ecx = C.CPUID_80000001_ECX_PERFCTR_CORE if self.amd_perfctr_core else 0
        if self.amd_perfmon_v2:
            ext = (C.CPUID_80000022_EAX_PERFMON_V2, self.gp_counters & 0xF, 0, 0)
        else:
            ext = (0, 0, 0, 0)
        return [(0x8000_0001, 0, 0, 0, ecx, 0), (0x8000_0022, 0, *ext)]
