"""cffi build script for kvmpmu's native shim (``kvmpmu._shim``).

Every ``*.cdef`` file in this folder is a header-like set of declarations
handed to ``ffi.cdef``; every ``*.c`` file is compiled into the module.  Struct
layouts, ioctl numbers and constants are left to the compiler (``...;`` and
``#define NAME ...``), so they always come from the kernel headers installed on
the build machine (``<linux/perf_event.h>``, ``<linux/kvm.h>``), never from
hand-copied numbers.
"""
from __future__ import annotations

import pathlib

from cffi import FFI

HERE = pathlib.Path(__file__).resolve().parent

ffibuilder = FFI()
for cdef in sorted(HERE.glob("*.cdef")):
    ffibuilder.cdef(cdef.read_text(), override=False)

ffibuilder.set_source(
    "kvmpmu._shim",
    "\n".join(f'#include "{c.name}"' for c in sorted(HERE.glob("*.c"))),
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
