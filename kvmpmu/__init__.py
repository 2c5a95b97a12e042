"""kvmpmu: a virtual x86 PMU for userspace KVM VMMs, backed by Linux perf events."""
__version__ = "0.1.0"
