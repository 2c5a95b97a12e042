"""The ``kvmpmu`` command line.

Subcommands register themselves with :func:`command`; each is one function
taking the parsed arguments and returning an exit status, plus an optional
function that adds its arguments::

    def _stat_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("program")

    @command("stat", help="count events of a guest program", add_arguments=_stat_args)
    def cmd_stat(args: argparse.Namespace) -> int:
        ...

Exit status: 0 success, 1 an error (one line on stderr, no traceback; set
``KVMPMU_DEBUG=1`` for the traceback), 2 bad arguments.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NoReturn, Sequence

import kvmpmu

if TYPE_CHECKING:
    from kvmpmu.host.caps import HostCaps

Handler = Callable[[argparse.Namespace], int]
ArgAdder = Callable[[argparse.ArgumentParser], None]


@dataclass(frozen=True)
class Command:
    """One subcommand: its name, one-line help, argument adder and handler."""

    name: str
    help: str
    handler: Handler
    add_arguments: ArgAdder | None = None


COMMANDS: dict[str, Command] = {}


def command(name: str, *, help: str, add_arguments: ArgAdder | None = None) -> Callable[[Handler], Handler]:
    """Decorator registering ``handler`` as subcommand ``name``."""
    def deco(handler: Handler) -> Handler:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} registered twice")
        COMMANDS[name] = Command(name, help, handler, add_arguments)
        return handler
    return deco


class CliError(Exception):
    """An error to report to the user as one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (exit 2) instead of usage + message."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    p = _Parser(prog="kvmpmu", description="A virtual x86 PMU for userspace KVM VMMs.")
    p.add_argument("--version", action="version", version=f"kvmpmu {kvmpmu.__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for c in COMMANDS.values():
        sp = sub.add_parser(c.name, help=c.help, description=c.help)
        if c.add_arguments is not None:
            c.add_arguments(sp)
        sp.set_defaults(_handler=c.handler)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kvmpmu`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler | None = getattr(args, "_handler", None)
    if handler is None:
        parser.error(f"a command is required: {', '.join(COMMANDS)}")
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output closed early (e.g. piped into head): not an error worth a message.
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:  # every error: one line, no traceback
        if os.environ.get("KVMPMU_DEBUG"):
            traceback.print_exc()
        msg = str(e) or type(e).__name__
        if not isinstance(e, (CliError, OSError)):
            msg = f"{type(e).__name__}: {msg}"
        print(f"{parser.prog} {args.command}: error: {msg.splitlines()[0]}", file=sys.stderr)
        return 1


# -- probe ------------------------------------------------------------------------

def _yn(v: bool | None) -> str:
    return "unknown" if v is None else ("yes" if v else "no")


def format_caps(caps: "HostCaps") -> str:
    """HostCaps as a readable two-column table."""
    rows: list[tuple[str, str]] = []

    def section(title: str) -> None:
        rows.append(("", ""))
        rows.append((f"[{title}]", ""))

    section("cpu")
    rows.append(("vendor", caps.cpu_vendor or "unknown"))
    rows.append(("family / model", f"{caps.cpu_family} / {caps.cpu_model} ({caps.cpu_family:#x} / {caps.cpu_model:#x})"))
    if caps.cpu_model_name:
        rows.append(("model name", caps.cpu_model_name))
    if caps.hypervisor_vendor:
        rows.append(("hypervisor", caps.hypervisor_vendor))
    rows.append(("pmu flags", " ".join(caps.cpu_flags) or "-"))
    rows.append(("kernel", caps.kernel_release or "unknown"))

    section("tsc")
    rows.append(("frequency", f"{caps.tsc_hz} Hz ({caps.tsc_hz / 1e6:.3f} MHz)"))
    rows.append(("source", caps.tsc_source))
    rows.append(("precision", caps.tsc_precision))

    section("perf")
    rows.append(("perf_event_paranoid", "unreadable" if caps.perf_event_paranoid is None
                 else str(caps.perf_event_paranoid)))
    rows.append(("core pmu", caps.cpu_pmu or "none (no hardware PMU exposed)"))
    rows.append(("hybrid", _yn(caps.hybrid)))
    rows.append(("pmus", ", ".join(f"{n}={t}" for n, t in sorted(caps.pmus.items(), key=lambda x: x[1]))))
    rows.append(("hardware pmu", _yn(caps.has_hardware_pmu)))
    rows.append(("cycles from tsc", _yn(caps.can_back_cycles_with_tsc)))

    section("events (calling thread)")
    rows.append(("event", "count  sample  note"))
    for name, ev in caps.events.items():
        rows.append((name, f"{_yn(ev.counting):<5}  {_yn(ev.sampling):<6}  {ev.error or ''}".rstrip()))

    section("kvm")
    k = caps.kvm
    rows.append(("/dev/kvm usable", _yn(k.dev_kvm) + (f" ({k.error})" if k.error else "")))
    rows.append(("api version", "-" if k.api_version is None else str(k.api_version)))
    rows.append(("user-space msr exits", _yn(k.user_space_msr)))
    rows.append(("msr filter", _yn(k.msr_filter)))
    rows.append(("pmu capability", f"{k.pmu_capability:#x}"))
    rows.append(("pmu event filter", _yn(k.pmu_event_filter)))
    rows.append(("masked events", _yn(k.masked_events)))
    rows.append(("kvm.enable_pmu", _yn(k.enable_pmu)))
    rows.append(("in-kernel irqchip", _yn(k.irqchip)))

    width = max(len(a) for a, _ in rows)
    lines = [f"{a:<{width}}  {b}".rstrip() if a and not a.startswith("[") else a for a, b in rows]
    return "\n".join(lines).strip("\n") + "\n"


def _probe_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the capabilities as JSON")


@command("probe", help="show what this host offers a virtual PMU (perf, TSC, KVM)",
         add_arguments=_probe_args)
def cmd_probe(args: argparse.Namespace) -> int:
    """``kvmpmu probe [--json]``."""
    from kvmpmu.host.caps import HostCaps
    caps = HostCaps.probe()
    if args.json:
        sys.stdout.write(json.dumps(caps.to_dict(), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(format_caps(caps))
    return 0


__all__ = ["main", "command", "COMMANDS", "Command", "CliError", "build_parser", "format_caps"]
