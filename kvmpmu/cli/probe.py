"""``kvmpmu probe``: the host's capabilities and, with ``-m``, a model's guest view."""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from kvmpmu.cli import command

if TYPE_CHECKING:
    from kvmpmu.host.caps import HostCaps


def _yn(v: bool | None) -> str:
    return "unknown" if v is None else ("yes" if v else "no")


def format_caps(caps: "HostCaps") -> str:
    """HostCaps as a readable two-column table."""
    rows: list[tuple[str, str]] = []

    def section(title: str) -> None:
        rows.append(("", ""))
        rows.append((f"[{title}]", ""))

    section("cpu")
    rows.append(("vendor", caps.cpu_vendor or "unknown"))
    rows.append(("family / model", f"{caps.cpu_family} / {caps.cpu_model} ({caps.cpu_family:#x} / {caps.cpu_model:#x})"))
    if caps.cpu_model_name:
        rows.append(("model name", caps.cpu_model_name))
    if caps.hypervisor_vendor:
        rows.append(("hypervisor", caps.hypervisor_vendor))
    rows.append(("pmu flags", " ".join(caps.cpu_flags) or "-"))
    rows.append(("kernel", caps.kernel_release or "unknown"))

    section("tsc")
    rows.append(("frequency", f"{caps.tsc_hz} Hz ({caps.tsc_hz / 1e6:.3f} MHz)"))
    rows.append(("source", caps.tsc_source))
    rows.append(("precision", caps.tsc_precision))

    section("perf")
    rows.append(("perf_event_paranoid", "unreadable" if caps.perf_event_paranoid is None
                 else str(caps.perf_event_paranoid)))
    rows.append(("core pmu", caps.cpu_pmu or "none (no hardware PMU exposed)"))
    rows.append(("hybrid", _yn(caps.hybrid)))
    rows.append(("pmus", ", ".join(f"{n}={t}" for n, t in sorted(caps.pmus.items(), key=lambda x: x[1]))))
    rows.append(("hardware pmu", _yn(caps.has_hardware_pmu)))
    rows.append(("cycles from tsc", _yn(caps.can_back_cycles_with_tsc)))

    section("events (calling thread)")
    rows.append(("event", "count  sample  note"))
    for name, ev in caps.events.items():
        rows.append((name, f"{_yn(ev.counting):<5}  {_yn(ev.sampling):<6}  {ev.error or ''}".rstrip()))

    section("kvm")
    k = caps.kvm
    rows.append(("/dev/kvm usable", _yn(k.dev_kvm) + (f" ({k.error})" if k.error else "")))
    rows.append(("api version", "-" if k.api_version is None else str(k.api_version)))
    rows.append(("user-space msr exits", _yn(k.user_space_msr)))
    rows.append(("msr filter", _yn(k.msr_filter)))
    rows.append(("pmu capability", f"{k.pmu_capability:#x}"))
    rows.append(("pmu event filter", _yn(k.pmu_event_filter)))
    rows.append(("masked events", _yn(k.masked_events)))
    rows.append(("kvm.enable_pmu", _yn(k.enable_pmu)))
    rows.append(("in-kernel irqchip", _yn(k.irqchip)))

    width = max(len(a) for a, _ in rows)
    lines = [f"{a:<{width}}  {b}".rstrip() if a and not a.startswith("[") else a for a, b in rows]
    return "\n".join(lines).strip("\n") + "\n"


def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the capabilities as JSON")


@command("probe", help="show what this host offers a virtual PMU (perf, TSC, KVM)",
         add_arguments=_probe_args)
def cmd_probe(args: argparse.Namespace) -> int:
    """``kvmpmu probe [--json]``."""
    from kvmpmu.host.caps import HostCaps
    caps = HostCaps.probe()
    if args.json:
        sys.stdout.write(json.dumps(caps.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(format_caps(caps))
    return 0


