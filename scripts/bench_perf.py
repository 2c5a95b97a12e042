#!/usr/bin/env python3
"""Per-call cost of kvmpmu's PerfEvent operations against raw syscalls from Python.

Measures, on the calling thread, PerfEvent.read()/read_value() against a raw
``os.read`` of the same fd, PERF_EVENT_IOC_ENABLE/DISABLE, set_period,
refresh, and open+close, for task-clock (and msr/tsc where it opens).  Prints
a table of ns per call (best of several rounds) and the ratios measured in
this one run.

    scripts/bench_perf.py [--rounds N] [--calls N]
"""
from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_PY = os.path.join(os.path.dirname(HERE), ".venv", "bin", "python")

try:
    from kvmpmu.host import PerfError, PerfEvent, pmu_type
    from kvmpmu.host._lib import lib
    from kvmpmu.host.caps import sysfs_event_config
except ImportError:
    # Called with a python that does not have kvmpmu: use the project's venv.
    # (compare prefixes: the venv's python is a symlink to the system one)
    if os.path.exists(VENV_PY) and os.path.realpath(sys.prefix) != os.path.realpath(
            os.path.dirname(os.path.dirname(VENV_PY))) and not os.environ.get("KVMPMU_BENCH_REEXEC"):
        os.environ["KVMPMU_BENCH_REEXEC"] = "1"
        os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__), *sys.argv[1:]])
    sys.exit("bench_perf: kvmpmu is not importable; run scripts/test or scripts/demo first "
             "to create .venv")


def per_call_ns(fn: Callable[[], object], calls: int, rounds: int) -> float:
    """Best-of-``rounds`` mean time of one call of ``fn``, in ns (loop overhead subtracted)."""
    def loop(f: Callable[[], object]) -> int:
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            f()
        return time.perf_counter_ns() - t0

    def noop() -> None:
        return None

    best = min(loop(fn) for _ in range(rounds))
    empty = min(loop(noop) for _ in range(rounds))
    return max(best - empty, 0) / calls


def bench(calls: int, rounds: int) -> list[tuple[str, float]]:
    rows: list[tuple[str, float]] = []
    task_clock = {"type": lib.PERF_TYPE_SOFTWARE, "config": lib.PERF_COUNT_SW_TASK_CLOCK}
    kinds: list[tuple[str, dict[str, int]]] = [("task-clock", task_clock)]
    try:
        kinds.append(("msr/tsc", {"type": pmu_type("msr"), "config": sysfs_event_config("msr", "tsc")}))
    except (PerfError, ValueError):
        pass

    for name, attr in kinds:
        with PerfEvent(**attr) as ev:
            fd = ev.fd
            rows.append((f"{name}: os.read(fd, 24)", per_call_ns(lambda: os.read(fd, 24), calls, rounds)))
            rows.append((f"{name}: PerfEvent.read()", per_call_ns(ev.read, calls, rounds)))
            rows.append((f"{name}: PerfEvent.read_value()", per_call_ns(ev.read_value, calls, rounds)))

            def toggle() -> None:
                ev.disable()
                ev.enable()
            rows.append((f"{name}: disable()+enable()", per_call_ns(toggle, calls, rounds)))

            def raw_toggle() -> None:
                fcntl.ioctl(fd, lib.PERF_EVENT_IOC_DISABLE, 0)
                fcntl.ioctl(fd, lib.PERF_EVENT_IOC_ENABLE, 0)
            rows.append((f"{name}: raw fcntl.ioctl DISABLE+ENABLE", per_call_ns(raw_toggle, calls, rounds)))
            rows.append((f"{name}: reset()", per_call_ns(ev.reset, calls, rounds)))

    with PerfEvent(**task_clock, sample_period=10_000_000) as ev:
        periods = iter(range(10_000_000, 10_000_000 + calls * rounds * 4))
        rows.append(("task-clock: set_period()", per_call_ns(lambda: ev.set_period(next(periods)), calls, rounds)))
        rows.append(("task-clock: refresh(1)", per_call_ns(lambda: ev.refresh(1), calls, rounds)))

    oc = max(calls // 10, 100)
    for name, attr in kinds:
        rows.append((f"{name}: open+close", per_call_ns(lambda: PerfEvent(**attr).close(), oc, rounds)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="rounds per measurement (best is kept)")
    ap.add_argument("--calls", type=int, default=20000, help="calls per round")
    args = ap.parse_args(argv)
    try:
        rows = bench(args.calls, args.rounds)
    except PerfError as e:
        print(f"bench_perf: {e}", file=sys.stderr)
        return 1
    cost = dict(rows)
    base = cost["task-clock: os.read(fd, 24)"]
    width = max(len(n) for n, _ in rows)
    print(f"{'operation':<{width}}  {'ns/call':>9}  {'x os.read':>9}")
    print("-" * (width + 22))
    for n, ns in rows:
        print(f"{n:<{width}}  {ns:>9.0f}  {ns / base:>9.2f}")
    print()
    print("ratios (this run):")
    for kind in ("task-clock", "msr/tsc"):
        raw = cost.get(f"{kind}: os.read(fd, 24)")
        if raw:
            print(f"  {kind}: PerfEvent.read() / os.read = {cost[f'{kind}: PerfEvent.read()'] / raw:.2f}, "
                  f"read_value() / os.read = {cost[f'{kind}: PerfEvent.read_value()'] / raw:.2f}, "
                  f"disable+enable / raw ioctls = {cost[f'{kind}: disable()+enable()'] / cost[f'{kind}: raw fcntl.ioctl DISABLE+ENABLE']:.2f}, "
                  f"open+close / read() = {cost[f'{kind}: open+close'] / cost[f'{kind}: PerfEvent.read()']:.1f}")
    print(f"  set_period / read() = {cost['task-clock: set_period()'] / cost['task-clock: PerfEvent.read()']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
