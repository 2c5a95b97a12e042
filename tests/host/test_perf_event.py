"""PerfEvent for real on this host: counts against independent witnesses, overflow
signals, typed errors and fd hygiene."""
from __future__ import annotations

import errno
import os
import queue
import resource
import signal
import threading
import time
from typing import Callable

import pytest

from kvmpmu.host import (PerfError, PerfEvent, PerfEventUnsupported, PerfInvalid,
                         PerfOutOfDescriptors, gettid, pmu_type)
from kvmpmu.host._lib import lib
from kvmpmu.host.caps import sysfs_event_config, tsc_frequency
from kvmpmu.oracle import PerfModuleCounter, TaskStatsReader, schedstat_run_ns

BUSY_NS = 150_000_000      # CPU time each counting test burns on the measured thread
TOLERANCE = 0.02
POLL_IN, POLL_HUP = 1, 6   # si_code values of SIGPOLL (<asm-generic/siginfo.h>)


def busy(ns: int) -> None:
    """Burn ``ns`` of the calling thread's CPU time."""
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


def open_fds() -> set[int]:
    """The fds open now (without the one listdir used, which is closed by the time we look)."""
    out = set()
    for n in os.listdir("/proc/self/fd"):
        try:
            os.readlink(f"/proc/self/fd/{n}")
        except OSError:
            continue
        out.add(int(n))
    return out


def is_perf_fd(fd: int) -> bool:
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]"
    except OSError:
        return False


class Worker(threading.Thread):
    """A thread that runs the callables it is given, one at a time, until stopped."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.tid = 0
        self._jobs: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self._done: queue.Queue[object] = queue.Queue()
        self._ready = threading.Event()

    def run(self) -> None:
        self.tid = gettid()
        self._ready.set()
        while (job := self._jobs.get()) is not None:
            try:
                self._done.put(job())
            except BaseException as e:  # handed back to the test thread
                self._done.put(e)

    def __enter__(self) -> "Worker":
        self.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._jobs.put(None)
        self.join()

    def call(self, job: Callable[[], object]) -> object:
        self._jobs.put(job)
        r = self._done.get(timeout=30)
        if isinstance(r, BaseException):
            raise r
        return r


def task_clock(**kw: int) -> PerfEvent:
    return PerfEvent(type=lib.PERF_TYPE_SOFTWARE, config=lib.PERF_COUNT_SW_TASK_CLOCK, **kw)


def msr_tsc(**kw: int) -> PerfEvent:
    return PerfEvent(type=pmu_type("msr"), config=sysfs_event_config("msr", "tsc"), **kw)


def assert_close(value: float, reference: float, what: str) -> None:
    assert reference > 0, what
    rel = abs(value - reference) / reference
    assert rel <= TOLERANCE, f"{what}: {value:.0f} vs {reference:.0f} ({rel:.2%} apart)"


# -- counting, agreeing with the witnesses ---------------------------------------------

@pytest.mark.parametrize("event", ["task-clock", "msr/tsc"])
@pytest.mark.parametrize("where", ["self", "other-thread"])
def test_counts_busy_loop_like_the_witnesses(event: str, where: str, no_fd_leak: None) -> None:
    tsc_hz, _ = tsc_frequency()
    to_ns = (lambda v: v * 1e9 / tsc_hz) if event == "msr/tsc" else float

    def measure(tid: int, run: Callable[[Callable[[], object]], object]) -> tuple[float, float, float]:
        with TaskStatsReader() as ts, PerfModuleCounter(tid, "task-clock") as oracle, \
                (msr_tsc(tid=tid) if event == "msr/tsc" else task_clock(tid=tid)) as ev:
            t0 = ts.cpu_time_ns(tid)
            o0, (v0, _, _) = oracle.value(), ev.read()
            run(lambda: busy(BUSY_NS))
            v1, enabled, running = ev.read()
            o1 = oracle.value()
            t1 = ts.cpu_time_ns(tid)
        assert enabled > 0 and running == enabled      # never multiplexed
        return to_ns(v1 - v0), float(o1 - o0), float(t1 - t0)

    if where == "self":
        ours, perf_module, taskstats = measure(gettid(), lambda job: job())
    else:
        with Worker() as w:
            assert w.tid != gettid()
            ours, perf_module, taskstats = measure(w.tid, w.call)
    assert ours >= BUSY_NS * (1 - TOLERANCE)
    assert_close(ours, perf_module, f"{event} vs perf-module task-clock")
    assert_close(ours, taskstats, f"{event} vs taskstats")


def test_other_threads_time_is_not_counted(no_fd_leak: None) -> None:
    with Worker() as w, task_clock(tid=w.tid) as ev:
        v0 = ev.read_value()
        busy(50_000_000)                  # the test thread burns, the worker sleeps
        assert ev.read_value() - v0 < 5_000_000


def test_disable_stops_and_enable_resumes_counting(no_fd_leak: None) -> None:
    with task_clock(disabled=1) as ev:
        busy(10_000_000)
        assert ev.read() == (0, 0, 0)
        ev.enable()
        busy(20_000_000)
        ev.disable()
        v = ev.read_value()
        assert v >= 20_000_000 * 0.98     # task-clock vs the thread CPU clock busy() uses
        busy(20_000_000)
        assert ev.read_value() == v
        ev.reset()
        assert ev.read_value() == 0


# -- overflow signals -------------------------------------------------------------------

def test_refresh_n_signals_exactly_the_owner_n_times(no_fd_leak: None) -> None:
    """A counts, B owns the signal.  B blocks it and collects every instance with
    sigtimedwait (a thread-directed signal stays pending on its thread).  Every
    other thread has the counting C handler unblocked: had the kernel sent one
    anywhere else, take_overflows() would see it."""
    period, n = 2_000_000, 5
    signo = signal.SIGRTMIN + 3
    got: list[int] = []
    owner_ready = threading.Event()
    counting_done = threading.Event()
    owner_tid = [0]

    def owner() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signo})
        owner_tid[0] = gettid()
        owner_ready.set()
        while True:
            info = signal.sigtimedwait({signo}, 0.2)
            if info is not None:
                got.append(info.si_code)
            elif counting_done.is_set():
                return

    b = threading.Thread(target=owner, daemon=True)
    b.start()
    owner_ready.wait()
    with Worker() as a:
        ev = task_clock(tid=a.tid, sample_period=period, disabled=1)
        with ev:
            assert ev.signal_overflows_to(owner_tid[0], signo) == signo
            kicks0 = lib.kvmpmu_kicks()
            ev.refresh(n)
            a.call(lambda: busy(period * n * 4))
            value = ev.read_value()
            a.call(lambda: busy(period * 3))
            assert ev.read_value() == value       # disabled after the n-th overflow
            counting_done.set()
            b.join(timeout=10)
            assert not b.is_alive()
            assert ev.take_overflows() == 0       # no other thread got one
            assert lib.kvmpmu_kicks() == kicks0
    assert period * n <= value < period * (n + 1)
    assert len(got) == n, got
    # perf sends POLL_IN for each overflow and POLL_HUP for the one that ends the refresh
    assert got == [POLL_IN] * (n - 1) + [POLL_HUP]


def test_refresh_n_counted_by_the_c_handler_on_the_vcpu_thread(no_fd_leak: None) -> None:
    period, n = 1_000_000, 7
    with Worker() as w:
        def run() -> tuple[int, int]:
            with task_clock(sample_period=period, disabled=1) as ev:
                ev.signal_overflows_to()          # the calling (worker) thread
                ev.refresh(n)
                busy(period * n * 4)
                first = ev.take_overflows()
                ev.refresh(2)
                busy(period * 2 * 4)
                return first, ev.take_overflows()
        assert w.call(run) == (n, 2)


def test_set_period_changes_the_signal_rate(no_fd_leak: None) -> None:
    """One signal per period of task-clock: a 2.5x longer period gives 2.5x fewer signals."""
    def rate(ev: PerfEvent, period: int) -> tuple[int, int]:
        ev.set_period(period)
        ev.reset()
        ev.take_overflows()
        busy(60_000_000)
        return ev.take_overflows(), ev.read_value()

    with task_clock(sample_period=2_000_000, disabled=1) as ev:
        ev.signal_overflows_to()
        ev.enable()
        fast, v_fast = rate(ev, 2_000_000)
        slow, v_slow = rate(ev, 5_000_000)
        ev.disable()
    for k, v, p in ((fast, v_fast, 2_000_000), (slow, v_slow, 5_000_000)):
        # each overflow needs a full period; timer latency may stretch periods a little
        assert 0.8 * v / p - 1 <= k <= v / p, (k, v, p)
    assert fast >= 2 * slow


# -- errors and fd hygiene ----------------------------------------------------------------

def test_read_format_id(no_fd_leak: None) -> None:
    with task_clock(read_format=lib.PERF_FORMAT_ID) as ev:
        assert ev.id() > 0
        busy(1_000_000)
        value, enabled, running = ev.read()
        assert value >= 900_000 and running == enabled > 0
        assert ev.read_value() >= value


def test_hardware_event_unsupported_enoent(no_fd_leak: None) -> None:
    with pytest.raises(PerfEventUnsupported) as ei:
        PerfEvent(type=lib.PERF_TYPE_HARDWARE, config=lib.PERF_COUNT_HW_CPU_CYCLES)
    assert ei.value.errno == errno.ENOENT
    assert ei.value.attr is not None and ei.value.attr["type"] == lib.PERF_TYPE_HARDWARE
    assert isinstance(ei.value, OSError) and "ENOENT" in str(ei.value)


@pytest.mark.parametrize("make", [
    lambda: task_clock(sample_type=1 << 63),       # no such sample bit
    lambda: msr_tsc(sample_period=1000),           # msr/tsc cannot sample
    lambda: msr_tsc(exclude_kernel=1),             # nor exclude anything
], ids=["sample_type", "msr-sampling", "msr-exclude"])
def test_invalid_attr_raises_perf_invalid(make: Callable[[], PerfEvent], no_fd_leak: None) -> None:
    with pytest.raises(PerfInvalid) as ei:
        make()
    assert ei.value.errno == errno.EINVAL
    assert ei.value.attr is not None


def test_invalid_ioctl_raises_typed_error(no_fd_leak: None) -> None:
    with msr_tsc() as ev, pytest.raises(PerfError) as ei:
        ev.set_period(1000)                        # a counting-only event
    assert ei.value.errno == errno.EINVAL and ei.value.call == "PERF_EVENT_IOC_PERIOD"


@pytest.mark.parametrize("kind", ["task-clock", "msr/tsc"])
def test_out_of_descriptors(kind: str) -> None:
    if kind == "msr/tsc":   # resolve the sysfs names before the fds run out
        attr = {"type": pmu_type("msr"), "config": sysfs_event_config("msr", "tsc")}
    else:
        attr = {"type": lib.PERF_TYPE_SOFTWARE, "config": lib.PERF_COUNT_SW_TASK_CLOCK}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_fds()
    lowest_free = min(set(range(max(before) + 2)) - before)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))
    try:
        with pytest.raises(PerfOutOfDescriptors) as ei:
            PerfEvent(**attr)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert ei.value.errno == errno.EMFILE and ei.value.attr is not None
    assert open_fds() == before


def test_pmu_type_when_out_of_descriptors_is_not_a_missing_pmu() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    before = open_fds()
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(set(range(max(before) + 2)) - before), hard))
    try:
        with pytest.raises(PerfOutOfDescriptors):
            pmu_type("msr")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with pytest.raises(PerfError) as ei:
        pmu_type("no-such-pmu")
    assert ei.value.errno == errno.ENOENT


def test_close_is_idempotent_and_context_manager_closes(no_fd_leak: None) -> None:
    with task_clock() as ev:
        fd = ev.fd
        assert is_perf_fd(fd) and not ev.closed
    assert ev.closed and ev.fd == -1 and not is_perf_fd(fd)
    ev.close()
    ev.close()
    with pytest.raises(ValueError):
        ev.read()
    assert ev.take_overflows() == 0


def test_exception_inside_with_still_closes(no_fd_leak: None) -> None:
    with pytest.raises(RuntimeError):
        with task_clock() as ev:
            raise RuntimeError("boom")
    assert ev.closed


def test_dropped_event_releases_its_fd(no_fd_leak: None) -> None:
    ev = task_clock()
    fd = ev.fd
    assert is_perf_fd(fd)
    del ev
    assert not is_perf_fd(fd)


def test_unknown_attr_field_is_a_type_error(no_fd_leak: None) -> None:
    with pytest.raises(TypeError):
        PerfEvent(type=lib.PERF_TYPE_SOFTWARE, frequency=1)  # type: ignore[call-arg]
