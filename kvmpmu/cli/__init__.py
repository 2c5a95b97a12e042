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
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Callable, NoReturn, Sequence

import kvmpmu

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


# Subcommands register themselves on import (one module per command).
from kvmpmu.cli import probe as _probe  # noqa: E402,F401

format_caps = _probe.format_caps

__all__ = ["main", "command", "COMMANDS", "Command", "CliError", "build_parser", "format_caps"]
