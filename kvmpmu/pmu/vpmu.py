"""``VirtualPMU``: the vendor-independent device model (KVM's ``pmu.c`` + the PMU parts of
the MSR core), spec §2.3-§2.5, §3.5, §4.8, §6-§10.

Exit-path design: ``rdmsr``/``wrmsr`` look the index up in dicts built at
refresh (one dict lookup and one call to a prebuilt closure); writes only
record reprogram requests; ``service()`` (before every guest entry) does the
deferred reprogramming (§7.2), takes host overflows in (§8.1) and decides the
PMI.  With nothing to do ``service()`` costs one ``overflow_pending()`` call
and two attribute tests, whatever the number of counters.

Host overflows are taken in by ``service()`` and, because the drop rule of
§8.1 depends on the order of an overflow and a reprogram request, also just
before any new reprogram request is recorded: an overflow that happened
while the guest ran comes before the MSR write that ends the run, as KVM's
NMI-context callback would have seen it.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

from kvmpmu.host.backend import Backend, BackingUnavailable, EventRequest, HostEvent, HostPmuCaps
from kvmpmu.pmu import constants as C
from kvmpmu.pmu.counter import Counter, sample_period
from kvmpmu.pmu.errors import GuestFault
from kvmpmu.pmu.model import PmuModel
from kvmpmu.pmu.vendor import KvmCap, VendorOps, get_ops

if TYPE_CHECKING:
    from kvmpmu.pmu.filter import EventFilter

M64 = C.M64
STATE_VERSION = 1
_ALIASES = frozenset(C.P6_ALIASES) | frozenset(C.K7_ALIASES)
_VMWARE = frozenset((C.VMWARE_BACKDOOR_PMC_HOST_TSC, C.VMWARE_BACKDOOR_PMC_REAL_TIME,
                     C.VMWARE_BACKDOOR_PMC_APPARENT_TIME))


class _ClosedBackend:
    """Stands in for the backend after close(): nothing opens, nothing overflows."""

    def host_caps(self, vendor: str) -> HostPmuCaps:   # pragma: no cover - never asked
        raise BackingUnavailable("the PMU is closed")

    def create(self, req: EventRequest) -> HostEvent:
        raise BackingUnavailable("the PMU is closed")

    def overflow_pending(self) -> bool:
        return False

    def describe(self, req: EventRequest) -> tuple[str | None, str | None]:
        return None, "the PMU is closed"

    def close(self) -> None:
        pass


def _is_counter_msr(i: int) -> bool:
    """A counter value MSR (not a selector or a global MSR)."""
    return (C.MSR_IA32_PERFCTR0 <= i < C.MSR_IA32_PERFCTR0 + C.INTEL_MAX_GP
            or C.MSR_CORE_PERF_FIXED_CTR0 <= i < C.MSR_CORE_PERF_FIXED_CTR0 + C.INTEL_MAX_FIXED
            or C.MSR_K7_PERFCTR0 <= i < C.MSR_K7_PERFCTR0 + 4
            or (C.MSR_F15H_PERF_CTL0 <= i <= C.MSR_F15H_PERF_CTR5 and i & 1 == 1))


def _resolve(model: PmuModel | str) -> PmuModel:
    if isinstance(model, PmuModel):
        return model
    if isinstance(model, str):
        from kvmpmu.pmu import models
        return models.get(model)
    raise TypeError(f"model must be a PmuModel or a model name, not {type(model).__name__}")


class VirtualPMU:
    """The virtual PMU of one vCPU (per-vCPU state of spec §1).

    Public state fields (read them, do not write them): ``version``, ``nr_gp``,
    ``nr_fixed``, ``gp_mask``, ``fixed_mask``, ``global_ctrl``,
    ``global_status``, ``fixed_ctr_ctrl``, ``pebs_enable``, ``ds_area``,
    ``perf_capabilities``, ``valid``.
    """

    def __init__(self, model: PmuModel | str, backend: Backend | None = None,
                 vmware_backdoor: bool = False) -> None:
        m = _resolve(model)
        self._owns_backend = backend is None
        if backend is None:
            from kvmpmu.host.backing import HostPerfBackend
            backend = HostPerfBackend()
        self._backend: Any = backend
        self.vmware_backdoor = bool(vmware_backdoor)
        self.kvmclock_offset = 0            # added to VMware "apparent time" (§3.4)
        self._filter: Any = None            # CompiledFilter or None (§10)
        self._ran = False
        self._closed = False
        self._pmi = False                   # KVM_REQ_PMI
        self._req = False                   # KVM_REQ_PMU
        self._pending = 0                   # reprogram_pmi
        self._in_use = 0                    # pmc_in_use
        self._need_cleanup = False
        self._emu_instr = 0
        self._emu_branch = 0
        self._rd: dict[int, Callable[[], int]] = {}
        self._wr: dict[int, Callable[[int, bool], None]] = {}
        self.gp: list[Counter] = []
        self.fixed: list[Counter] = []
        self._valid_list: list[Counter] = []
        self.valid = 0
        self._apply_model(m, new_vcpu=True)

    # ============================================================== model / refresh (§2)
    def _apply_model(self, m: PmuModel, new_vcpu: bool = False) -> None:
        ops = get_ops(m.vendor)
        if new_vcpu or ops is not self._ops:
            self._reset()                   # old counters: release their events
            self._ops: VendorOps = ops
            self._host: HostPmuCaps = self._backend.host_caps(ops.vendor)
            self._cap: KvmCap = ops.kvm_cap(self._host)
            self._save_list = ops.save_list(self._cap, self._host)
            self._save_set = frozenset(self._save_list)
            self._msr_indices = sorted(set(ops.routed_msrs()) | self._save_set)
            self.gp, self.fixed = ops.init_counters()
            self._by_idx = {c.idx: c for c in self.gp + self.fixed}
        self._model = m
        self._guest = ops.guest_cpuid(m, self._cap)
        # The per-vCPU PERF_CAPABILITIES: the model's value as KVM would accept it
        # from the VMM (§2.5; KVM's creation default is the supported value).
        self.perf_capabilities = ops.clamp_perf_capabilities(self, m.perf_capabilities)
        self._refresh()

    def _refresh(self) -> None:
        """kvm_pmu_refresh(): reset, defaults, vendor refresh, GLOBAL_CTRL reset value (§2.3)."""
        self._reset()
        self.version = 0
        self.nr_gp = 0
        self.nr_fixed = 0
        self.gp_mask = 0
        self.fixed_mask = 0
        self.available_event_types = 0
        self.lbr_enabled = False
        self.eventsel_rsvd = C.INTEL_EVENTSEL_RSVD_DEFAULT
        self.raw_event_mask = C.X86_RAW_EVENT_MASK
        self.global_ctrl_rsvd = M64
        self.global_status_rsvd = M64
        self.fixed_ctr_ctrl_rsvd = M64
        self.pebs_enable_rsvd = M64
        self.pebs_data_cfg_rsvd = M64
        self.global_ctrl = self.global_status = self.fixed_ctr_ctrl = 0
        # Reset does not touch the PEBS MSRs (§4.6, Q6); a refresh starts them at 0.
        self.pebs_enable = self.ds_area = self.pebs_data_cfg = 0
        self.valid = 0
        for c in self.gp + self.fixed:
            c.mask = 0
            c.rsvd = self.eventsel_rsvd
        self._vm_enabled = self._cap.enabled and self._model.version > 0
        if self._vm_enabled:
            self._ops.refresh(self)
        # 6.9+: the SDM's RESET value, GP enables on (common code, both vendors)
        if self.version > 1 and self.nr_gp:
            self.global_ctrl = C.mask(self.nr_gp)
        self._valid_list = [c for c in self.gp + self.fixed if self.valid & c.bit]
        self._build_tables()
        self._recompute_emulation()

    def _build_tables(self) -> None:
        rd: dict[int, Callable[[], int]] = {}
        wr: dict[int, Callable[[int, bool], None]] = {}
        self._ops.build_msrs(self, rd, wr)
        for role, index in self._ops.global_msrs(self).items():
            rd[index], wr[index] = self._global_handlers(role, index)
        self._rd, self._wr = rd, wr

    def set_model(self, model: PmuModel | str) -> None:
        """The VMM set new guest CPUID: refresh (§2.3, §2.4).

        After :meth:`mark_vcpu_ran` only an identical model is accepted, as
        KVM_SET_CPUID2 after KVM_RUN; anything else raises ValueError.
        """
        m = _resolve(model)
        if self._ran:
            if m != self._model:
                raise ValueError("the vCPU has run: only an identical model (CPUID) is accepted")
            return
        self._intake_if_pending()
        self._apply_model(m)

    def mark_vcpu_ran(self) -> None:
        """The vCPU entered the guest: CPUID and PERF_CAPABILITIES are frozen from now (§2.5)."""
        self._ran = True

    @property
    def model(self) -> PmuModel:
        """The model (guest CPUID request) this PMU was built from."""
        return self._model

    @property
    def supported_perf_capabilities(self) -> int:
        """KVM's supported IA32_PERF_CAPABILITIES for this host/backend (0 on AMD, §2.5)."""
        return self._cap.supported_perf_capabilities

    def cpuid(self) -> list[tuple[int, int, int, int, int, int]]:
        """(leaf, subleaf, eax, ebx, ecx, edx) the PMU contributes, clamped as KVM clamps."""
        return self._guest.leaves()

    def msr_indices(self) -> list[int]:
        """Every PMU MSR a VMM must route here: KVM's save/restore list plus the rest of §4/§5."""
        return list(self._msr_indices)

    # ============================================================== MSR access (§4, §5)
    def rdmsr(self, index: int, host: bool = False) -> int:
        """RDMSR (or KVM_GET_MSRS with ``host=True``); GuestFault when it would fail."""
        h = self._rd.get(index)
        if h is not None:
            return h()
        return self._rdmsr_slow(index, host)

    def wrmsr(self, index: int, value: int, host: bool = False) -> None:
        """WRMSR (or KVM_SET_MSRS with ``host=True``); GuestFault when it would fail."""
        h = self._wr.get(index)
        if h is not None:
            h(value & M64, host)
        else:
            self._wrmsr_slow(index, value & M64, host)

    def _rdmsr_slow(self, index: int, host: bool) -> int:
        if index == C.MSR_IA32_PERF_CAPABILITIES:
            # 6.12: PDCM gates guest reads only; host reads return the stored value
            if not host and not self._guest.pdcm:
                raise GuestFault(index, "PERF_CAPABILITIES needs guest CPUID PDCM")
            return self.perf_capabilities
        if index in _ALIASES:
            return 0                # P6/K7 aliases that are not PMU MSRs here (§4.8)
        if host and index in self._save_set:
            return 0                # advertised MSR: host reads succeed (§4.8)
        raise GuestFault(index, "not a PMU MSR of this vCPU")

    def _wrmsr_slow(self, index: int, value: int, host: bool) -> None:
        if index == C.MSR_IA32_PERF_CAPABILITIES:
            self._wr_perf_capabilities(value, host)
            return
        if index in _ALIASES:
            return                  # writes of any value ignored (§4.8)
        if host and value == 0 and index in self._save_set:
            return                  # advertised MSR: host writes of 0 succeed (§4.8)
        raise GuestFault(index, "not a PMU MSR of this vCPU")

    def _wr_perf_capabilities(self, data: int, host: bool) -> None:
        index = C.MSR_IA32_PERF_CAPABILITIES
        # 6.4+: an immutable feature MSR after KVM_RUN: only the value a read gives
        if host and self._ran and data != self.perf_capabilities:
            raise GuestFault(index, "PERF_CAPABILITIES cannot change after the vCPU ran")
        why = self._ops.check_perf_capabilities_write(self, data)
        if why is not None:
            raise GuestFault(index, why)
        if not host:
            raise GuestFault(index, "PERF_CAPABILITIES is read-only for the guest")
        if data & ~self._cap.supported_perf_capabilities:
            raise GuestFault(index, "PERF_CAPABILITIES bits not supported by KVM")
        if data == self.perf_capabilities:
            return
        self.perf_capabilities = data
        self._intake_if_pending()
        self._refresh()

    def _global_handlers(self, role: str, index: int) -> tuple[Callable[[], int], Callable[[int, bool], None]]:
        """GLOBAL_STATUS/CTRL/OVF_CTRL and the AMD PerfMonV2 MSRs (common code, §4.1/§5.1)."""
        def read_status() -> int:
            return self.global_status

        def read_ctrl() -> int:
            return self.global_ctrl

        def read_zero() -> int:
            return 0

        if role in ("intel_status", "amd_status"):
            intel = role == "intel_status"

            def w_status(v: int, host: bool) -> None:
                if not host:
                    if intel:
                        raise GuestFault(index, "GLOBAL_STATUS is read-only")
                    return          # AMD: read-only, writes ignored
                if v & self.global_status_rsvd:
                    raise GuestFault(index, "reserved GLOBAL_STATUS bits set")
                self.global_status = v
            return read_status, w_status
        if role in ("intel_ctrl", "amd_ctl"):
            clear = role == "amd_ctl"

            def w_ctrl(v: int, host: bool) -> None:
                if clear:
                    v &= ~self.global_ctrl_rsvd     # AMD clears reserved bits
                elif v & self.global_ctrl_rsvd:
                    raise GuestFault(index, "reserved GLOBAL_CTRL bits set")
                old = self.global_ctrl
                if v != old:
                    self.global_ctrl = v
                    self._request(old ^ v)
            return read_ctrl, w_ctrl
        if role == "ovf_ctrl":
            def w_ovf(v: int, host: bool) -> None:
                if v & self.global_status_rsvd:
                    raise GuestFault(index, "reserved GLOBAL_OVF_CTRL bits set")
                if not host:
                    self.global_status &= ~v
            return read_zero, w_ovf
        if role == "status_clr":
            def w_clr(v: int, host: bool) -> None:
                if not host:
                    self.global_status &= ~v
            return read_zero, w_clr
        if role == "status_set":
            def w_set(v: int, host: bool) -> None:
                if not host:
                    self.global_status |= v & ~self.global_status_rsvd
            return read_zero, w_set
        raise AssertionError(role)

    # ============================================================== requests (§7.1)
    def _request(self, bits: int) -> None:
        """kvm_pmu_request_counter_reprogram / reprogram_counters."""
        if self._backend.overflow_pending():
            self._intake()
        self._pending |= bits
        self._req = True

    def _eventsel_changed(self, c: Counter) -> None:
        self._request(c.bit)
        self._recompute_emulation_one(c)

    def _fixed_ctrl_changed(self, bits: int) -> None:
        self._request(bits)
        for c in self.fixed:
            if bits & c.bit:
                self._recompute_emulation_one(c)

    # ============================================================== counting conditions (§6.1)
    def _locally_enabled(self, c: Counter) -> bool:
        if c.fixed:
            return bool(self._ops.fixed_field(self, c) & (C.FIXED_KERNEL | C.FIXED_USER))
        return bool(c.eventsel & C.EVENTSEL_ENABLE)

    def _globally_enabled(self, c: Counter) -> bool:
        return self.version <= 1 or bool(self.global_ctrl & c.bit)

    def _filter_allows(self, c: Counter) -> bool:
        f = self._filter
        if f is None:
            return True
        try:
            return bool(f.allows_fixed(c.j) if c.fixed else f.allows_gp(c.eventsel))
        except Exception:           # a broken filter must not take the VMM down: deny
            return False

    def _allowed(self, c: Counter) -> bool:
        """pmc_event_is_allowed(): globally and locally enabled, and allowed by the filter."""
        return self._globally_enabled(c) and self._locally_enabled(c) and self._filter_allows(c)

    # ============================================================== service (§7.2, §8.1)
    def service(self) -> bool:
        """Before every guest entry: host overflows, deferred reprograms, cleanup.

        Returns True when a PMI must be delivered now (the request is consumed).
        """
        if self._backend.overflow_pending():
            self._intake()
        if self._req:
            self._handle_event()
        if self._pmi:
            self._pmi = False
            self._ops.deliver_pmi(self)
            return True
        return False

    def _intake_if_pending(self) -> None:
        if self._backend.overflow_pending():
            self._intake()

    def _intake(self) -> None:
        """Host overflow callbacks (kvm_perf_overflow, §8.1)."""
        pending = self._pending
        for c in self._valid_list:
            ev = c.event
            if ev is None:
                continue
            try:
                n = ev.take_overflows()
            except Exception:
                n = 0
            if not n:
                continue
            if pending & c.bit:
                continue            # a reprogram is already queued: drop the overflow
            pending |= c.bit
            self._req = True
            self._overflow(c, True)
        self._pending = pending

    def _handle_event(self) -> None:
        """kvm_pmu_handle_event(): snapshot-and-clear, reprogram each, then cleanup (§7.2)."""
        self._req = False
        bits = self._pending
        self._pending = 0
        if bits & self.valid:
            for c in self._valid_list:
                if bits & c.bit and not self._reprogram(c):
                    # retried when something else triggers processing; no new request
                    self._pending |= c.bit
        if self._need_cleanup:
            self._cleanup()

    def _reprogram(self, c: Counter) -> bool:
        """reprogram_counter() (§7.3); False when the host refused the event."""
        emulated_overflow = c.pause()
        if not self._allowed(c):
            return True             # frozen; an emulated overflow found above is lost (§8.2)
        if emulated_overflow:
            self._overflow(c, False)
        if c.fixed:
            field = self._ops.fixed_field(self, c)
            sel = c.eventsel
            if field & C.FIXED_KERNEL:
                sel |= C.EVENTSEL_OS
            if field & C.FIXED_USER:
                sel |= C.EVENTSEL_USR
            if field & C.FIXED_PMI:
                sel |= C.EVENTSEL_INT
            key = field
        else:
            sel = key = c.eventsel
        # PIN_CONTROL (bit 19) is legal but ignored, as in KVM (which only logs once).
        pebs = bool(self.pebs_enable & c.bit)
        if c.current_config == key and c.resume(pebs):
            return True
        c.release()
        c.current_config = key
        config = sel & self.raw_event_mask
        if config & C.HSW_IN_TX_CHECKPOINTED and self._cap.tsx:
            period = 0              # checkpointed counting cannot sample (§6.3)
        else:
            period = sample_period(c.counter, c.mask)
        req = EventRequest(
            vendor=self._ops.vendor, counter=c.name, fixed_index=c.j if c.fixed else None,
            config=config, exclude_user=not sel & C.EVENTSEL_USR,
            exclude_kernel=not sel & C.EVENTSEL_OS, sample_period=period,
            precise_ip=self._ops.precise_level(self, c) if pebs else 0)
        return c.create(self._backend, req, bool(sel & C.EVENTSEL_INT) or pebs)

    def _overflow(self, c: Counter, in_pmi: bool) -> None:
        """__kvm_perf_overflow(): GLOBAL_STATUS and the PMI request (§8.3)."""
        skip_pmi = False
        ev = c.event
        if ev is not None and ev.precise_ip:
            if not in_pmi:
                skip_pmi = True     # no PEBS record for emulated events
            else:
                skip_pmi = bool(self.global_status & C.GLOBAL_STATUS_BUFFER_OVF)
                self.global_status |= C.GLOBAL_STATUS_BUFFER_OVF
        else:
            self.global_status |= c.bit
        if c.intr and not skip_pmi:
            self._pmi = True

    # ============================================================== cleanup, reset (§7.6, §7.7)
    def tick(self) -> None:
        """A time slice of the vCPU passed: ask for lazy release of unused host events (§7.6)."""
        if self.version and any(c.event is not None for c in self._valid_list):
            self._need_cleanup = True
            self._req = True

    def _cleanup(self) -> None:
        self._need_cleanup = False
        in_use = self._in_use
        for c in self._valid_list:
            if not in_use & c.bit and c.event is not None and not self._locally_enabled(c):
                c.stop()
        self._in_use = 0

    def reset(self) -> None:
        """vCPU reset (§7.7): counters, selectors and global MSRs to 0; the model stays."""
        self._intake_if_pending()
        self._reset()

    def _reset(self) -> None:
        self._need_cleanup = False
        self._pending = 0
        for c in self._valid_list:
            c.stop()
            c.reset_state()
        self.fixed_ctr_ctrl = self.global_ctrl = self.global_status = 0
        self._recompute_emulation()

    # ============================================================== emulated events (§9)
    def _recompute_emulation_one(self, c: Counter) -> None:
        bit = c.bit
        self._emu_instr &= ~bit
        self._emu_branch &= ~bit
        if not self.valid & bit or not self._locally_enabled(c):
            return
        if not (c.eventsel ^ self._ops.instructions_selector) & C.EMULATED_MATCH_MASK:
            self._emu_instr |= bit
        if not (c.eventsel ^ self._ops.branches_selector) & C.EMULATED_MATCH_MASK:
            self._emu_branch |= bit

    def _recompute_emulation(self) -> None:
        self._emu_instr = self._emu_branch = 0
        for c in self._valid_list:
            self._recompute_emulation_one(c)

    def instruction_retired(self, cpl: int = 0) -> None:
        """One emulated instruction retired at ``cpl`` (kvm_pmu_instruction_retired, §9)."""
        if self._emu_instr:
            self._trigger(self._emu_instr, cpl)

    def branch_retired(self, cpl: int = 0) -> None:
        """One emulated branch retired at ``cpl`` (kvm_pmu_branch_retired, §9)."""
        if self._emu_branch:
            self._trigger(self._emu_branch, cpl)

    def _trigger(self, bits: int, cpl: int) -> None:
        # Match and local enable are precomputed (the 6.18 way, same result as 6.12);
        # global enable, filter and CPL are checked now (§9.2).
        if self.version > 1:
            bits &= self.global_ctrl
            if not bits:
                return
        for c in self._valid_list:
            if not bits & c.bit or not self._filter_allows(c) or not self._cpl_matches(c, cpl):
                continue
            c.emulated += 1
            self._request(c.bit)

    def _cpl_matches(self, c: Counter, cpl: int) -> bool:
        if c.fixed:
            field = self._ops.fixed_field(self, c)
            select_os, select_user = bool(field & C.FIXED_KERNEL), bool(field & C.FIXED_USER)
        else:
            select_os = bool(c.eventsel & C.EVENTSEL_OS)
            select_user = bool(c.eventsel & C.EVENTSEL_USR)
        if select_os == select_user:
            return select_os        # both: counted; neither: not counted (§9.2 step 3)
        return select_os if cpl == 0 else select_user

    # ============================================================== RDPMC (§3.3-§3.5)
    def rdpmc(self, ecx: int, cpl: int = 0, cr4_pce: bool = False, cr0_pe: bool = True) -> int:
        """Emulate RDPMC with ECX = ``ecx``; GuestFault on #GP.  Returns EDX:EAX.

        The VMM that skips the instruction also calls :meth:`instruction_retired`.
        """
        ecx &= 0xFFFF_FFFF
        vmw = ecx in _VMWARE
        user = cpl != 0 and cr0_pe          # CPL is 0 outside protected mode
        # What faults before KVM sees the instruction (hardware / emulator check_rdpmc):
        # the VMware PMCs are exempt only with the backdoor on.
        if not (self.vmware_backdoor and vmw):
            if not cr4_pce and user:
                raise GuestFault(ecx, "RDPMC at CPL > 0 with CR4.PCE clear")
            if not self._ops.check_rdpmc_early(self, ecx):
                raise GuestFault(ecx, "RDPMC of a counter that does not exist")
        if not self.version:
            raise GuestFault(ecx, "no vPMU (version 0)")
        if vmw:
            return self._vmware_pmc(ecx)
        found = self._ops.rdpmc_ecx_to_pmc(self, ecx)
        if found is None:
            raise GuestFault(ecx, "RDPMC of a counter that does not exist")
        if not cr4_pce and user:
            raise GuestFault(ecx, "RDPMC at CPL > 0 with CR4.PCE clear")
        c, m = found
        return c.read() & m

    def _vmware_pmc(self, ecx: int) -> int:
        if ecx == C.VMWARE_BACKDOOR_PMC_HOST_TSC:
            from kvmpmu.host._lib import lib
            return int(lib.kvmpmu_rdtsc()) & M64
        ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
        if ecx == C.VMWARE_BACKDOOR_PMC_APPARENT_TIME:
            ns += self.kvmclock_offset
        return ns & M64

    # ============================================================== event filter (§10)
    def set_event_filter(self, event_filter: EventFilter | None) -> None:
        """Install (or with None remove) the VM's event filter; reprograms every counter.

        Raises FilterError (errno as KVM_SET_PMU_EVENT_FILTER) and keeps the previous
        filter when the new one is invalid.  A VMM sets the same filter on every vCPU.
        """
        compiled = None if event_filter is None else event_filter.compile(self._ops.vendor)
        self._filter = compiled
        self._request(self.valid)

    # ============================================================== save / restore
    def _state_msrs(self) -> list[int]:
        """The existing MSRs of KVM's save list, in restore order: configuration, then
        counter values (so that they need no reprogram), then the overflow status."""
        def rank(i: int) -> int:
            if i in (C.MSR_CORE_PERF_GLOBAL_STATUS, C.MSR_AMD64_PERF_CNTR_GLOBAL_STATUS):
                return 3
            return 2 if _is_counter_msr(i) else 1
        seen = [i for i in dict.fromkeys(self._save_list) if i in self._rd]
        return sorted(seen, key=rank)

    def _pending_emulated_overflows(self) -> int:
        bits = 0
        for c in self._valid_list:
            v = c.counter
            ev = c.event
            if ev is not None and not c.paused:
                v += ev.read()
            prev = v & c.mask
            if ((prev + c.emulated) & c.mask) < prev or c.carry:
                bits |= c.bit
        return bits

    def save(self) -> dict[str, Any]:
        """The vCPU's PMU state as a versioned, JSON-serialisable dict.

        Counter values include events not yet serviced; host overflows that
        happened are taken in first, and a pending PMI and emulated overflows
        not yet reported are part of the state, so none is lost.
        """
        self._intake_if_pending()
        msrs = {}
        for i in self._state_msrs():
            try:
                msrs[f"{i:#x}"] = self.rdmsr(i, host=True)
            except GuestFault:      # existing but unmappable (§5.1): not state
                pass
        msrs[f"{C.MSR_IA32_PERF_CAPABILITIES:#x}"] = self.perf_capabilities
        return {"version": STATE_VERSION, "vendor": self._ops.vendor, "msrs": msrs,
                "pmi_pending": self._pmi,
                "emulated_overflow": self._pending_emulated_overflows()}

    def restore(self, state: dict[str, Any]) -> None:
        """Apply a :meth:`save` state with host-initiated MSR writes (KVM_SET_MSRS rules).

        Raises ValueError, changing nothing, for a newer or malformed state; if a
        host write fails the previous state is put back and ValueError raised.
        """
        if not isinstance(state, dict) or not isinstance(state.get("version"), int) \
                or isinstance(state.get("version"), bool):
            raise ValueError("not a kvmpmu PMU state (no integer 'version')")
        if state["version"] > STATE_VERSION:
            raise ValueError(f"PMU state version {state['version']} is newer than this "
                             f"library's ({STATE_VERSION})")
        if state["version"] < 1:
            raise ValueError(f"unknown PMU state version {state['version']}")
        if state.get("vendor") != self._ops.vendor:
            raise ValueError(f"PMU state is for vendor {state.get('vendor')!r}, "
                             f"this vCPU is {self._ops.vendor!r}")
        try:
            msrs = [(int(k, 16), int(v)) for k, v in dict(state["msrs"]).items()]
            pmi = bool(state.get("pmi_pending", False))
            emu = int(state.get("emulated_overflow", 0))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"malformed PMU state: {e}") from None
        if any(not 0 <= v <= M64 for _, v in msrs):
            raise ValueError("malformed PMU state: MSR value out of range")
        before = self.save()
        try:
            self._apply_state(msrs, pmi, emu)
        except GuestFault as e:
            back = [(int(k, 16), v) for k, v in before["msrs"].items()]
            self._apply_state(back, before["pmi_pending"], before["emulated_overflow"])
            raise ValueError(f"PMU state does not fit this vCPU: MSR {e.index:#x}: {e.reason}") from None

    def _apply_state(self, msrs: list[tuple[int, int]], pmi: bool, emu: int) -> None:
        caps = C.MSR_IA32_PERF_CAPABILITIES
        for index, value in msrs:           # first: a change refreshes (resets) the PMU
            if index == caps:
                self.wrmsr(index, value, host=True)
        order = {i: n for n, i in enumerate(self._state_msrs())}
        rest = sorted((p for p in msrs if p[0] != caps), key=lambda p: order.get(p[0], -1))
        for index, value in rest:
            self.wrmsr(index, value, host=True)
        for c in self._valid_list:
            c.carry = bool(emu & c.bit)
        if emu & self.valid:
            self._request(emu & self.valid)
        self._pmi = pmi

    # ============================================================== reports, close
    def describe_backing(self, eventsel: int, fixed_index: int | None = None) -> tuple[str | None, str | None]:
        """What would back a counter programmed with ``eventsel`` (GP) or fixed counter
        ``fixed_index`` (``eventsel``'s USR/OS bits give its field), without opening
        anything: (what, None) or (None, why not)."""
        if fixed_index is not None:
            if not 0 <= fixed_index < self.nr_fixed:
                return None, f"this vCPU has no fixed counter {fixed_index}"
            sel = self.fixed[fixed_index].eventsel | (eventsel & (C.EVENTSEL_USR | C.EVENTSEL_OS))
            name = self.fixed[fixed_index].name
        else:
            if not self.nr_gp:
                return None, "this vCPU has no GP counters"
            sel, name = eventsel, self.gp[0].name
        req = EventRequest(vendor=self._ops.vendor, counter=name, fixed_index=fixed_index,
                           config=sel & self.raw_event_mask, exclude_user=not sel & C.EVENTSEL_USR,
                           exclude_kernel=not sel & C.EVENTSEL_OS, sample_period=1 << 47)
        try:
            return self._backend.describe(req)
        except Exception as e:      # a backend failure is an answer, not a crash
            return None, f"{type(e).__name__}: {e}"

    def backing_report(self) -> list[tuple[str, str, str | None, str | None]]:
        """For each counter: (name, guest event, what backs it, why not if nothing)."""
        out = []
        for c in self._valid_list:
            if c.fixed:
                field = self._ops.fixed_field(self, c)
                guest = f"{C.FIXED_NAMES[c.j]} (field {field:#x})"
            else:
                guest = f"eventsel {c.eventsel:#x} (event {c.eventsel & self._ops.eventsel_event:#x}," \
                        f" umask {(c.eventsel >> 8) & 0xFF:#x})"
            backing: str | None = None
            why: str | None = None
            if not self._locally_enabled(c):
                why = "not enabled (PERFEVTSEL.EN / FIXED_CTR_CTRL field clear)"
            elif not self._globally_enabled(c):
                why = "disabled in GLOBAL_CTRL"
            elif not self._filter_allows(c):
                why = "denied by the event filter"
            elif c.event is not None and not c.paused:
                backing = c.event.backing
            elif self._pending & c.bit or self._req:
                why = c.why_not or "programmed at the next service()"
            else:
                why = c.why_not or "no host event"
            out.append((c.name, guest, backing, why))
        return out

    def close(self) -> None:
        """Release every host event (and the backend if this PMU created it); idempotent."""
        if self._closed:
            return
        self._closed = True
        for c in self.gp + self.fixed:
            c.stop()
        backend = self._backend
        self._backend = _ClosedBackend()
        self._req = False
        self._pending = 0
        if self._owns_backend:
            try:
                backend.close()
            except Exception:
                pass

    def __enter__(self) -> VirtualPMU:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed:
                self.close()
        except Exception:
            pass
