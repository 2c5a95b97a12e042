"""Model-specific event names through libpfm4 (Debian package ``libpfm4``).

libpfm4 is loaded with cffi's ABI mode (``dlopen``) so that it stays an
optional run-time dependency; only its stable functions are declared, no
struct layouts.  libpfm4 reads ``LIBPFM_FORCE_PMU`` at initialisation, so the
library is re-initialised whenever a different PMU is asked for.
"""
from __future__ import annotations

import os
import threading

from cffi import FFI

_ffi = FFI()
_ffi.cdef("""
int pfm_initialize(void);
void pfm_terminate(void);
const char *pfm_strerror(int code);
int pfm_get_event_encoding(const char *str, int dfl_plm, char **fstr, int *idx,
                           uint64_t **codes, int *count);
void free(void *);
""")

PFM_PLM0 = 0x1
PFM_PLM3 = 0x8

# Guest model name → libpfm4 PMU name.
MODEL_PMU = {
    "icelake-server": "icx",
    "icelake-client": "icl",
    "skylake-server": "skx",
    "sapphire-rapids": "spr",
    "zen3": "amd64_fam19h_zen3",
    "zen4": "amd64_fam19h_zen4",
}


class PfmError(LookupError):
    """libpfm4 is missing or does not know the event."""


_lock = threading.Lock()
_state: dict[str, object] = {"lib": None, "pmu": None}


def pmu_for_model(model_name: str, vendor: str, family: int = 0, model: int = 0) -> str | None:
    """The libpfm4 PMU for a guest model (None if libpfm4 has no table for it)."""
    if model_name in MODEL_PMU:
        return MODEL_PMU[model_name]
    if vendor == "intel":
        return {0x6A: "icx", 0x6C: "icx", 0x7E: "icl", 0x7D: "icl", 0x55: "skx",
                0x8F: "spr", 0x4E: "skl", 0x5E: "skl"}.get(model) if family == 6 else None
    if vendor == "amd" and family == 0x19:
        return "amd64_fam19h_zen4" if model >= 0x10 else "amd64_fam19h_zen3"
    return None


def _load(pmu: str):
    lib = _state["lib"]
    if lib is None:
        try:
            lib = _ffi.dlopen("libpfm.so.4")
        except OSError as e:
            raise PfmError("libpfm4 is not installed (apt-get install libpfm4); "
                           "model-specific event names need it") from e
        _state["lib"] = lib
    if _state["pmu"] != pmu:
        if _state["pmu"] is not None:
            lib.pfm_terminate()
        os.environ["LIBPFM_FORCE_PMU"] = pmu
        r = lib.pfm_initialize()
        if r != 0:
            _state["pmu"] = None
            raise PfmError(f"libpfm4 cannot be initialised for PMU {pmu!r}: "
                           f"{_ffi.string(lib.pfm_strerror(r)).decode()}")
        _state["pmu"] = pmu
    return lib


def encode(name: str, pmu: str) -> int:
    """PERFEVTSEL bits (event, umask, edge, inv, cmask) of ``name`` on ``pmu``.

    USR/OS/INT/EN are left to the caller.  Raises PfmError with libpfm4's reason.
    """
    # Qualify the name: once re-initialised, libpfm4 keeps earlier forced PMUs active.
    prefix, sep, bare = name.rpartition("::")
    if sep and prefix != pmu:
        raise PfmError(f"event {name!r} belongs to libpfm4 PMU {prefix!r}, not this model's {pmu!r}")
    name = f"{pmu}::{bare}"
    with _lock:
        lib = _load(pmu)
        fstr = _ffi.new("char **")
        idx = _ffi.new("int *")
        codes = _ffi.new("uint64_t **")
        count = _ffi.new("int *")
        r = lib.pfm_get_event_encoding(name.encode(), PFM_PLM0 | PFM_PLM3, fstr, idx, codes, count)
        if r != 0:
            raise PfmError(f"event {bare!r} is not known to libpfm4's {pmu} table: "
                           f"{_ffi.string(lib.pfm_strerror(r)).decode()}")
        try:
            value = int(codes[0][0]) if count[0] > 0 else 0
        finally:
            lib.free(codes[0])
            lib.free(fstr[0])
    # Drop the privilege-level, INT and EN bits libpfm4 adds; keep the event itself.
    return value & ~((1 << 16) | (1 << 17) | (1 << 20) | (1 << 22))


__all__ = ["encode", "pmu_for_model", "PfmError", "MODEL_PMU"]
