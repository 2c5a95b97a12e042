"""HostCaps.probe() on this machine (no hardware PMU, msr/tsc, working /dev/kvm)."""
from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest

from kvmpmu.host import HostCaps, pmu_type
from kvmpmu.host.caps import (EVENT_KINDS, EventSupport, KvmCaps, classify_pmus, cpuid,
                              measure_tsc_hz, probe_event, read_pmus, sysfs_event_config,
                              tsc_frequency, tsc_frequency_info)

HAVE_KVM = os.path.exists("/dev/kvm")


@pytest.fixture(scope="module")
def caps() -> HostCaps:
    return HostCaps.probe()


def test_probe_leaks_no_fd(no_fd_leak: None) -> None:
    HostCaps.probe()


def test_no_hardware_events_here(caps: HostCaps) -> None:
    for kind in ("hardware", "raw", "hw_cache"):
        ev = caps.events[kind]
        assert not ev.counting and not ev.sampling
        assert ev.error is not None and ev.error.startswith("ENOENT")
    assert not caps.has_hardware_pmu
    assert caps.cpu_pmu is None and not caps.hybrid


def test_msr_tsc_counts_but_does_not_sample(caps: HostCaps) -> None:
    ev = caps.events["msr/tsc"]
    assert ev.counting and not ev.sampling
    assert ev.error is not None and "EINVAL" in ev.error


def test_software_clocks_count_and_sample(caps: HostCaps) -> None:
    for kind in ("task-clock", "cpu-clock"):
        assert caps.events[kind] == EventSupport(True, True, None)
    assert caps.can_back_cycles_with_tsc


def test_event_keys_exact(caps: HostCaps) -> None:
    assert tuple(caps.events) == EVENT_KINDS == (
        "hardware", "raw", "hw_cache", "task-clock", "cpu-clock", "msr/tsc")


def test_pmus_from_sysfs(caps: HostCaps) -> None:
    assert caps.pmus["software"] == 1 and caps.pmus["tracepoint"] == 2
    assert caps.pmus["msr"] == pmu_type("msr")
    assert caps.pmus == read_pmus()
    assert sysfs_event_config("msr", "tsc") == 0


def test_hybrid_classification() -> None:
    assert classify_pmus({"cpu_core": 4, "cpu_atom": 10, "msr": 9}) == (True, "cpu_core")
    assert classify_pmus({"cpu": 4, "msr": 9}) == (False, "cpu")
    assert classify_pmus({"software": 1}) == (False, None)


def test_read_pmus_of_a_hybrid_tree(tmp_path) -> None:
    for name, t in {"cpu_core": 4, "cpu_atom": 10, "power": 23}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "type").write_text(f"{t}\n")
    (tmp_path / "broken").mkdir()                 # no type file: left out
    assert read_pmus(str(tmp_path)) == {"cpu_atom": 10, "cpu_core": 4, "power": 23}


def test_paranoid_and_cpu(caps: HostCaps) -> None:
    with open("/proc/sys/kernel/perf_event_paranoid") as f:
        assert caps.perf_event_paranoid == int(f.read())
    eax, ebx, ecx, edx = cpuid(0)
    vendor = b"".join(r.to_bytes(4, "little") for r in (ebx, edx, ecx)).decode()
    assert caps.cpu_vendor == vendor
    leaf1 = cpuid(1)[0]
    family = (leaf1 >> 8) & 0xF
    model = (leaf1 >> 4) & 0xF
    if family in (6, 15):
        model |= ((leaf1 >> 16) & 0xF) << 4
    if family == 15:
        family += (leaf1 >> 20) & 0xFF
    assert (caps.cpu_family, caps.cpu_model) == (family, model)
    assert "hypervisor" in caps.cpu_flags and "constant_tsc" in caps.cpu_flags
    assert "arch_perfmon" not in caps.cpu_flags     # no PMU exposed to this VM


def test_tsc_frequency(caps: HostCaps) -> None:
    hz, source = tsc_frequency()
    assert (hz, source) == (caps.tsc_hz, caps.tsc_source)
    assert tsc_frequency() == (hz, source)           # cached: the very same answer
    assert tsc_frequency_info().precision == caps.tsc_precision
    # The kernel's calibrated TSC (what it prints as "cpu MHz" when it cannot
    # read APERF/MPERF, as in this VM) agrees to its printed precision.
    with open("/proc/cpuinfo") as f:
        mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", f.read()).group(1))
    assert abs(hz / 1e6 - mhz) <= 0.002
    # No CPUID 0x15/0x16 or hypervisor timing leaf here: the frequency is measured.
    assert source.startswith("measured") and "ppm" in caps.tsc_precision


def test_measured_tsc_states_its_precision() -> None:
    m = measure_tsc_hz(0.01)
    ppm = float(re.search(r"\+-([\d.]+) ppm", m.precision).group(1))
    assert 0 < ppm < 100
    assert abs(m.hz - tsc_frequency()[0]) / m.hz <= 3 * ppm * 1e-6 + 1e-6


@pytest.mark.skipif(not HAVE_KVM, reason="no /dev/kvm on this host")
def test_kvm_caps(caps: HostCaps) -> None:
    k = caps.kvm
    assert k.dev_kvm and k.api_version == 12 and k.error is None
    assert k.user_space_msr and k.msr_filter and k.irqchip
    assert k.pmu_event_filter
    assert k.enable_pmu is False and k.pmu_capability == 0


def test_kvm_absent_is_reported_not_raised() -> None:
    from kvmpmu.host.caps import probe_kvm
    k = probe_kvm("/nonexistent/kvm")
    assert not k.dev_kvm and k.api_version is None
    assert k.error is not None and "ENOENT" in k.error


def test_unknown_pmu_event_is_reported() -> None:
    ev = probe_event("msr/tsc", {"software": 1})
    assert ev == EventSupport(False, False, "no 'msr' perf PMU on this host")


def test_json_round_trip(caps: HostCaps) -> None:
    d = json.loads(caps.to_json())
    assert d["events"]["msr/tsc"] == {"counting": True, "sampling": False,
                                     "error": caps.events["msr/tsc"].error}
    assert d["kvm"]["user_space_msr"] is caps.kvm.user_space_msr
    assert isinstance(d["cpu_flags"], list)
    back = HostCaps.from_dict(d)
    assert back == caps
    assert isinstance(back.kvm, KvmCaps) and isinstance(back.events["raw"], EventSupport)
    assert isinstance(back.cpu_flags, tuple)
    assert HostCaps.from_json(caps.to_json()) == caps


def test_frozen(caps: HostCaps) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.tsc_hz = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        caps.kvm.dev_kvm = False  # type: ignore[misc]
