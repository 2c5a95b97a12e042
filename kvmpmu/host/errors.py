"""Typed errors for host perf calls.

Every failing syscall of :mod:`kvmpmu.host` is mapped here, in one place, to a
subclass of :class:`PerfError` carrying the errno and the attribute that
failed (like psutil's exception hierarchy and pygit2's single error map).
"""
from __future__ import annotations

import errno as _errno
import os
from typing import Any, Mapping

PARANOID_PATH = "/proc/sys/kernel/perf_event_paranoid"


class PerfError(OSError):
    """A perf_event_open / ioctl / read on a perf fd failed."""

    def __init__(self, err: int, message: str, attr: Mapping[str, Any] | None = None,
                 call: str = "perf_event_open") -> None:
        super().__init__(err, message)
        self.attr = dict(attr) if attr is not None else None
        self.call = call

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno))
        s = f"{self.call}: {self.strerror} [{name}]"
        if self.attr:
            fields = ", ".join(f"{k}={v:#x}" if isinstance(v, int) and k == "config" else f"{k}={v}"
                               for k, v in self.attr.items() if v)
            s += f" (attr: {fields})"
        return s


class PerfEventUnsupported(PerfError):
    """The host cannot count this event at all (ENOENT, EOPNOTSUPP)."""


class PerfPermissionError(PerfError, PermissionError):
    """perf refused for lack of privilege (EACCES, EPERM)."""


class PerfInvalid(PerfError):
    """The attribute (or ioctl argument) is invalid for this event (EINVAL)."""


class PerfBusy(PerfError):
    """The PMU resource is taken (EBUSY)."""


class PerfOutOfDescriptors(PerfError):
    """The process or system ran out of file descriptors (EMFILE, ENFILE)."""


_BY_ERRNO: dict[int, type[PerfError]] = {
    _errno.ENOENT: PerfEventUnsupported,
    _errno.EOPNOTSUPP: PerfEventUnsupported,
    _errno.EACCES: PerfPermissionError,
    _errno.EPERM: PerfPermissionError,
    _errno.EINVAL: PerfInvalid,
    _errno.EBUSY: PerfBusy,
    _errno.EMFILE: PerfOutOfDescriptors,
    _errno.ENFILE: PerfOutOfDescriptors,
}


def read_paranoid() -> int | None:
    """Current value of perf_event_paranoid, or None if unreadable."""
    try:
        with open(PARANOID_PATH) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def perf_error(neg_errno: int, attr: Mapping[str, Any] | None = None,
               call: str = "perf_event_open") -> PerfError:
    """Build the typed error for a shim result ``-errno``."""
    err = -neg_errno
    cls = _BY_ERRNO.get(err, PerfError)
    msg = os.strerror(err)
    if cls is PerfPermissionError:
        msg += (f"; {PARANOID_PATH} is {read_paranoid()} "
                "(run as root, or lower it: sysctl kernel.perf_event_paranoid=-1)")
    elif cls is PerfEventUnsupported and call == "perf_event_open":
        msg += "; this host's perf has no such event (no hardware PMU?)"
    elif cls is PerfOutOfDescriptors:
        msg += "; raise RLIMIT_NOFILE (ulimit -n) or close unused events"
    return cls(err, msg, attr, call)
