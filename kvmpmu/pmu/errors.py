"""The fault the device model reports instead of an access (spec §0.2)."""
from __future__ import annotations


class GuestFault(Exception):
    """The access faults: a guest gets #GP(0); a host access (KVM_SET/GET_MSRS) fails.

    ``index`` is the MSR index (or the RDPMC ECX), ``reason`` a short text.
    Deliberately not an :class:`OSError`: it is an architectural outcome, not
    a host failure.
    """

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"{index:#x}: {reason}")
        self.index = index
        self.reason = reason
