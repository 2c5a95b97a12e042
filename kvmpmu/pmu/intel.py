"""Intel vendor rules (KVM's ``vmx/pmu_intel.c`` and the VMX parts of §2): spec §2.1-§2.5, §3, §4.

Decisions recorded here (spec Q3, 6.12.117 read in /tmp/linux-6.12):
* TSX legality (§2.3 step 8): KVM tests guest CPUID.7.0.EBX against a
  constant built from feature *numbers*; a PmuModel does not carry leaf 7, so
  we implement the evident intent: IN_TX/IN_TXCP are legal iff the host has
  HLE/RTM **and** the model's ``tsx`` says the guest has them.
* Guest LBR (§2.3 step 10, §4.7) is out of scope: the LBR format is accepted in
  PERF_CAPABILITIES exactly as KVM accepts it, but no LBR MSRs are emulated.
* The guest CPUID version is clamped to KVM's supported version (2), as a VMM
  building guest CPUID from KVM_GET_SUPPORTED_CPUID does; a claimed v3+ would
  behave like v2 anyway except for the LBR freeze (§2.2), which is out of scope.
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


def _sign_extend32(v: int) -> int:
    v &= 0xFFFF_FFFF
    return v | 0xFFFF_FFFF_0000_0000 if v & 0x8000_0000 else v


def _noncanonical(addr: int) -> bool:
    # 48-bit virtual addresses (no LA57 in a PmuModel): bits 63:47 all equal
    top = addr >> 47
    return top not in (0, 0x1FFFF)


class IntelOps(VendorOps):
    """Intel (VMX) rules."""

    vendor = "intel"
    max_gp = C.INTEL_MAX_GP
    max_fixed = C.INTEL_MAX_FIXED
    eventsel_event = C.EVENTSEL_EVENT
    instructions_selector = C.INTEL_INSTRUCTIONS_RETIRED
    branches_selector = C.INTEL_BRANCHES_RETIRED

    # -- §2.1 / §2.5 ---------------------------------------------------------------
    def kvm_cap(self, host: HostPmuCaps | None) -> KvmCap:
        h = host if host is not None else kvm_limits("intel")
        why = None
        if h.hybrid:
            why = "hybrid host PMU: KVM disables the vPMU"
        elif h.gp_counters < 1:
            why = "host has no general-purpose counters"
        elif h.version == 0:
            why = "host has no architectural perfmon (version 0)"
        if why is not None:
            return KvmCap("intel", False, 0, 0, 0, 0, 0, 0, 0, 0, False, False, h.tsx,
                          False, False, h.cpu_family, h.cpu_model, why)
        pebs = bool(h.perf_capabilities & C.PERF_CAP_PEBS_FORMAT) and h.pebs_ept
        sup = C.PERF_CAP_FW_WRITES      # always: counters are virtual
        lbr = h.perf_capabilities & C.PERF_CAP_LBR_FMT
        if h.lbr_callstack and lbr and lbr != C.LBR_FMT_ARCH:
            sup |= lbr
        if pebs:
            sup |= h.perf_capabilities & C.PERF_CAP_PEBS_MASK
            sup &= ~C.PERF_CAP_PEBS_BASELINE    # adaptive PEBS never supported (6.9+)
        return KvmCap(
            vendor="intel", enabled=True, version=min(h.version, 2),
            gp_counters=min(h.gp_counters, C.INTEL_MAX_GP), gp_width=h.gp_width,
            fixed_counters=min(h.fixed_counters, C.INTEL_MAX_FIXED), fixed_width=h.fixed_width,
            events_len=h.events_len, events_unavailable=h.events_unavailable,
            supported_perf_capabilities=sup, pdcm=True, pebs=pebs, tsx=h.tsx,
            perfctr_core=False, perfmon_v2=False, host_family=h.cpu_family,
            host_model=h.cpu_model)

    def guest_cpuid(self, model: PmuModel, cap: KvmCap) -> GuestCpuid:
        if not cap.enabled or model.version <= 0:
            return GuestCpuid("intel", model.family, model.model, 0, 0, 0, 0, 0, 0, 0, 0,
                              model.pdcm and cap.pdcm, model.ds and cap.pebs,
                              model.dtes64 and cap.pebs, model.tsx and cap.tsx, False, False)
        version = min(model.version, cap.version)
        events_len = max(0, min(model.events_len, cap.events_len))
        unavailable = (model.events_unavailable | cap.events_unavailable) & C.mask(events_len)
        if version < 2:
            fixed, fixed_width = 0, 0
        else:
            fixed = max(0, min(model.fixed_counters, cap.fixed_counters))
            fixed_width = max(0, min(model.fixed_width, cap.fixed_width))
        return GuestCpuid(
            vendor="intel", family=model.family, model=model.model, version=version,
            gp_counters=max(0, min(model.gp_counters, cap.gp_counters)),
            gp_width=max(0, min(model.gp_width, cap.gp_width)),
            fixed_counters=fixed, fixed_width=fixed_width, events_len=events_len,
            events_unavailable=unavailable,
            fixed_counter_bitmap=0,     # KVM supports ECX = 0 (§2.2)
            pdcm=model.pdcm and cap.pdcm, ds=model.ds and cap.pebs,
            dtes64=model.dtes64 and cap.pebs, tsx=model.tsx and cap.tsx,
            amd_perfctr_core=False, amd_perfmon_v2=False)

    def save_list(self, cap: KvmCap, host: HostPmuCaps | None) -> tuple[int, ...]:
        if not cap.enabled:
            return ()
        h = host if host is not None else kvm_limits("intel")
        out = [C.MSR_CORE_PERF_FIXED_CTR0 + j for j in range(cap.fixed_counters)]
        if cap.version >= 2:
            out += [C.MSR_CORE_PERF_FIXED_CTR_CTRL, C.MSR_CORE_PERF_GLOBAL_STATUS,
                    C.MSR_CORE_PERF_GLOBAL_CTRL]
        if h.perf_capabilities & C.PERF_CAP_PEBS_FORMAT:
            out += [C.MSR_IA32_PEBS_ENABLE, C.MSR_IA32_DS_AREA]
            if h.perf_capabilities & C.PERF_CAP_PEBS_BASELINE:
                out.append(C.MSR_PEBS_DATA_CFG)
        out += [C.MSR_IA32_PERFCTR0 + i for i in range(cap.gp_counters)]
        out += [C.MSR_P6_EVNTSEL0 + i for i in range(cap.gp_counters)]
        out.append(C.MSR_IA32_PERF_CAPABILITIES)     # an emulated (feature) MSR
        return tuple(out)

    def routed_msrs(self) -> tuple[int, ...]:
        out = list(range(C.MSR_IA32_PERFCTR0, C.MSR_IA32_PERFCTR0 + C.INTEL_MAX_GP))
        out += range(C.MSR_IA32_PMC0, C.MSR_IA32_PMC0 + C.INTEL_MAX_GP)
        out += range(C.MSR_P6_EVNTSEL0, C.MSR_P6_EVNTSEL0 + C.INTEL_MAX_GP)
        out += range(C.MSR_CORE_PERF_FIXED_CTR0, C.MSR_CORE_PERF_FIXED_CTR3 + 1)
        out += range(C.MSR_CORE_PERF_FIXED_CTR_CTRL, C.MSR_PERF_GLOBAL_INUSE + 1)
        out += [C.MSR_PERF_METRICS, C.MSR_IA32_PERF_CAPABILITIES, C.MSR_IA32_PEBS_ENABLE,
                C.MSR_PEBS_DATA_CFG, C.MSR_IA32_DS_AREA]
        return tuple(out)

    # -- init / refresh (§2.3, §7.7) -----------------------------------------------
    def init_counters(self) -> tuple[list[Counter], list[Counter]]:
        gp = [Counter(i, False, i, f"GP{i}") for i in range(C.INTEL_MAX_GP)]
        fixed = [Counter(C.FIXED_IDX_BASE + j, True, j, f"FIXED{j}", C.FIXED_PSEUDO[j])
                 for j in range(C.INTEL_MAX_FIXED)]
        return gp, fixed

    def refresh(self, pmu: VirtualPMU) -> None:
        g, cap = pmu._guest, pmu._cap
        pmu.version = g.version
        if not pmu.version:
            return
        pmu.nr_gp = min(g.gp_counters, cap.gp_counters)
        pmu.gp_mask = C.mask(min(g.gp_width, cap.gp_width))
        length = min(g.events_len, cap.events_len)
        # Only informational since 6.9: EBX gates neither GP events nor fixed counters.
        pmu.available_event_types = ~g.events_unavailable & C.mask(length)
        if pmu.version == 1:
            pmu.nr_fixed = 0
        else:
            pmu.nr_fixed = min(g.fixed_counters, cap.fixed_counters)
            pmu.fixed_mask = C.mask(min(g.fixed_width, cap.fixed_width))
        legal = C.FIXED_KERNEL | C.FIXED_USER | C.FIXED_PMI
        for j in range(pmu.nr_fixed):
            pmu.fixed_ctr_ctrl_rsvd &= ~(legal << (C.FIXED_BITS_STRIDE * j)) & M64
        counters = C.mask(pmu.nr_gp) | (C.mask(pmu.nr_fixed) << C.FIXED_IDX_BASE)
        counter_rsvd = ~counters & M64
        pmu.global_ctrl_rsvd = counter_rsvd
        pmu.global_status_rsvd = counter_rsvd & ~(C.GLOBAL_STATUS_BUFFER_OVF | C.GLOBAL_STATUS_COND_CHGD)
        if cap.tsx and g.tsx:
            pmu.eventsel_rsvd ^= C.HSW_IN_TX
            pmu.raw_event_mask |= C.HSW_IN_TX | C.HSW_IN_TX_CHECKPOINTED
        pmu.valid = counters
        caps = pmu.perf_capabilities if g.pdcm else 0
        pmu.lbr_enabled = bool(caps & C.PERF_CAP_LBR_FMT) and self._model_consistent(pmu)
        if caps & C.PERF_CAP_PEBS_FORMAT:
            if caps & C.PERF_CAP_PEBS_BASELINE:     # unreachable in M (§2.3 step 11)
                pmu.pebs_enable_rsvd = counter_rsvd
                pmu.eventsel_rsvd &= ~C.ICL_EVENTSEL_ADAPTIVE & M64
                pmu.pebs_data_cfg_rsvd = ~0xFF00_000F & M64
                for j in range(pmu.nr_fixed):
                    pmu.fixed_ctr_ctrl_rsvd &= ~(C.ICL_FIXED_ADAPTIVE << (C.FIXED_BITS_STRIDE * j)) & M64
            else:
                pmu.pebs_enable_rsvd = ~C.mask(pmu.nr_gp) & M64
        for c in pmu.gp:
            c.mask = pmu.gp_mask
            c.rsvd = pmu.eventsel_rsvd
        # IN_TXCP is legal on GP counter 2 only (§4.2)
        if pmu.raw_event_mask & C.HSW_IN_TX_CHECKPOINTED:
            pmu.gp[2].rsvd ^= C.HSW_IN_TX_CHECKPOINTED
        for c in pmu.fixed:
            c.mask = pmu.fixed_mask

    @staticmethod
    def _model_consistent(pmu: VirtualPMU) -> bool:
        # cpuid_model_is_consistent(): the host's model number equals the guest's
        return pmu._cap.host_model == pmu._guest.model

    def _caps(self, pmu: VirtualPMU) -> int:
        return pmu.perf_capabilities if pmu._guest.pdcm else 0

    # -- MSRs (§4.1) ---------------------------------------------------------------
    def build_msrs(self, pmu: VirtualPMU, rd: dict[int, ReadFn], wr: dict[int, WriteFn]) -> None:
        if not pmu.version:
            return
        caps = self._caps(pmu)
        fw = bool(caps & C.PERF_CAP_FW_WRITES)
        for i in range(pmu.nr_gp):
            c = pmu.gp[i]
            rd[C.MSR_IA32_PERFCTR0 + i] = c.read
            wr[C.MSR_IA32_PERFCTR0 + i] = self._w_pmc_legacy(pmu, c)
            rd[C.MSR_P6_EVNTSEL0 + i] = self._r_eventsel(c)
            wr[C.MSR_P6_EVNTSEL0 + i] = self._w_eventsel(pmu, c)
            if fw:
                rd[C.MSR_IA32_PMC0 + i] = c.read
                wr[C.MSR_IA32_PMC0 + i] = self._w_pmc_full(pmu, c)
        for j in range(pmu.nr_fixed):
            c = pmu.fixed[j]
            rd[C.MSR_CORE_PERF_FIXED_CTR0 + j] = c.read
            wr[C.MSR_CORE_PERF_FIXED_CTR0 + j] = self._w_fixed(pmu, c)
        if pmu.version > 1:
            rd[C.MSR_CORE_PERF_FIXED_CTR_CTRL] = lambda: pmu.fixed_ctr_ctrl
            wr[C.MSR_CORE_PERF_FIXED_CTR_CTRL] = lambda v, host: self._w_fixed_ctrl(pmu, v)
        if caps & C.PERF_CAP_PEBS_FORMAT:
            rd[C.MSR_IA32_PEBS_ENABLE] = lambda: pmu.pebs_enable
            wr[C.MSR_IA32_PEBS_ENABLE] = lambda v, host: self._w_pebs_enable(pmu, v)
        if pmu._guest.ds:
            rd[C.MSR_IA32_DS_AREA] = lambda: pmu.ds_area
            wr[C.MSR_IA32_DS_AREA] = lambda v, host: self._w_ds_area(pmu, v)
        if caps & C.PERF_CAP_PEBS_BASELINE and (caps & C.PERF_CAP_PEBS_FORMAT) > 0x300:
            rd[C.MSR_PEBS_DATA_CFG] = lambda: pmu.pebs_data_cfg
            wr[C.MSR_PEBS_DATA_CFG] = lambda v, host: self._w_pebs_data_cfg(pmu, v)

    def global_msrs(self, pmu: VirtualPMU) -> dict[str, int]:
        if pmu.version > 1:
            return {"intel_status": C.MSR_CORE_PERF_GLOBAL_STATUS,
                    "intel_ctrl": C.MSR_CORE_PERF_GLOBAL_CTRL,
                    "ovf_ctrl": C.MSR_CORE_PERF_GLOBAL_OVF_CTRL}
        return {}

    @staticmethod
    def _r_eventsel(c: Counter) -> ReadFn:
        return lambda: c.eventsel

    @staticmethod
    def _w_pmc_legacy(pmu: VirtualPMU, c: Counter) -> WriteFn:
        bit, write = c.bit, c.write

        def w(value: int, host: bool) -> None:
            pmu._in_use |= bit
            # a guest write through the legacy alias sign-extends bit 31 (§4.5)
            write(value if host else _sign_extend32(value))
        return w

    @staticmethod
    def _w_pmc_full(pmu: VirtualPMU, c: Counter) -> WriteFn:
        index, write = C.MSR_IA32_PMC0 + c.j, c.write

        def w(value: int, host: bool) -> None:
            # the 0x4C1 block does not mark the counter in use (§3.2)
            if value & ~c.mask:
                raise GuestFault(index, "full-width counter write above the counter width")
            write(value)
        return w

    @staticmethod
    def _w_fixed(pmu: VirtualPMU, c: Counter) -> WriteFn:
        bit, write = c.bit, c.write

        def w(value: int, host: bool) -> None:
            pmu._in_use |= bit
            write(value)
        return w

    @staticmethod
    def _w_eventsel(pmu: VirtualPMU, c: Counter) -> WriteFn:
        bit, index = c.bit, C.MSR_P6_EVNTSEL0 + c.j

        def w(value: int, host: bool) -> None:
            pmu._in_use |= bit
            if value & c.rsvd:
                raise GuestFault(index, "reserved PERFEVTSEL bits set")
            if value != c.eventsel:
                c.eventsel = value
                pmu._eventsel_changed(c)
        return w

    @staticmethod
    def _w_fixed_ctrl(pmu: VirtualPMU, data: int) -> None:
        if data & pmu.fixed_ctr_ctrl_rsvd:
            raise GuestFault(C.MSR_CORE_PERF_FIXED_CTR_CTRL, "reserved FIXED_CTR_CTRL bits set")
        old = pmu.fixed_ctr_ctrl
        if data == old:
            return
        pmu.fixed_ctr_ctrl = data
        changed = 0
        for j in range(pmu.nr_fixed):
            shift = C.FIXED_BITS_STRIDE * j
            if ((old ^ data) >> shift) & C.FIXED_FIELD_MASK:
                changed |= pmu.fixed[j].bit
        if changed:
            pmu._in_use |= changed
            pmu._fixed_ctrl_changed(changed)

    @staticmethod
    def _w_pebs_enable(pmu: VirtualPMU, data: int) -> None:
        if data & pmu.pebs_enable_rsvd:
            raise GuestFault(C.MSR_IA32_PEBS_ENABLE, "reserved PEBS_ENABLE bits set")
        if data != pmu.pebs_enable:
            diff = pmu.pebs_enable ^ data
            pmu.pebs_enable = data
            pmu._request(diff)

    @staticmethod
    def _w_ds_area(pmu: VirtualPMU, data: int) -> None:
        if _noncanonical(data):
            raise GuestFault(C.MSR_IA32_DS_AREA, "non-canonical DS_AREA")
        pmu.ds_area = data

    @staticmethod
    def _w_pebs_data_cfg(pmu: VirtualPMU, data: int) -> None:
        if data & pmu.pebs_data_cfg_rsvd:
            raise GuestFault(C.MSR_PEBS_DATA_CFG, "reserved PEBS_DATA_CFG bits set")
        pmu.pebs_data_cfg = data

    # -- lookups (§3) --------------------------------------------------------------
    def msr_idx_to_pmc(self, pmu: VirtualPMU, msr: int) -> Counter | None:
        for base, lst, n in ((C.MSR_CORE_PERF_FIXED_CTR0, pmu.fixed, pmu.nr_fixed),
                             (C.MSR_P6_EVNTSEL0, pmu.gp, pmu.nr_gp),
                             (C.MSR_IA32_PERFCTR0, pmu.gp, pmu.nr_gp)):
            if base <= msr < base + n:
                return lst[msr - base]
        return None

    def rdpmc_ecx_to_pmc(self, pmu: VirtualPMU, ecx: int) -> tuple[Counter, int] | None:
        kind = ecx & C.INTEL_RDPMC_TYPE_MASK
        if kind == C.INTEL_RDPMC_FIXED:
            lst, n, m = pmu.fixed, pmu.nr_fixed, pmu.fixed_mask
        elif kind == C.INTEL_RDPMC_GP:
            lst, n, m = pmu.gp, pmu.nr_gp, pmu.gp_mask
        else:                       # fast-read bit 31, metrics (29), anything else
            return None
        i = ecx & C.INTEL_RDPMC_INDEX_MASK
        if i >= n:
            return None
        return lst[i], m

    # -- programming ---------------------------------------------------------------
    def fixed_field(self, pmu: VirtualPMU, c: Counter) -> int:
        return (pmu.fixed_ctr_ctrl >> (C.FIXED_BITS_STRIDE * c.j)) & C.FIXED_FIELD_MASK

    def precise_level(self, pmu: VirtualPMU, c: Counter) -> int:
        cap = pmu._cap
        if cap.host_family == 6:
            if c.idx == 0 and cap.host_model == C.INTEL_SAPPHIRERAPIDS_X:
                return 3            # PDist
            if c.idx == C.FIXED_IDX_BASE and cap.host_model in (
                    C.INTEL_ICELAKE_X, C.INTEL_ICELAKE_D, C.INTEL_SAPPHIRERAPIDS_X):
                return 3            # PDIR / PDIR++
        return 1

    def check_perf_capabilities_write(self, pmu: VirtualPMU, data: int) -> str | None:
        # vmx_set_msr() checks, 6.12 order (§2.5 "M 6.9-6.12")
        sup = pmu._cap.supported_perf_capabilities
        if data and not pmu.version:
            return "a non-zero PERF_CAPABILITIES needs PMU version != 0"
        if data & C.PERF_CAP_LBR_FMT:
            if (data & C.PERF_CAP_LBR_FMT) != (sup & C.PERF_CAP_LBR_FMT):
                return "LBR format differs from the supported one"
            if not self._model_consistent(pmu):
                return "LBR needs the guest CPU model to match the host"
        if data & C.PERF_CAP_PEBS_FORMAT:
            if (data & C.PERF_CAP_PEBS_MASK) != (sup & C.PERF_CAP_PEBS_MASK):
                return "PEBS capabilities differ from the supported ones"
            if not pmu._guest.ds:
                return "PEBS needs guest CPUID DS"
            if not pmu._guest.dtes64:
                return "PEBS needs guest CPUID DTES64"
            if not self._model_consistent(pmu):
                return "PEBS needs the guest CPU model to match the host"
        return None

    def clamp_perf_capabilities(self, pmu: VirtualPMU, value: int) -> int:
        """The model's PERF_CAPABILITIES as KVM would accept it (what a VMM can set)."""
        sup = pmu._cap.supported_perf_capabilities
        v = value & sup
        if v & C.PERF_CAP_LBR_FMT and ((v & C.PERF_CAP_LBR_FMT) != (sup & C.PERF_CAP_LBR_FMT)
                                       or not self._model_consistent(pmu)):
            v &= ~C.PERF_CAP_LBR_FMT
        if v & C.PERF_CAP_PEBS_FORMAT and ((v & C.PERF_CAP_PEBS_MASK) != (sup & C.PERF_CAP_PEBS_MASK)
                                           or not (pmu._guest.ds and pmu._guest.dtes64)
                                           or not self._model_consistent(pmu)):
            v &= ~C.PERF_CAP_PEBS_MASK
        return v

    def deliver_pmi(self, pmu: VirtualPMU) -> None:
        # LBR freeze on PMI (§8.6) needs guest LBR, which is out of scope.
        return None


INTEL = register(IntelOps())
