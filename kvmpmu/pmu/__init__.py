"""The virtual PMU device model (spec/vpmu-semantics.md, baseline M, 6.12 rules)."""
from kvmpmu.pmu.errors import GuestFault
from kvmpmu.pmu.model import GuestCpuid, PmuModel
from kvmpmu.pmu.vpmu import VirtualPMU

__all__ = ["VirtualPMU", "PmuModel", "GuestCpuid", "GuestFault"]
