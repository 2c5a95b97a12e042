"""Independent witnesses that tests compare kvmpmu's counts against.

None of these go through kvmpmu's cffi shim:

* :class:`PerfModuleCounter` counts a software perf event on a thread with the
  kernel's own Python ``perf`` module (Debian package ``linux-perf``), so
  the attr is built and the event opened by the kernel tree's code.
* :func:`thread_cpu_time_ns` asks the kernel's taskstats netlink interface
  (through pyroute2) for a thread's CPU run time (:class:`TaskStatsReader`
  keeps the socket open).
* :func:`schedstat_run_ns` reads ``/proc/<pid>/task/<tid>/schedstat``, a
  third, cheap view of the same scheduler clock.

All three measure the thread's scheduler runtime (``sum_exec_runtime``) in
nanoseconds, which is what ``task-clock`` counts, and what ``msr/tsc`` counts
in TSC ticks.

The kernel brings ``sum_exec_runtime`` up to date only at a scheduler tick or a
reschedule, while perf reads of task-clock are exact.  For a thread that is
not running (blocked, or descheduled) the taskstats and schedstat values are
exact; for the *calling* thread these functions first ``sched_yield()`` (the
fair class updates the runtime on yield), so the value is current.  A thread
running on another CPU at the time of the query is up to one tick behind.
"""
from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import struct
import sys
import threading
from types import ModuleType
from typing import Any

PERF_MODULE_DIRS = ("/usr/lib/python3/dist-packages",)

_perf_lock = threading.Lock()
_perf_module: ModuleType | None = None


class OracleUnavailable(RuntimeError):
    """A witness cannot be used on this host (missing package, no permission)."""


def _find_perf_module() -> str | None:
    tag = f"cpython-{sys.version_info.major}{sys.version_info.minor}"
    for d in PERF_MODULE_DIRS:
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        exact = [n for n in names if n.startswith(f"perf.{tag}") and n.endswith(".so")]
        other = [n for n in names if n.startswith("perf.") and n.endswith(".so")]
        for n in exact or other:
            return os.path.join(d, n)
    return None


def load_perf_module(path: str | None = None) -> ModuleType:
    """The kernel's Python ``perf`` module, loaded by path (it lives outside any venv).

    Raises :class:`OracleUnavailable` naming the Debian package ``linux-perf``
    when it is not installed.  Loaded once per process; it is never put in
    ``sys.modules`` so it cannot shadow anything named ``perf``.
    """
    global _perf_module
    with _perf_lock:
        if _perf_module is not None and path is None:
            return _perf_module
        so = path or _find_perf_module()
        if so is None or not os.path.exists(so):
            raise OracleUnavailable(
                "the kernel's Python 'perf' module is missing (looked in "
                f"{', '.join(PERF_MODULE_DIRS)}); install the Debian package linux-perf")
        loader = importlib.machinery.ExtensionFileLoader("perf", so)
        spec = importlib.util.spec_from_file_location("perf", so, loader=loader)
        if spec is None:
            raise OracleUnavailable(f"cannot load the perf module from {so}")
        had = sys.modules.get("perf")
        try:
            mod = importlib.util.module_from_spec(spec)
            loader.exec_module(mod)
        except ImportError as e:
            raise OracleUnavailable(f"cannot load the perf module from {so}: {e} "
                                    "(built for another Python? reinstall linux-perf)") from e
        finally:
            # single-phase extension init registers itself as sys.modules["perf"]
            if had is None:
                sys.modules.pop("perf", None)
            else:
                sys.modules["perf"] = had
        if path is None:
            _perf_module = mod
        return mod


def _perf_fds() -> dict[int, int]:
    """fd -> inode of every perf_event fd this process has open."""
    out: dict[int, int] = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[perf_event]":
                out[int(name)] = os.fstat(int(name)).st_ino
        except OSError:
            continue  # the listdir fd itself, or one closed meanwhile
    return out


class PerfModuleCounter:
    """Counts one software perf event on one thread through the kernel's ``perf`` module.

    The event is opened by ``perf.evsel.open`` for a ``perf.thread_map`` of
    the thread, counting from creation.  The module's evsel has no ``read()``,
    so the counter reads the fd the module opened (found as the one new
    ``perf_event`` fd of the process; do not open perf events in other
    threads while constructing one).  ``read()`` returns
    (value, time_enabled, time_running); for task-clock / cpu-clock the value
    is nanoseconds of the thread's CPU time.  :meth:`close` closes the fd
    (the module's evsel does not close it when dropped).
    """

    def __init__(self, tid: int | None = None, event: str = "task-clock") -> None:
        perf = load_perf_module()
        configs = {"task-clock": perf.COUNT_SW_TASK_CLOCK, "cpu-clock": perf.COUNT_SW_CPU_CLOCK,
                   "page-faults": perf.COUNT_SW_PAGE_FAULTS,
                   "context-switches": perf.COUNT_SW_CONTEXT_SWITCHES}
        if event not in configs:
            raise ValueError(f"unknown software event {event!r}; one of {', '.join(configs)}")
        self.tid = threading.get_native_id() if tid is None else tid
        self.event = event
        self._fd = -1
        self._ino = 0
        before = _perf_fds()
        self._evsel: Any = perf.evsel(
            type=perf.TYPE_SOFTWARE, config=configs[event], disabled=0,
            read_format=perf.FORMAT_TOTAL_TIME_ENABLED | perf.FORMAT_TOTAL_TIME_RUNNING)
        self._threads: Any = perf.thread_map(tid=self.tid)
        try:
            self._evsel.open(threads=self._threads)
        except OSError as e:
            raise OracleUnavailable(f"perf module could not open {event} on tid {self.tid}: {e}") from e
        new = {fd: ino for fd, ino in _perf_fds().items() if before.get(fd) != ino}
        if len(new) != 1:
            for fd in new:
                os.close(fd)
            raise OracleUnavailable(f"perf module opened {len(new)} fds, expected 1 "
                                    "(another thread opened perf events meanwhile?)")
        (self._fd, self._ino), = new.items()

    def read(self) -> tuple[int, int, int]:
        """(value, time_enabled, time_running), read from the module's fd."""
        if self._fd < 0:
            raise ValueError("read of a closed PerfModuleCounter")
        data = os.read(self._fd, 24)
        return struct.unpack("=3Q", data)  # type: ignore[return-value]

    def value(self) -> int:
        """Just the count."""
        return self.read()[0]

    def close(self) -> None:
        """Close the event; idempotent."""
        if self._fd < 0:
            return
        fd, ino = self._fd, self._ino
        self._fd = -1
        self._evsel = self._threads = None
        # Only close it if it is still the module's event (a newer perf module
        # might close it itself when the evsel is dropped, and the number be reused).
        try:
            if os.fstat(fd).st_ino == ino:
                os.close(fd)
        except OSError:
            pass

    def __enter__(self) -> "PerfModuleCounter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def perf_module_count(tid: int | None = None, event: str = "task-clock") -> PerfModuleCounter:
    """Start counting ``event`` on ``tid`` with the kernel's perf module (see :class:`PerfModuleCounter`)."""
    return PerfModuleCounter(tid, event)


class TaskStatsReader:
    """A taskstats netlink socket (pyroute2) kept open for repeated queries."""

    def __init__(self) -> None:
        try:
            from pyroute2 import TaskStats
        except ImportError as e:  # pragma: no cover - pyroute2 is a dependency
            raise OracleUnavailable("pyroute2 is not installed (pip install pyroute2)") from e
        self._ts = TaskStats()
        try:
            self._ts.bind()
        except Exception as e:
            self._ts.close()
            raise OracleUnavailable(f"taskstats netlink unavailable: {e}") from e

    def stats(self, tid: int) -> dict[str, Any]:
        """The TASKSTATS_TYPE_STATS record of one thread (a tid, not an aggregate)."""
        try:
            msgs = self._ts.get_pid_stat(tid)
        except Exception as e:
            raise OracleUnavailable(f"taskstats for tid {tid}: {e}") from e
        for msg in msgs:
            aggr = msg.get_attr("TASKSTATS_TYPE_AGGR_PID")
            if aggr is not None:
                st = aggr.get_attr("TASKSTATS_TYPE_STATS")
                if st is not None:
                    return dict(st)
        raise OracleUnavailable(f"taskstats gave no per-thread record for tid {tid}")

    def cpu_time_ns(self, tid: int) -> int:
        """Thread ``tid``'s scheduler runtime in ns (taskstats ``cpu_run_virtual_total``).

        Despite its name, taskstats' ``cpu_run_real_total`` is utime + stime,
        which without full dynticks accounting moves in whole ticks (4 ms at
        HZ=250): too coarse for a 2% comparison of a short busy loop.
        ``cpu_run_virtual_total`` is the exact ``se.sum_exec_runtime``
        (brought up to date first when ``tid`` is the calling thread).
        """
        _refresh_runtime(tid)
        return int(self.stats(tid)["cpu_run_virtual_total"])

    def cpu_run_real_ns(self, tid: int) -> int:
        """Thread ``tid``'s ``cpu_run_real_total`` (utime + stime, tick granular), in ns."""
        return int(self.stats(tid)["cpu_run_real_total"])

    def close(self) -> None:
        """Close the netlink socket; idempotent."""
        if self._ts is not None:
            self._ts.close()
            self._ts = None  # type: ignore[assignment]

    def __enter__(self) -> "TaskStatsReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _refresh_runtime(tid: int) -> None:
    # sum_exec_runtime of a running task lags by up to a tick (4 ms at HZ=250);
    # yield_task_fair() runs update_curr(), making the caller's value current.
    if tid == threading.get_native_id():
        os.sched_yield()


def thread_cpu_time_ns(tid: int | None = None) -> int:
    """CPU run time of thread ``tid`` (default: the caller) in ns, from taskstats.

    This is the scheduler's ``sum_exec_runtime`` (user + kernel time since the
    thread started; taskstats field ``cpu_run_virtual_total``, see
    :meth:`TaskStatsReader.cpu_time_ns`), obtained over netlink by pyroute2 —
    independent of perf.  Opens and closes
    a netlink socket per call; use :class:`TaskStatsReader` for many calls.
    """
    with TaskStatsReader() as r:
        return r.cpu_time_ns(threading.get_native_id() if tid is None else tid)


def schedstat_run_ns(tid: int | None = None, pid: int | None = None) -> int:
    """Thread ``tid``'s time on the CPU in ns from ``/proc/<pid>/task/<tid>/schedstat``.

    The first field of schedstat is the same ``sum_exec_runtime`` taskstats
    reports, read through procfs instead of netlink.
    """
    tid = threading.get_native_id() if tid is None else tid
    pid = os.getpid() if pid is None else pid
    if pid == os.getpid():
        _refresh_runtime(tid)
    try:
        with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError) as e:
        raise OracleUnavailable(f"schedstat of tid {tid}: {e}") from e


__all__ = ["OracleUnavailable", "load_perf_module", "PerfModuleCounter", "perf_module_count",
           "TaskStatsReader", "thread_cpu_time_ns", "schedstat_run_ns"]
