"""Access to the compiled cffi shim (``kvmpmu._shim``)."""
from __future__ import annotations

try:
    from kvmpmu._shim import ffi, lib  # type: ignore[attr-defined]
except ImportError as e:  # pragma: no cover - only when the package was not built
    raise ImportError(
        "kvmpmu's native shim is not built; install the package with "
        "'pip install .' (needs gcc and the kernel headers, linux-libc-dev)") from e

__all__ = ["ffi", "lib"]
