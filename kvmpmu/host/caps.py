"""What this host can do for a virtual PMU: :class:`HostCaps`.

``HostCaps.probe()`` looks, without side effects that outlive it:

* at the perf PMUs in ``/sys/bus/event_source/devices`` (name -> type id,
  including the hybrid ``cpu_core``/``cpu_atom``) and perf_event_paranoid;
* at the CPU (vendor, family, model, the PMU-relevant ``/proc/cpuinfo`` flags)
  and the TSC frequency, saying where the number came from and how exact it is;
* at which event kinds really open for the calling thread, counting and
  sampling (every probe fd is closed again);
* at ``/dev/kvm`` and the KVM capabilities a userspace vPMU needs.

The result is a frozen dataclass that round-trips through JSON
(:meth:`HostCaps.to_json` / :meth:`HostCaps.from_dict`).
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import functools
import json
import os
import platform
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from kvmpmu.host._lib import ffi, lib
from kvmpmu.host.errors import PerfError, read_paranoid
from kvmpmu.host.perf import PerfEvent

SYSFS_PMUS = "/sys/bus/event_source/devices"
KVM_ENABLE_PMU = "/sys/module/kvm/parameters/enable_pmu"
KVM_API_VERSION = 12

#: /proc/cpuinfo flags that matter to a (virtual) PMU, reported when present.
PMU_FLAGS = ("arch_perfmon", "pdcm", "ds_cpl", "dtes64", "pebs", "bts", "arch_lbr",
             "hle", "rtm", "perfctr_core", "perfctr_nb", "perfctr_llc", "perfmon_v2",
             "amd_lbr_v2", "constant_tsc", "nonstop_tsc", "tsc_known_freq", "tsc_reliable",
             "tsc_adjust", "rdtscp", "x2apic", "tsc_deadline_timer", "hypervisor")

#: The event kinds probed, in report order.
EVENT_KINDS = ("hardware", "raw", "hw_cache", "task-clock", "cpu-clock", "msr/tsc")

# Sample periods for the sampling probes: 1 ms of a clock, 1e6 of anything else.
_PROBE_PERIOD = 1_000_000


@dataclass(frozen=True)
class EventSupport:
    """Whether one event kind opens for a thread: counting, and sampling with a period."""

    counting: bool
    sampling: bool
    error: str | None = None    # why counting (or, if counting works, sampling) failed


@dataclass(frozen=True)
class KvmCaps:
    """The KVM facts a userspace vPMU relies on (``/dev/kvm`` system ioctls)."""

    dev_kvm: bool                   # /dev/kvm opens and KVM_GET_API_VERSION == 12
    api_version: int | None
    user_space_msr: bool            # KVM_CAP_X86_USER_SPACE_MSR
    msr_filter: bool                # KVM_CAP_X86_MSR_FILTER
    pmu_capability: int             # KVM_CHECK_EXTENSION(KVM_CAP_PMU_CAPABILITY)
    pmu_event_filter: bool          # KVM_CAP_PMU_EVENT_FILTER
    masked_events: bool             # KVM_CAP_PMU_EVENT_MASKED_EVENTS
    enable_pmu: bool | None         # kvm.enable_pmu module parameter, None if unreadable
    irqchip: bool                   # KVM_CAP_IRQCHIP
    error: str | None = None        # why /dev/kvm is not usable


def _describe_errno(err: int) -> str:
    return f"{_errno.errorcode.get(err, str(err))}: {os.strerror(err)}"


def _describe_error(e: BaseException) -> str:
    if isinstance(e, OSError) and e.errno:
        return _describe_errno(e.errno)
    return str(e)


# -- sysfs PMUs ---------------------------------------------------------------

def read_pmus(root: str = SYSFS_PMUS) -> dict[str, int]:
    """PMU name -> perf type id, for every PMU under ``root`` with a readable ``type``."""
    out: dict[str, int] = {}
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return out
    for name in names:
        try:
            with open(os.path.join(root, name, "type")) as f:
                out[name] = int(f.read().strip())
        except (OSError, ValueError):
            continue
    return out


def classify_pmus(pmus: Mapping[str, int]) -> tuple[bool, str | None]:
    """(hybrid, core PMU name) for a PMU table: "cpu", "cpu_core" on hybrid parts, or None."""
    hybrid = "cpu_core" in pmus or "cpu_atom" in pmus
    if "cpu" in pmus:
        return hybrid, "cpu"
    return hybrid, "cpu_core" if "cpu_core" in pmus else None


def sysfs_event_config(pmu: str, event: str, root: str = SYSFS_PMUS) -> int:
    """The ``config`` of a named sysfs event, e.g. ``sysfs_event_config("msr", "tsc")``.

    Parses ``<pmu>/events/<event>`` (``event=0x00,umask=...``) with the field
    layout of ``<pmu>/format/<term>`` (``config:0-7``).  Only ``config``
    fields are supported; anything else raises ``ValueError``.
    """
    base = os.path.join(root, pmu)
    try:
        with open(os.path.join(base, "events", event)) as f:
            spec = f.read().strip()
    except OSError as e:
        raise ValueError(f"no event {event!r} in perf PMU {pmu!r}") from e
    config = 0
    for term in filter(None, (t.strip() for t in spec.split(","))):
        key, _, val = term.partition("=")
        value = int(val, 0) if val else 1
        try:
            with open(os.path.join(base, "format", key)) as f:
                fmt = f.read().strip()
        except OSError as e:
            raise ValueError(f"{pmu}/{event}: no format for term {key!r}") from e
        reg, _, bits = fmt.partition(":")
        if reg != "config" or "," in bits:
            raise ValueError(f"{pmu}/{event}: unsupported format {fmt!r} for {key!r}")
        lo, _, hi = bits.partition("-")
        lo_i, hi_i = int(lo), int(hi or lo)
        mask = (1 << (hi_i - lo_i + 1)) - 1
        config |= (value & mask) << lo_i
    return config


# -- CPU ------------------------------------------------------------------------

def cpuid(leaf: int, subleaf: int = 0) -> tuple[int, int, int, int]:
    """(eax, ebx, ecx, edx) of CPUID on the calling CPU.  The caller checks the max leaf."""
    out = ffi.new("uint32_t[4]")
    lib.kvmpmu_cpuid(leaf, subleaf, out)
    return int(out[0]), int(out[1]), int(out[2]), int(out[3])


def read_cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The ``key: value`` pairs of the first processor in /proc/cpuinfo."""
    out: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    if out:
                        break
                    continue
                key, _, val = line.partition(":")
                out[key.strip()] = val.strip()
    except OSError:
        pass
    return out


# -- TSC frequency --------------------------------------------------------------

@dataclass(frozen=True)
class TscFrequency:
    """A TSC frequency and how it was obtained."""

    hz: int
    source: str
    precision: str


def _hypervisor_vendor() -> tuple[str, int] | None:
    """(signature, max hypervisor leaf) when running under a hypervisor."""
    if not cpuid(1)[2] & (1 << 31):  # CPUID.1:ECX.hypervisor
        return None
    eax, ebx, ecx, edx = cpuid(0x40000000)
    sig = b"".join(r.to_bytes(4, "little") for r in (ebx, ecx, edx)).rstrip(b"\0")
    return sig.decode("ascii", "replace"), eax


def _tsc_from_cpuid() -> TscFrequency | None:
    max_leaf = cpuid(0)[0]
    if max_leaf >= 0x15:
        den, num, crystal, _ = cpuid(0x15)
        if den and num and crystal:
            return TscFrequency(crystal * num // den, "cpuid 0x15 (crystal clock x TSC ratio)",
                                "exact (architectural crystal ratio)")
    hv = _hypervisor_vendor()
    if hv is not None and hv[1] >= 0x40000010:
        khz = cpuid(0x40000010)[0]
        if khz:
            return TscFrequency(khz * 1000, f"cpuid 0x40000010 (hypervisor {hv[0]} timing leaf)",
                                "1 kHz (hypervisor-reported)")
    if max_leaf >= 0x16:
        mhz = cpuid(0x16)[0] & 0xFFFF
        if mhz:
            return TscFrequency(mhz * 1_000_000, "cpuid 0x16 (processor base frequency)",
                                "1 MHz (nominal; assumes TSC runs at base frequency)")
    return None


def _clocksource() -> str:
    try:
        with open("/sys/devices/system/clocksource/clocksource0/current_clocksource") as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def _tsc_clock_pair() -> tuple[int, int, int]:
    out = ffi.new("uint64_t[3]")
    r = lib.kvmpmu_tsc_clock_pair(32, out)
    if r < 0:
        raise OSError(-r, os.strerror(-r))
    return int(out[0]), int(out[1]), int(out[2])


def measure_tsc_hz(interval_s: float = 0.05) -> TscFrequency:
    """Measure the TSC against CLOCK_MONOTONIC_RAW over ``interval_s``.

    Each end is the tightest of 32 (rdtscp, clock_gettime, rdtscp) triples; the
    stated precision is the width of the two windows relative to the interval
    (plus 1 ns of clock resolution).  With clocksource ``tsc`` the raw clock
    is itself the TSC scaled by the kernel's calibration, so the result is
    the kernel's TSC frequency rather than an independent measurement.
    """
    t0, n0, w0 = _tsc_clock_pair()
    time.sleep(interval_s)
    t1, n1, w1 = _tsc_clock_pair()
    dt, dn = t1 - t0, n1 - n0
    if dt <= 0 or dn <= 0:
        raise OSError(_errno.EIO, "TSC or CLOCK_MONOTONIC_RAW did not advance")
    hz = round(dt * 1e9 / dn)
    rel = (w0 + w1) / 2 / dt + 2 / dn
    cs = _clocksource()
    note = ", the raw clock is the TSC itself (clocksource tsc)" if cs == "tsc" else f", clocksource {cs}"
    return TscFrequency(hz, f"measured: rdtscp vs CLOCK_MONOTONIC_RAW over {dn / 1e6:.1f} ms",
                        f"+-{rel * 1e6:.2f} ppm{note}")


def _tsc_probe() -> TscFrequency:
    return _tsc_from_cpuid() or measure_tsc_hz()


@functools.lru_cache(maxsize=1)
def _tsc_cached() -> TscFrequency:
    return _tsc_probe()


def tsc_frequency() -> tuple[int, str]:
    """The TSC frequency in Hz and its source; found once per process, then cached.

    Best source first: CPUID 0x15, the hypervisor timing leaf 0x40000010,
    CPUID 0x16, else a 50 ms measurement (see :func:`measure_tsc_hz`).
    """
    t = _tsc_cached()
    return t.hz, t.source


def tsc_frequency_info() -> TscFrequency:
    """Like :func:`tsc_frequency`, with the precision statement."""
    return _tsc_cached()


# -- event probes ---------------------------------------------------------------

def _event_attrs(kind: str, pmus: Mapping[str, int]) -> dict[str, int]:
    if kind == "hardware":
        return {"type": lib.PERF_TYPE_HARDWARE, "config": lib.PERF_COUNT_HW_CPU_CYCLES}
    if kind == "raw":
        return {"type": lib.PERF_TYPE_RAW, "config": 0x3C}  # unhalted core cycles
    if kind == "hw_cache":
        return {"type": lib.PERF_TYPE_HW_CACHE, "config": 0}  # L1D read access
    if kind == "task-clock":
        return {"type": lib.PERF_TYPE_SOFTWARE, "config": lib.PERF_COUNT_SW_TASK_CLOCK}
    if kind == "cpu-clock":
        return {"type": lib.PERF_TYPE_SOFTWARE, "config": lib.PERF_COUNT_SW_CPU_CLOCK}
    if kind == "msr/tsc":
        if "msr" not in pmus:
            raise LookupError("no 'msr' perf PMU on this host")
        return {"type": pmus["msr"], "config": sysfs_event_config("msr", "tsc")}
    raise ValueError(f"unknown event kind {kind!r}")


def _try_open(attrs: Mapping[str, int], **extra: int) -> str | None:
    try:
        ev = PerfEvent(disabled=1, **attrs, **extra)
    except PerfError as e:
        return _describe_errno(e.errno)
    ev.close()
    return None


def probe_event(kind: str, pmus: Mapping[str, int] | None = None) -> EventSupport:
    """Open ``kind`` (one of :data:`EVENT_KINDS`) for the calling thread, counting and sampling."""
    try:
        attrs = _event_attrs(kind, read_pmus() if pmus is None else pmus)
    except (LookupError, ValueError) as e:
        return EventSupport(False, False, str(e))
    count_err = _try_open(attrs)
    sample_err = _try_open(attrs, sample_period=_PROBE_PERIOD)
    err = None
    if count_err is not None:
        err = count_err
    elif sample_err is not None:
        err = f"sampling: {sample_err}"
    return EventSupport(count_err is None, sample_err is None, err)


# -- KVM ----------------------------------------------------------------------------

def _kvm_param(path: str = KVM_ENABLE_PMU) -> bool | None:
    try:
        with open(path) as f:
            v = f.read().strip()
    except OSError:
        return None
    return v in ("Y", "y", "1")


def probe_kvm(path: str = "/dev/kvm") -> KvmCaps:
    """Open ``/dev/kvm`` and ask for the capabilities a userspace vPMU needs."""
    enable_pmu = _kvm_param()
    fd = lib.kvmpmu_open_rdwr(path.encode())
    if fd < 0:
        return KvmCaps(False, None, False, False, 0, False, False, enable_pmu, False,
                       f"open {path}: {_describe_errno(-fd)}")
    try:
        api = lib.kvmpmu_ioctl_noarg(fd, lib.KVM_GET_API_VERSION, 0)
        if api < 0:
            return KvmCaps(False, None, False, False, 0, False, False, enable_pmu, False,
                           f"KVM_GET_API_VERSION: {_describe_errno(-api)}")

        def ext(cap: int) -> int:
            r = lib.kvmpmu_ioctl_noarg(fd, lib.KVM_CHECK_EXTENSION, cap)
            return r if r > 0 else 0

        return KvmCaps(
            dev_kvm=api == KVM_API_VERSION,
            api_version=api,
            user_space_msr=ext(lib.KVM_CAP_X86_USER_SPACE_MSR) > 0,
            msr_filter=ext(lib.KVM_CAP_X86_MSR_FILTER) > 0,
            pmu_capability=ext(lib.KVM_CAP_PMU_CAPABILITY),
            pmu_event_filter=ext(lib.KVM_CAP_PMU_EVENT_FILTER) > 0,
            masked_events=ext(lib.KVM_CAP_PMU_EVENT_MASKED_EVENTS) > 0,
            enable_pmu=enable_pmu,
            irqchip=ext(lib.KVM_CAP_IRQCHIP) > 0,
            error=None if api == KVM_API_VERSION else f"KVM API version {api}, expected {KVM_API_VERSION}",
        )
    finally:
        lib.kvmpmu_close(fd)


# -- HostCaps -------------------------------------------------------------------------

@dataclass(frozen=True)
class HostCaps:
    """A snapshot of this host's perf, CPU, TSC and KVM facts (see module doc)."""

    pmus: dict[str, int]
    hybrid: bool
    cpu_pmu: str | None
    perf_event_paranoid: int | None
    cpu_vendor: str
    cpu_family: int
    cpu_model: int
    cpu_flags: tuple[str, ...]
    tsc_hz: int
    tsc_source: str
    tsc_precision: str
    events: dict[str, EventSupport]
    kvm: KvmCaps
    kernel_release: str = ""
    cpu_model_name: str = ""
    hypervisor_vendor: str | None = None

    # dict fields make the generated __hash__ fail; a snapshot is compared, not hashed.
    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def probe(cls) -> "HostCaps":
        """Probe this host now (opens and closes a few perf fds and /dev/kvm; ~50 ms)."""
        pmus = read_pmus()
        hybrid, cpu_pmu = classify_pmus(pmus)
        info = read_cpuinfo()
        present = set(info.get("flags", "").split())
        tsc = tsc_frequency_info()
        hv = _hypervisor_vendor()
        return cls(
            pmus=pmus, hybrid=hybrid, cpu_pmu=cpu_pmu,
            perf_event_paranoid=read_paranoid(),
            cpu_vendor=info.get("vendor_id", ""),
            cpu_family=int(info.get("cpu family", "0") or 0),
            cpu_model=int(info.get("model", "0") or 0),
            cpu_flags=tuple(f for f in PMU_FLAGS if f in present),
            tsc_hz=tsc.hz, tsc_source=tsc.source, tsc_precision=tsc.precision,
            events={k: probe_event(k, pmus) for k in EVENT_KINDS},
            kvm=probe_kvm(),
            kernel_release=platform.release(),
            cpu_model_name=info.get("model name", ""),
            hypervisor_vendor=hv[0] if hv else None,
        )

    # -- convenience ------------------------------------------------------------
    @property
    def has_hardware_pmu(self) -> bool:
        """PERF_TYPE_HARDWARE cycles count for a thread here."""
        ev = self.events.get("hardware")
        return bool(ev and ev.counting)

    @property
    def can_back_cycles_with_tsc(self) -> bool:
        """msr/tsc counts and task-clock samples: cycle events can be backed by TSC ticks."""
        tsc, clk = self.events.get("msr/tsc"), self.events.get("task-clock")
        return bool(tsc and tsc.counting and clk and clk.sampling)

    # -- serialisation ------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        d["cpu_flags"] = list(self.cpu_flags)
        return d

    def to_json(self, **kw: Any) -> str:
        """``json.dumps(self.to_dict(), **kw)``."""
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "HostCaps":
        """Rebuild from :meth:`to_dict` output (unknown keys ignored, missing required ones raise)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["pmus"] = {str(k): int(v) for k, v in d["pmus"].items()}
        kw["cpu_flags"] = tuple(d["cpu_flags"])
        kw["events"] = {k: EventSupport(**v) for k, v in d["events"].items()}
        kvm_names = {f.name for f in dataclasses.fields(KvmCaps)}
        kw["kvm"] = KvmCaps(**{k: v for k, v in d["kvm"].items() if k in kvm_names})
        return cls(**kw)

    @classmethod
    def from_json(cls, s: str) -> "HostCaps":
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(s))


_probe_lock = threading.Lock()
_probed: HostCaps | None = None


def host_caps() -> HostCaps:
    """``HostCaps.probe()`` once per process, then cached."""
    global _probed
    with _probe_lock:
        if _probed is None:
            _probed = HostCaps.probe()
        return _probed


__all__ = ["HostCaps", "EventSupport", "KvmCaps", "TscFrequency", "EVENT_KINDS", "PMU_FLAGS",
           "tsc_frequency", "tsc_frequency_info", "measure_tsc_hz", "read_pmus",
           "sysfs_event_config", "classify_pmus", "probe_event", "probe_kvm", "cpuid", "host_caps"]
