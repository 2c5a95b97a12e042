"""The independent witnesses of kvmpmu.oracle agree with each other, for real."""
from __future__ import annotations

import os
import threading
import time

import pytest

from kvmpmu import oracle
from kvmpmu.oracle import (OracleUnavailable, PerfModuleCounter, TaskStatsReader,
                           load_perf_module, schedstat_run_ns, thread_cpu_time_ns)

BUSY_NS = 100_000_000


def busy(ns: int) -> None:
    end = time.thread_time_ns() + ns
    while time.thread_time_ns() < end:
        pass


def perf_fds() -> set[int]:
    out = set()
    for n in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{n}") == "anon_inode:[perf_event]":
                out.add(int(n))
        except OSError:
            pass
    return out


def test_perf_module_loads_by_path_without_shadowing() -> None:
    perf = load_perf_module()
    assert perf.__file__.startswith("/usr/lib/python3/dist-packages/")
    assert hasattr(perf, "evsel") and hasattr(perf, "COUNT_SW_TASK_CLOCK")
    assert load_perf_module() is perf
    import sys
    assert sys.modules.get("perf") is not perf


def test_missing_perf_module_names_the_package(tmp_path) -> None:
    with pytest.raises(OracleUnavailable, match="linux-perf"):
        load_perf_module(str(tmp_path / "perf.cpython-311-x86_64-linux-gnu.so"))


def test_perf_module_counts_the_calling_thread(no_fd_leak: None) -> None:
    with PerfModuleCounter() as c:
        s0 = schedstat_run_ns()
        busy(BUSY_NS)
        value, enabled, running = c.read()
        s1 = schedstat_run_ns()
    assert enabled == running and value >= BUSY_NS * 0.98
    assert abs(value - (s1 - s0)) / value < 0.02


def test_perf_module_counts_another_thread_only(no_fd_leak: None) -> None:
    go, done, leave = threading.Event(), threading.Event(), threading.Event()
    tid = [0]

    def work() -> None:
        tid[0] = threading.get_native_id()
        go.wait()
        busy(BUSY_NS)
        done.set()
        leave.wait()

    t = threading.Thread(target=work)
    t.start()
    while not tid[0]:
        time.sleep(0.001)
    try:
        with PerfModuleCounter(tid[0]) as c, TaskStatsReader() as ts:
            t0 = ts.cpu_time_ns(tid[0])
            busy(BUSY_NS // 2)              # ours: must not show up in the worker's count
            assert c.value() < BUSY_NS // 20
            go.set()
            done.wait()
            value = c.value()
            t1 = ts.cpu_time_ns(tid[0])
            s = schedstat_run_ns(tid[0])
    finally:
        leave.set()
        t.join()
    assert value >= BUSY_NS * 0.98       # task-clock and the thread CPU clock differ a little
    assert abs(value - (t1 - t0)) / value < 0.02
    assert s == t1          # both read the same sum_exec_runtime of a sleeping thread


def test_close_is_idempotent_and_closes_the_modules_fd() -> None:
    before = perf_fds()
    c = PerfModuleCounter(event="cpu-clock")
    (fd,) = perf_fds() - before
    c.close()
    c.close()
    assert perf_fds() == before
    with pytest.raises(ValueError):
        c.read()
    assert fd not in perf_fds()


def test_unknown_event_rejected() -> None:
    with pytest.raises(ValueError):
        PerfModuleCounter(event="cycles")


def test_taskstats_and_schedstat_agree_on_the_caller() -> None:
    a = schedstat_run_ns()
    t = thread_cpu_time_ns()
    busy(20_000_000)
    b = schedstat_run_ns()
    # the caller's runtime is refreshed (sched_yield) before each read
    assert a <= t <= b and b - a >= 20_000_000


def test_taskstats_of_a_dead_thread_is_unavailable() -> None:
    t = threading.Thread(target=lambda: None)
    t.start()
    tid = t.native_id
    t.join()
    # join() returns once the Python thread is done; the kernel task may linger a moment
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/self/task/{tid}") and time.monotonic() < deadline:
        time.sleep(0.001)
    with pytest.raises(OracleUnavailable):
        thread_cpu_time_ns(tid)
    with pytest.raises(OracleUnavailable):
        schedstat_run_ns(tid)


def test_module_exports() -> None:
    for name in oracle.__all__:
        assert getattr(oracle, name).__doc__
