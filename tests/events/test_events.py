"""Event-name parsing for the CLI: perf names, raw codes, PMU terms, libpfm4 names."""
import pytest

from kvmpmu.events import EventSyntaxError, parse_event, parse_events
from kvmpmu.events import pfm


@pytest.mark.parametrize("name,vendor,code", [
    ("cycles", "intel", 0x003C), ("instructions", "intel", 0x00C0),
    ("ref-cycles", "intel", 0x013C), ("branches", "intel", 0x00C4),
    ("branch-misses", "intel", 0x00C5), ("cycles", "amd", 0x0076),
    ("branches", "amd", 0x00C2), ("instructions", "amd", 0x00C0),
])
def test_generic_names_use_the_architectural_encodings(name, vendor, code):
    """Spec §2.2 / §6.6 tables."""
    assert parse_event(name, vendor).code == code


def test_modifiers_select_usr_and_os():
    assert (parse_event("cycles:u").usr, parse_event("cycles:u").os) == (True, False)
    assert (parse_event("cycles:k").usr, parse_event("cycles:k").os) == (False, True)
    assert parse_event("cycles").eventsel == 0x3003C
    with pytest.raises(EventSyntaxError, match="modifier"):
        parse_event("cycles:x")


def test_raw_and_pmu_term_forms():
    assert parse_event("r01c2").code == 0x01C2
    e = parse_event("cpu/event=0x3c,umask=0x1,cmask=2,inv,edge/:u")
    assert e.code == 0x013C and e.extra == (2 << 24) | (1 << 23) | (1 << 18) and not e.os
    amd = parse_event("cpu/event=0x129,umask=1/", "amd")
    assert amd.code == (1 << 32) | 0x0129
    with pytest.raises(EventSyntaxError, match="unknown term"):
        parse_event("cpu/evnt=1/")
    with pytest.raises(EventSyntaxError, match="too wide"):
        parse_event("cpu/event=0x129/", "intel")


def test_ref_cycles_has_no_amd_encoding():
    with pytest.raises(EventSyntaxError, match="no architectural encoding"):
        parse_event("ref-cycles", "amd")


def test_libpfm4_names_for_icelake_server():
    """Model-specific names through the real libpfm4 (forced PMU icx)."""
    pmu = pfm.pmu_for_model("icelake-server", "intel")
    assert parse_event("INST_RETIRED.ANY_P", "intel", pmu).code == 0x00C0
    assert parse_event("BR_INST_RETIRED.ALL_BRANCHES:u", "intel", pmu).eventsel == 0x100C4
    ref = parse_event("CPU_CLK_UNHALTED.REF_TSC", "intel", pmu)
    assert ref.code == 0x0300 and ref.fixed_only and ref.fixed_index == 2


def test_libpfm4_names_for_zen4_and_switching_pmus():
    zen = pfm.pmu_for_model("zen4", "amd")
    assert parse_event("RETIRED_INSTRUCTIONS", "amd", zen).code == 0x00C0
    assert parse_event("INST_RETIRED.ANY_P", "intel", "icx").code == 0x00C0
    with pytest.raises(EventSyntaxError, match="not known to libpfm4"):
        parse_event("INST_RETIRED.ANY_P", "amd", zen)


def test_event_lists_keep_commas_inside_pmu_terms():
    evs = parse_events("cycles,cpu/event=0x3c,umask=1/,instructions:u")
    assert [e.code for e in evs] == [0x003C, 0x013C, 0x00C0]
    with pytest.raises(EventSyntaxError):
        parse_events(" ")
    with pytest.raises(EventSyntaxError, match="unknown event 'bogus'"):
        parse_events("bogus")
