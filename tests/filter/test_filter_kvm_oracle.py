"""EventFilter validation against the real KVM_SET_PMU_EVENT_FILTER (spec §10.2).

The filter ioctl works on any VM, even with ``kvm.enable_pmu=N`` (§10.2: the VM's
vPMU state is not validated), so this host's KVM is an independent oracle for the
error codes and their order.  The host is Intel, so KVM applies the Intel rules
(bits 35:32 are illegal in masked entries).
"""
from __future__ import annotations

import errno
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kvmpmu import EventFilter, FilterError
from kvmpmu.host._lib import ffi, lib
from kvmpmu.host.caps import HostCaps
from kvmpmu.pmu.filter import masked_entry

if not os.path.exists("/dev/kvm"):
    pytest.skip("no /dev/kvm: the KVM filter oracle needs a real KVM", allow_module_level=True)


@pytest.fixture(scope="module")
def vm_fd():
    if HostCaps.probe().cpu_vendor != "GenuineIntel":
        pytest.skip("these oracle tests assume an Intel host (Intel filter rules)")
    kvm = lib.kvmpmu_open_rdwr(b"/dev/kvm")
    assert kvm >= 0, os.strerror(-kvm)
    vm = lib.kvmpmu_ioctl_noarg(kvm, lib.KVM_CREATE_VM, 0)
    assert vm >= 0, os.strerror(-vm)
    yield vm
    lib.kvmpmu_close(vm)
    lib.kvmpmu_close(kvm)


def kvm_errno(vm_fd: int, action: int, events: list[int], bitmap: int, flags: int) -> int:
    """What the real ioctl returns: 0 or a positive errno."""
    import struct
    raw = struct.pack("<IIII16x", action, len(events), bitmap, flags) \
        + struct.pack(f"<{len(events)}Q", *events)
    buf = ffi.new("char[]", raw)
    r = lib.kvmpmu_ioctl_ptr(vm_fd, lib.KVM_SET_PMU_EVENT_FILTER, buf)
    return 0 if r >= 0 else -r


def our_errno(action: int, events: list[int], bitmap: int, flags: int) -> int:
    try:
        EventFilter(action=action, events=events, fixed_counter_bitmap=bitmap,
                    flags=flags).compile("intel")
    except FilterError as e:
        return e.errno
    return 0


entry = st.one_of(
    st.integers(0, 0xFFFF),                                   # legacy, plausible
    st.integers(0, (1 << 64) - 1),                            # anything
    st.builds(masked_entry, st.integers(0, 0xFFF), st.integers(0, 0xFF),
              st.integers(0, 0xFF), st.booleans()),           # masked, maybe AMD bits
    st.builds(lambda e, b: e | (1 << b), st.integers(0, 0xFF), st.integers(16, 63)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(action=st.sampled_from([0, 1, 2, 7, 0xFFFF_FFFF]),
       flags=st.sampled_from([0, 1, 2, 3, 0x8000_0000]),
       bitmap=st.integers(0, 0xFFFF_FFFF),
       events=st.one_of(st.lists(entry, max_size=8),
                        st.lists(entry, min_size=299, max_size=302)))
def test_errno_matches_real_kvm(vm_fd, action, flags, bitmap, events):
    """§10.2: every filter gets exactly the errno the real ioctl gives (0 = accepted)."""
    assert our_errno(action, events, bitmap, flags) == kvm_errno(vm_fd, action, events, bitmap, flags)


@pytest.mark.parametrize("events,flags,expect", [
    ([0xC0] * 300, 0, 0),
    ([0xC0] * 301, 0, errno.E2BIG),
    ([masked_entry(0xC0, 0xFF, 0x00) | (1 << 16)], 1, errno.EINVAL),
    ([masked_entry(0x1C0, 0xFF, 0x00)], 1, errno.EINVAL),     # bits 35:32 illegal on Intel
    ([0x1_0000_00C0], 0, 0),                                  # legacy impossible entry: dropped
    ([], 0, 0),
])
def test_named_cases_match_real_kvm(vm_fd, events, flags, expect):
    """§10.2 steps 4, 7, 8 on the real ioctl and on EventFilter."""
    assert kvm_errno(vm_fd, 1, events, 0, flags) == expect
    assert our_errno(1, events, 0, flags) == expect


def test_to_kvm_bytes_is_accepted_by_kvm(vm_fd):
    """The bytes EventFilter hands a VMM are a valid ioctl argument."""
    f = EventFilter("allow", [0x3C, masked_entry(0xC0, 0xF0, 0x10)], fixed_counter_bitmap=0b101, flags=1)
    buf = ffi.new("char[]", f.to_kvm_bytes())
    assert lib.kvmpmu_ioctl_ptr(vm_fd, lib.KVM_SET_PMU_EVENT_FILTER, buf) == 0


def test_user_errors_are_clear():
    """Bad Python-level input is a FilterError (EINVAL) that names what was wrong."""
    with pytest.raises(FilterError, match="action must be 'allow' or 'deny'"):
        EventFilter("permit", [])
    with pytest.raises(FilterError, match="64-bit unsigned"):
        EventFilter("deny", [-1])
    with pytest.raises(FilterError, match="fixed_counter_bitmap"):
        EventFilter("deny", [], fixed_counter_bitmap=1 << 32)
    assert EventFilter("DENY", [1]).action == "deny"
    assert EventFilter(**EventFilter("allow", [1, 2], 3, 0).to_dict()) == EventFilter("allow", [1, 2], 3, 0)
