"""AMD vendor rules (KVM's ``svm/pmu.c`` and ``svm_set_cpu_caps``): spec §2.1, §2.4, §3.3, §5.

Notes (6.12.117):
* The K7 block exists whenever ``version > 0`` and the F15H block whenever the
  guest has PerfCtrCore, independently of the counter number; a counter
  number >= nr_gp is "existing but unmappable" and faults for host accesses
  too (§5.1).
* Guest CPUID is clamped to what KVM advertises before refresh reads it, so
  the raw-vs-supported CPUID bit distinction of ≈6.14 never shows (§2.3).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from kvmpmu.host.backend import HostPmuCaps
from kvmpmu.pmu import constants as C
from kvmpmu.pmu.counter import Counter
from kvmpmu.pmu.errors import GuestFault
from kvmpmu.pmu.model import GuestCpuid, PmuModel
from kvmpmu.pmu.vendor import KvmCap, ReadFn, VendorOps, WriteFn, kvm_limits, register

if TYPE_CHECKING:
    from kvmpmu.pmu.vpmu import VirtualPMU

M64 = C.M64


class AmdOps(VendorOps):
    """AMD (SVM) rules."""

    vendor = "amd"
    max_gp = C.AMD_MAX_GP
    max_fixed = 0
    eventsel_event = C.AMD64_EVENTSEL_EVENT
    instructions_selector = C.AMD_INSTRUCTIONS_RETIRED
    branches_selector = C.AMD_BRANCHES_RETIRED

    # -- §2.1 / §2.4 ---------------------------------------------------------------
    def kvm_cap(self, host: HostPmuCaps | None) -> KvmCap:
        h = host if host is not None else kvm_limits("amd")
        why = None
        if h.hybrid:
            why = "hybrid host PMU: KVM disables the vPMU"
        elif h.gp_counters == 0:
            why = "host has no general-purpose counters"
        elif h.gp_counters < C.AMD_LEGACY_GP:
            why = "host has fewer than the 4 architectural AMD counters"
        if why is not None:
            return KvmCap("amd", False, 0, 0, 0, 0, 0, 0, 0, 0, False, False, h.tsx,
                          False, False, h.cpu_family, h.cpu_model, why)
        version = min(h.version, 2)
        gp = min(h.gp_counters, C.AMD_MAX_GP)
        if gp < C.AMD_CORE_GP:
            gp = min(C.AMD_LEGACY_GP, gp)
            perfctr_core = False
        else:
            perfctr_core = h.amd_perfctr_core
        perfmon_v2 = h.amd_perfmon_v2 and version == 2 and perfctr_core
        return KvmCap(
            vendor="amd", enabled=True, version=version, gp_counters=gp,
            gp_width=C.AMD_COUNTER_WIDTH, fixed_counters=0, fixed_width=0, events_len=0,
            events_unavailable=0, supported_perf_capabilities=0, pdcm=False, pebs=False,
            tsx=h.tsx, perfctr_core=perfctr_core, perfmon_v2=perfmon_v2,
            host_family=h.cpu_family, host_model=h.cpu_model)

    def guest_cpuid(self, model: PmuModel, cap: KvmCap) -> GuestCpuid:
        core = model.amd_perfctr_core and cap.perfctr_core
        v2 = model.amd_perfmon_v2 and cap.perfmon_v2
        gp = max(0, min(model.gp_counters, cap.gp_counters)) if v2 else 0
        version = 0 if (model.version <= 0 or not cap.enabled) else (2 if v2 else 1)
        return GuestCpuid(
            vendor="amd", family=model.family, model=model.model, version=version,
            gp_counters=gp, gp_width=C.AMD_COUNTER_WIDTH, fixed_counters=0, fixed_width=0,
            events_len=0, events_unavailable=0, fixed_counter_bitmap=0, pdcm=False,
            ds=False, dtes64=False, tsx=model.tsx and cap.tsx, amd_perfctr_core=core,
            amd_perfmon_v2=v2)

    def save_list(self, cap: KvmCap, host: HostPmuCaps | None) -> tuple[int, ...]:
        if not cap.enabled:
            return ()
        h = host if host is not None else kvm_limits("amd")
        out = [C.MSR_K7_EVNTSEL0 + i for i in range(4)] + [C.MSR_K7_PERFCTR0 + i for i in range(4)]
        if h.amd_perfctr_core:      # the host has the F15H block
            out += [C.MSR_F15H_PERF_CTL0 + 2 * i for i in range(6)]
            out += [C.MSR_F15H_PERF_CTR0 + 2 * i for i in range(6)]
        if cap.perfmon_v2:
            # GlobalStatusSet is listed too: 6.12.117 carries its stable backport (§5.1)
            out += [C.MSR_AMD64_PERF_CNTR_GLOBAL_CTL, C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS,
                    C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET]
        out.append(C.MSR_IA32_PERF_CAPABILITIES)
        return tuple(out)

    def routed_msrs(self) -> tuple[int, ...]:
        out = list(range(C.MSR_K7_EVNTSEL0, C.MSR_K7_EVNTSEL0 + 8))
        out += range(C.MSR_F15H_PERF_CTL0, C.MSR_F15H_PERF_CTR5 + 1)
        out += range(C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET + 1)
        out.append(C.MSR_IA32_PERF_CAPABILITIES)
        return tuple(out)

    # -- init / refresh (§2.4) -----------------------------------------------------
    def init_counters(self) -> tuple[list[Counter], list[Counter]]:
        return [Counter(i, False, i, f"GP{i}") for i in range(C.AMD_MAX_GP)], []

    def refresh(self, pmu: VirtualPMU) -> None:
        g, cap = pmu._guest, pmu._cap
        pmu.version = 1
        if g.amd_perfmon_v2:
            pmu.version = 2
            nr = g.gp_counters          # NumPerfCtrCore, may be 0
        elif g.amd_perfctr_core:
            nr = C.AMD_CORE_GP
        else:
            nr = C.AMD_LEGACY_GP
        pmu.nr_gp = min(nr, cap.gp_counters)
        if pmu.version > 1:
            pmu.global_ctrl_rsvd = ~C.mask(pmu.nr_gp) & M64
            pmu.global_status_rsvd = pmu.global_ctrl_rsvd
        pmu.gp_mask = C.mask(C.AMD_COUNTER_WIDTH)
        pmu.eventsel_rsvd = C.AMD_EVENTSEL_RSVD
        pmu.raw_event_mask = C.AMD64_RAW_EVENT_MASK
        pmu.nr_fixed = 0
        pmu.fixed_mask = 0
        pmu.valid = C.mask(pmu.nr_gp)
        for c in pmu.gp:
            c.mask = pmu.gp_mask
            c.rsvd = pmu.eventsel_rsvd

    # -- MSRs (§5.1) ---------------------------------------------------------------
    def _mapped(self, pmu: VirtualPMU, i: int) -> Counter | None:
        # get_gp_pmc_amd(): gated on the VM's vPMU enable, then i < nr_gp
        if pmu._vm_enabled and i < pmu.nr_gp:
            return pmu.gp[i]
        return None

    def build_msrs(self, pmu: VirtualPMU, rd: dict[int, ReadFn], wr: dict[int, WriteFn]) -> None:
        blocks = []
        if pmu.version > 0:
            blocks += [(C.MSR_K7_EVNTSEL0 + i, C.MSR_K7_PERFCTR0 + i, i) for i in range(4)]
        if pmu._guest.amd_perfctr_core:
            blocks += [(C.MSR_F15H_PERF_CTL0 + 2 * i, C.MSR_F15H_PERF_CTR0 + 2 * i, i)
                       for i in range(6)]
        for ctl, ctr, i in blocks:
            c = self._mapped(pmu, i)
            if c is None:
                rd[ctl], wr[ctl] = self._unmappable(ctl)
                rd[ctr], wr[ctr] = self._unmappable(ctr)
                continue
            rd[ctl] = self._r_eventsel(c)
            wr[ctl] = self._w_eventsel(pmu, c)
            rd[ctr] = c.read
            wr[ctr] = self._w_counter(pmu, c)

    def global_msrs(self, pmu: VirtualPMU) -> dict[str, int]:
        if pmu.version > 1:
            return {"amd_status": C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS,
                    "amd_ctl": C.MSR_AMD64_PERF_CNTR_GLOBAL_CTL,
                    "status_clr": C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR,
                    "status_set": C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET}
        return {}

    @staticmethod
    def _unmappable(index: int) -> tuple[ReadFn, WriteFn]:
        def r() -> int:
            raise GuestFault(index, "AMD counter MSR beyond the number of counters")

        def w(value: int, host: bool) -> None:
            raise GuestFault(index, "AMD counter MSR beyond the number of counters")
        return r, w

    @staticmethod
    def _r_eventsel(c: Counter) -> ReadFn:
        return lambda: c.eventsel

    @staticmethod
    def _w_eventsel(pmu: VirtualPMU, c: Counter) -> WriteFn:
        bit = c.bit

        def w(value: int, host: bool) -> None:
            pmu._in_use |= bit
            value &= ~c.rsvd            # AMD clears reserved bits silently (§5.2)
            if value != c.eventsel:
                c.eventsel = value
                pmu._eventsel_changed(c)
        return w

    @staticmethod
    def _w_counter(pmu: VirtualPMU, c: Counter) -> WriteFn:
        bit, write = c.bit, c.write

        def w(value: int, host: bool) -> None:
            pmu._in_use |= bit
            write(value)
        return w

    # -- lookups (§3) --------------------------------------------------------------
    def msr_idx_to_pmc(self, pmu: VirtualPMU, msr: int) -> Counter | None:
        if C.MSR_K7_EVNTSEL0 <= msr < C.MSR_K7_EVNTSEL0 + 8:
            return self._mapped(pmu, (msr - C.MSR_K7_EVNTSEL0) & 3)
        if C.MSR_F15H_PERF_CTL0 <= msr <= C.MSR_F15H_PERF_CTR5 and pmu._guest.amd_perfctr_core:
            return self._mapped(pmu, (msr - C.MSR_F15H_PERF_CTL0) // 2)
        return None

    def rdpmc_ecx_to_pmc(self, pmu: VirtualPMU, ecx: int) -> tuple[Counter, int] | None:
        if ecx < pmu.nr_gp:             # 6.9+: no bits stripped (§3.3)
            return pmu.gp[ecx], M64
        return None

    def check_rdpmc_early(self, pmu: VirtualPMU, ecx: int) -> bool:
        # On AMD every RDPMC exception has priority over the intercept (§3.5).
        return ecx < pmu.nr_gp


AMD = register(AmdOps())
