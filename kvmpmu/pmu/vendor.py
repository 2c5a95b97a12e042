"""The vendor ops table (KVM's ``struct kvm_pmu_ops``) and KVM's own PMU limits (spec §2.1).

Common code (:mod:`kvmpmu.pmu.vpmu`) never tests a vendor string; it asks the
:class:`VendorOps` of the model's vendor.  Intel rules live in
:mod:`kvmpmu.pmu.intel`, AMD rules in :mod:`kvmpmu.pmu.amd`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from kvmpmu.host.backend import HostPmuCaps

if TYPE_CHECKING:
    from kvmpmu.pmu.counter import Counter
    from kvmpmu.pmu.model import GuestCpuid, PmuModel
    from kvmpmu.pmu.vpmu import VirtualPMU

ReadFn = Callable[[bool], int]
WriteFn = Callable[[int, bool], None]


@dataclass(frozen=True)
class KvmCap:
    """``kvm_pmu_cap`` after KVM's clamps, plus what KVM advertises (spec §2.1, §2.5).

    ``enabled`` False is KVM's ``enable_pmu = false`` (no vPMU at all).
    """

    vendor: str
    enabled: bool
    version: int
    gp_counters: int
    gp_width: int
    fixed_counters: int
    fixed_width: int
    events_len: int
    events_unavailable: int
    supported_perf_capabilities: int
    pdcm: bool              # Intel: PDCM advertised
    pebs: bool              # Intel: PEBS virtualisation (DS/DTES64 advertised)
    tsx: bool               # host HLE/RTM
    perfctr_core: bool      # AMD: PerfCtrCore advertised
    perfmon_v2: bool        # AMD: PerfMonV2 advertised
    host_family: int
    host_model: int
    why_disabled: str | None = None


def kvm_limits(vendor: str) -> HostPmuCaps:
    """A host PMU exactly at KVM's own limits, without LBR, PEBS or TSX (``SimulatedBackend(None)``)."""
    if vendor == "amd":
        return HostPmuCaps(vendor="amd", version=2, gp_counters=6, gp_width=48,
                           fixed_counters=0, fixed_width=0, events_len=0,
                           events_unavailable=0, amd_perfctr_core=True, amd_perfmon_v2=True)
    return HostPmuCaps(vendor="intel", version=2, gp_counters=8, gp_width=48,
                       fixed_counters=3, fixed_width=48, events_len=7, events_unavailable=0,
                       amd_perfctr_core=False, amd_perfmon_v2=False)


class VendorOps:
    """What differs between Intel and AMD.  Methods take the :class:`VirtualPMU` like
    KVM's ops take the vCPU; they read and set its documented state fields."""

    vendor = ""
    max_gp = 0
    max_fixed = 0
    eventsel_event = 0                  # EVENTSEL_EVENT: the event-select bits (§10.4)
    instructions_selector = 0           # §2.1 step 5
    branches_selector = 0

    # -- capabilities and CPUID (§2) -----------------------------------------------
    def kvm_cap(self, host: HostPmuCaps | None) -> KvmCap:
        """Apply §2.1 to the host's PMU (None = KVM's own limits)."""
        raise NotImplementedError

    def guest_cpuid(self, model: PmuModel, cap: KvmCap) -> GuestCpuid:
        """Clamp a model's CPUID to what KVM supports on this host."""
        raise NotImplementedError

    def save_list(self, cap: KvmCap, host: HostPmuCaps | None) -> tuple[int, ...]:
        """KVM's save/restore list of PMU MSRs for this host (§7.8)."""
        raise NotImplementedError

    def routed_msrs(self) -> tuple[int, ...]:
        """Every PMU MSR index of this vendor a VMM must route to the device model."""
        raise NotImplementedError

    # -- refresh / init ------------------------------------------------------------
    def init_counters(self) -> tuple[list[Counter], list[Counter]]:
        """All possible counters (type, global index, fixed pseudo encodings)."""
        raise NotImplementedError

    def refresh(self, pmu: VirtualPMU) -> None:
        """Vendor part of refresh: counts, masks, reserved bits, valid set (§2.3/§2.4)."""
        raise NotImplementedError

    def build_msrs(self, pmu: VirtualPMU, rd: dict[int, ReadFn], wr: dict[int, WriteFn]) -> None:
        """Register read/write handlers for every vendor MSR that exists now
        (``is_valid_msr`` + ``get_msr``/``set_msr``).  Handlers raise GuestFault."""
        raise NotImplementedError

    def global_msrs(self, pmu: VirtualPMU) -> dict[str, int]:
        """Common global MSRs that exist now: role ('status', 'ctrl', 'ovf_ctrl',
        'status_clr', 'status_set', 'amd_status') -> index."""
        raise NotImplementedError

    # -- lookups -------------------------------------------------------------------
    def msr_idx_to_pmc(self, pmu: VirtualPMU, msr: int) -> Counter | None:
        """Counter an MSR write marks in use (§3.2: not the 0x4C1 block)."""
        raise NotImplementedError

    def rdpmc_ecx_to_pmc(self, pmu: VirtualPMU, ecx: int) -> tuple[Counter, int] | None:
        """(counter, result mask) for an RDPMC ECX, or None (§3.3)."""
        raise NotImplementedError

    def check_rdpmc_early(self, pmu: VirtualPMU, ecx: int) -> bool:
        """False when RDPMC faults before KVM could intercept it (§3.5)."""
        return True

    # -- programming ---------------------------------------------------------------
    def fixed_field(self, pmu: VirtualPMU, c: Counter) -> int:
        """The 4-bit FIXED_CTR_CTRL field of a fixed counter."""
        return 0

    def precise_level(self, pmu: VirtualPMU, c: Counter) -> int:
        """precise_ip for a PEBS counter (§6.4)."""
        return 1

    def check_perf_capabilities_write(self, pmu: VirtualPMU, data: int) -> str | None:
        """Vendor checks of a host PERF_CAPABILITIES write before the common ones (§2.5)."""
        return None

    def clamp_perf_capabilities(self, pmu: VirtualPMU, value: int) -> int:
        """A model's PERF_CAPABILITIES reduced to what KVM would accept for this vCPU."""
        return value & pmu._cap.supported_perf_capabilities

    def deliver_pmi(self, pmu: VirtualPMU) -> None:
        """Vendor hook when a PMI is delivered (Intel LBR freeze, §8.6)."""


_OPS: dict[str, VendorOps] = {}


def register(ops: VendorOps) -> VendorOps:
    """Add a vendor's ops to the table (done by intel.py and amd.py at import)."""
    _OPS[ops.vendor] = ops
    return ops


def get_ops(vendor: str) -> VendorOps:
    """The ops of ``vendor``; ValueError for an unknown one."""
    if not _OPS:
        from kvmpmu.pmu import amd, intel  # noqa: F401  (registration)
    try:
        return _OPS[vendor]
    except KeyError:
        raise ValueError(f"unknown PMU vendor {vendor!r} (expected 'intel' or 'amd')") from None
