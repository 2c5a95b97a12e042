"""One host perf event owned by Python: :class:`PerfEvent`."""
from __future__ import annotations

import errno as _errno
import os
import struct
import threading
from typing import Any

from kvmpmu.host._lib import ffi, lib
from kvmpmu.host.errors import PerfError, perf_error

_ATTR_FIELDS = ("type", "config", "config1", "config2", "sample_period", "sample_type",
                "read_format", "wakeup_events", "disabled", "inherit", "pinned",
                "exclude_user", "exclude_kernel", "exclude_hv", "exclude_idle",
                "exclude_host", "exclude_guest", "precise_ip")

READ_TIMES = lib.PERF_FORMAT_TOTAL_TIME_ENABLED | lib.PERF_FORMAT_TOTAL_TIME_RUNNING

# read() layout: value, time_enabled, time_running[, id] (read_format order).
_READ3 = struct.Struct("=3Q")
_READ4 = struct.Struct("=4Q")


def _unpack_with_id(b: bytes) -> tuple[int, ...]:
    return _READ4.unpack(b)[:3]

_kick_lock = threading.Lock()
_kick_signals: set[int] = set()


def overflow_signal() -> int:
    """The real-time signal kvmpmu uses for overflow notifications and vCPU kicks."""
    return lib.kvmpmu_sigrtmin() + 3


def install_kick_handler(signo: int | None = None) -> int:
    """Install (once per signal) the C handler that counts overflow signals.

    The handler has no SA_RESTART, so a blocking syscall such as KVM_RUN
    returns EINTR when the signal arrives.  Returns the signal number.
    """
    signo = overflow_signal() if signo is None else signo
    with _kick_lock:
        if signo not in _kick_signals:
            r = lib.kvmpmu_install_kick_handler(signo)
            if r < 0:
                raise perf_error(r, call="sigaction")
            _kick_signals.add(signo)
    return signo


def gettid() -> int:
    """Kernel thread id of the calling thread."""
    return int(lib.kvmpmu_gettid())


class PerfEvent:
    """A perf event for one thread, opened from keyword arguments.

    Keyword arguments map onto ``perf_event_attr`` fields of the same name
    (``type``, ``config``, ``exclude_user`` ..., ``sample_period``,
    ``wakeup_events``, ``read_format``).  ``tid`` selects the thread (default:
    the calling thread), ``cpu`` the CPU (default: any).  The event always
    reads with time_enabled/time_running.  Every failing call raises a
    :class:`~kvmpmu.host.errors.PerfError` subclass; the fd is never leaked.
    """

    __slots__ = ("fd", "attr", "tid", "_buf", "_closed", "_rlen", "_runpack", "__weakref__")

    def __init__(self, *, tid: int | None = None, cpu: int = -1, group_fd: int = -1,
                 **attr: Any) -> None:
        self._closed = True
        self.fd = -1
        unknown = set(attr) - set(_ATTR_FIELDS)
        if unknown:
            raise TypeError(f"unknown perf_event_attr field(s): {', '.join(sorted(unknown))}")
        if "type" not in attr:
            raise TypeError("PerfEvent needs type=")
        rf = int(attr.get("read_format", 0))
        if rf & ~(READ_TIMES | lib.PERF_FORMAT_ID):
            raise ValueError(f"read_format {rf:#x}: only TOTAL_TIME_ENABLED/RUNNING and ID are supported")
        attr["read_format"] = rf | READ_TIMES
        self.attr: dict[str, Any] = {k: attr.get(k, 0) for k in _ATTR_FIELDS}
        self.tid = gettid() if tid is None else tid
        c = ffi.new("struct kvmpmu_attr *")
        for k, v in self.attr.items():
            setattr(c, k, int(v))
        self._buf = ffi.new("uint64_t[4]")
        if rf & lib.PERF_FORMAT_ID:
            self._rlen, self._runpack = _READ4.size, _unpack_with_id
        else:
            self._rlen, self._runpack = _READ3.size, _READ3.unpack
        fd = lib.kvmpmu_perf_event_open(c, self.tid, cpu, group_fd, 0)
        if fd < 0:
            raise perf_error(fd, self.attr)
        self.fd = fd
        self._closed = False

    # -- control ----------------------------------------------------------
    def _ioctl(self, request: int, arg: int = 0, name: str = "ioctl") -> None:
        self._check_open()
        r = lib.kvmpmu_ioctl_noarg(self.fd, request, arg)
        if r < 0:
            raise perf_error(r, self.attr, name)

    def enable(self) -> None:
        """PERF_EVENT_IOC_ENABLE."""
        self._ioctl(lib.PERF_EVENT_IOC_ENABLE, 0, "PERF_EVENT_IOC_ENABLE")

    def disable(self) -> None:
        """PERF_EVENT_IOC_DISABLE."""
        self._ioctl(lib.PERF_EVENT_IOC_DISABLE, 0, "PERF_EVENT_IOC_DISABLE")

    def reset(self) -> None:
        """PERF_EVENT_IOC_RESET: the count restarts at 0."""
        self._ioctl(lib.PERF_EVENT_IOC_RESET, 0, "PERF_EVENT_IOC_RESET")

    def refresh(self, n: int) -> None:
        """PERF_EVENT_IOC_REFRESH: enable for ``n`` more overflows, then disable."""
        self._ioctl(lib.PERF_EVENT_IOC_REFRESH, n, "PERF_EVENT_IOC_REFRESH")

    def set_period(self, period: int) -> None:
        """PERF_EVENT_IOC_PERIOD: a new sample period, effective immediately."""
        self._check_open()
        r = lib.kvmpmu_ioctl_u64(self.fd, lib.PERF_EVENT_IOC_PERIOD, period)
        if r < 0:
            raise perf_error(r, self.attr, "PERF_EVENT_IOC_PERIOD")
        self.attr["sample_period"] = period

    def id(self) -> int:
        """PERF_EVENT_IOC_ID: the kernel's id of this event."""
        self._check_open()
        out = ffi.new("uint64_t *")
        r = lib.kvmpmu_ioctl_get_u64(self.fd, lib.PERF_EVENT_IOC_ID, out)
        if r < 0:
            raise perf_error(r, self.attr, "PERF_EVENT_IOC_ID")
        return int(out[0])

    def signal_overflows_to(self, tid: int | None = None, signo: int | None = None) -> int:
        """Send each overflow notification of this event to thread ``tid`` as ``signo``.

        Defaults: the calling thread, :func:`overflow_signal`.  The kvmpmu C
        handler is installed for ``signo`` so that overflows are counted per
        fd (see :meth:`take_overflows`).  Returns the signal number.
        """
        self._check_open()
        signo = install_kick_handler(signo)
        lib.kvmpmu_overflow_forget(self.fd)
        r = lib.kvmpmu_signal_to_thread(self.fd, gettid() if tid is None else tid, signo)
        if r < 0:
            raise perf_error(r, self.attr, "fcntl(F_SETOWN_EX/F_SETSIG/O_ASYNC)")
        return signo

    def take_overflows(self) -> int:
        """Overflow signals received for this fd since the last call."""
        return int(lib.kvmpmu_overflow_take(self.fd)) if not self._closed else 0

    def peek_overflows(self) -> int:
        """Overflow signals received for this fd, without consuming them."""
        return int(lib.kvmpmu_overflow_peek(self.fd)) if not self._closed else 0

    # -- reading ----------------------------------------------------------
    # os.read + struct is the fastest path from Python (see scripts/bench_perf.py);
    # a closed event has fd -1, so the closed check is only paid on failure.
    def read(self) -> tuple[int, int, int]:
        """(value, time_enabled, time_running); the value is not scaled."""
        try:
            return self._runpack(os.read(self.fd, self._rlen))  # type: ignore[no-any-return]
        except OSError as e:
            self._check_open()
            raise perf_error(-(e.errno or _errno.EIO), self.attr, "read") from None
        except struct.error:  # short read
            raise perf_error(-_errno.EIO, self.attr, "read") from None

    def read_value(self) -> int:
        """Just the (unscaled) count."""
        try:
            return self._runpack(os.read(self.fd, self._rlen))[0]
        except OSError as e:
            self._check_open()
            raise perf_error(-(e.errno or _errno.EIO), self.attr, "read") from None
        except struct.error:
            raise perf_error(-_errno.EIO, self.attr, "read") from None

    # -- lifetime ---------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("operation on a closed PerfEvent")

    def close(self) -> None:
        """Close the fd; idempotent."""
        if not self._closed:
            self._closed = True
            lib.kvmpmu_overflow_forget(self.fd)
            lib.kvmpmu_close(self.fd)
            self.fd = -1

    def __enter__(self) -> "PerfEvent":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self.fd}"
        return f"<PerfEvent type={self.attr['type']} config={self.attr['config']:#x} tid={self.tid} {state}>"


def pmu_type(name: str) -> int:
    """The perf type id of a PMU under /sys/bus/event_source/devices (e.g. 'msr')."""
    path = f"/sys/bus/event_source/devices/{name}/type"
    try:
        with open(path) as f:
            return int(f.read())
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:
        raise PerfError(2, f"no perf PMU named {name!r} on this host", None, "sysfs") from e
    except OSError as e:
        # e.g. EMFILE: not a missing PMU, so keep the real errno (and its typed error)
        raise perf_error(-(e.errno or 5), None, f"open {path}") from e


__all__ = ["PerfEvent", "PerfError", "gettid", "install_kick_handler", "overflow_signal", "pmu_type"]
