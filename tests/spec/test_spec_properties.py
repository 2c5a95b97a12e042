"""Property-based conformance (hypothesis): random guest and host MSR accesses, simulated
events, emulated events, RDPMC, service()/tick() on every model and variant.

Invariants: nothing but GuestFault escapes; counters never exceed their width (§6.7);
GLOBAL_STATUS holds only legal bits (§4.4 / §5.1); save -> restore -> save is the identity.
"""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spec_helpers import (AMD_GLOBAL_STATUS, EN, FIXED_CTR0, GLOBAL_STATUS, IA32_A_PMC0,
                          IA32_PMC0, INT, K7_PERFCTR0, NAMED_MODELS, OS, USR, VARIANTS,
                          F15H_PERF_CTR0, GuestFault, SimulatedBackend, VirtualPMU, mask, models)

INTEL_MSRS = (list(range(0xC1, 0xC9)) + list(range(0x186, 0x18E)) + list(range(0x309, 0x30D))
              + list(range(0x38D, 0x393)) + list(range(0x4C1, 0x4C9))
              + [0x345, 0x3F1, 0x3F2, 0x600, 0x329, 0x1A0])
AMD_MSRS = (list(range(0xC001_0000, 0xC001_0008)) + list(range(0xC001_0200, 0xC001_020D))
            + list(range(0xC000_0300, 0xC000_0304)))
EVENTS = [0x00C0, 0x00C4, 0x00C2, 0x003C, 0x013C, 0x0300, 0x0076, 0x412E, 0x1_0000_00C0]

values = st.one_of(
    st.sampled_from([0, 1, 2, 0xF, 0x3F, 0xFF, 0x7_0000_000F, 0x8000_0000, 0xFFFF_FFFF,
                     mask(40), mask(48), mask(48) - 3, mask(64), 1 << 62, 1 << 63,
                     0xBBB, 0x2000, 0x4000]),
    st.builds(lambda ev, u, o, i, extra: ev | (USR if u else 0) | (OS if o else 0) | EN
              | (INT if i else 0) | extra,
              st.sampled_from(EVENTS), st.booleans(), st.booleans(), st.booleans(),
              st.sampled_from([0, 1 << 21, 1 << 32, 1 << 33, 1 << 41, 1 << 19, 3 << 24])),
    st.integers(min_value=0, max_value=mask(64)),
)


def ops_for(vendor):
    msrs = st.sampled_from(INTEL_MSRS if vendor == "intel" else AMD_MSRS + INTEL_MSRS[:4])
    return st.lists(st.one_of(
        st.tuples(st.just("rd"), msrs, st.booleans()),
        st.tuples(st.just("wr"), msrs, values, st.booleans()),
        st.tuples(st.just("happen"), st.sampled_from(EVENTS),
                  st.one_of(st.integers(1, 20), st.sampled_from([1 << 20, mask(48)])),
                  st.sampled_from([0, 3])),
        st.tuples(st.just("service")),
        st.tuples(st.just("tick")),
        st.tuples(st.just("instr"), st.sampled_from([0, 3])),
        st.tuples(st.just("branch"), st.sampled_from([0, 3])),
        st.tuples(st.just("rdpmc"), st.sampled_from([0, 1, 5, 7, 0x4000_0000, 0x4000_0002,
                                                     0x8000_0000, 0x10000]),
                  st.sampled_from([0, 3]), st.booleans()),
    ), max_size=25)


def build(name):
    return VARIANTS[name]() if name in VARIANTS else models.get(name)


def counter_msrs(model):
    """(msr, width) of every counter the model can have (§3.2, §6.7)."""
    if model.vendor == "intel":
        gp = [(IA32_PMC0 + i, model.gp_width) for i in range(8)]
        gp += [(IA32_A_PMC0 + i, model.gp_width) for i in range(8)]
        fx = [(FIXED_CTR0 + j, model.fixed_width) for j in range(3)]
        return gp + fx
    return ([(K7_PERFCTR0 + i, 48) for i in range(4)]
            + [(F15H_PERF_CTR0 + 2 * i, 48) for i in range(6)])


def legal_status(model):
    """Bits GLOBAL_STATUS may hold (§4.4: counters, 62, 63; §5.1: GP(nr_gp))."""
    if model.vendor == "intel":
        nr_gp = min(model.gp_counters, 8)
        nr_fixed = min(model.fixed_counters, 3) if model.version >= 2 else 0
        return mask(nr_gp) | (mask(nr_fixed) << 32) | (1 << 62) | (1 << 63)
    return mask(min(model.gp_counters, 6))


def check_invariants(pmu, model):
    for msr, width in counter_msrs(model):
        try:
            v = pmu.rdmsr(msr, host=True)
        except GuestFault:
            continue
        assert 0 <= v <= mask(width), (hex(msr), hex(v))
    status_msr = GLOBAL_STATUS if model.vendor == "intel" else AMD_GLOBAL_STATUS
    try:
        st_ = pmu.rdmsr(status_msr, host=True)
    except GuestFault:
        return
    assert st_ & ~legal_status(model) == 0, hex(st_)


def apply(pmu, sim, op):
    kind = op[0]
    try:
        if kind == "rd":
            v = pmu.rdmsr(op[1], host=op[2])
            assert 0 <= v <= mask(64)
        elif kind == "wr":
            pmu.wrmsr(op[1], op[2], host=op[3])
        elif kind == "happen":
            sim.happen(op[1], op[2], cpl=op[3])
        elif kind == "service":
            assert pmu.service() in (True, False)
        elif kind == "tick":
            pmu.tick()
        elif kind == "instr":
            pmu.instruction_retired(cpl=op[1])
        elif kind == "branch":
            pmu.branch_retired(cpl=op[1])
        elif kind == "rdpmc":
            v = pmu.rdpmc(op[1], cpl=op[2], cr4_pce=op[3])
            assert 0 <= v <= mask(64)
    except GuestFault:
        pass


ALL = NAMED_MODELS + list(VARIANTS)
PROP = settings(max_examples=20, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def run_property(name, data):
    model = build(name)
    ops = data.draw(ops_for(model.vendor))
    sim = SimulatedBackend(host=None)
    pmu = VirtualPMU(model=model, backend=sim)
    try:
        pmu.service()
        for op in ops:
            apply(pmu, sim, op)
            check_invariants(pmu, model)
        pmu.service()
        check_invariants(pmu, model)
        s1 = pmu.save()
        assert json.loads(json.dumps(s1)) == s1
        sim2 = SimulatedBackend(host=None)
        pmu2 = VirtualPMU(model=model, backend=sim2)
        try:
            pmu2.restore(json.loads(json.dumps(s1)))
            assert pmu2.save() == s1
            check_invariants(pmu2, model)
        finally:
            pmu2.close()
    finally:
        pmu.close()


@pytest.mark.parametrize("name", ALL)
@PROP
@given(data=st.data())
def test_property_random_accesses_keep_invariants_simulated(name, data):
    """§4/§5/§6.7/§8 + save/restore: random access sequences keep every invariant."""
    run_property(name, data)


@pytest.mark.parametrize("name", ALL)
@PROP
@given(writes=st.lists(st.tuples(st.sampled_from(INTEL_MSRS + AMD_MSRS), values), max_size=30))
def test_property_host_writes_then_save_identity(name, writes):
    """Contract: whatever host writes were accepted, save -> restore -> save is the identity."""
    model = build(name)
    pmu = VirtualPMU(model=model, backend=SimulatedBackend(host=None))
    pmu2 = VirtualPMU(model=model, backend=SimulatedBackend(host=None))
    try:
        for msr, v in writes:
            try:
                pmu.wrmsr(msr, v, host=True)
            except GuestFault:
                pass
        check_invariants(pmu, model)
        s1 = pmu.save()
        pmu2.restore(s1)
        assert pmu2.save() == s1
        for msr in pmu.msr_indices():
            try:
                a = pmu.rdmsr(msr, host=True)
            except GuestFault:
                a = None
            try:
                b = pmu2.rdmsr(msr, host=True)
            except GuestFault:
                b = None
            assert a == b, hex(msr)
    finally:
        pmu.close()
        pmu2.close()
