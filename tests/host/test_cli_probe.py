"""``kvmpmu probe``: the table and --json, run as the installed console script."""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

from kvmpmu import cli

BIN = os.path.join(os.path.dirname(sys.executable), "kvmpmu")


def run(*args: str, script: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [BIN, *args] if script else [sys.executable, "-m", "kvmpmu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def field(table: str, name: str) -> str:
    for line in table.splitlines():
        label, _, value = line.partition("  ")      # labels are padded with 2+ spaces
        if label == name:
            return value.strip()
    raise AssertionError(f"no row {name!r} in:\n{table}")


def test_console_script_is_installed() -> None:
    assert os.access(BIN, os.X_OK), BIN


def test_probe_table() -> None:
    r = run("probe")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    for section in ("[cpu]", "[tsc]", "[perf]", "[events (calling thread)]", "[kvm]"):
        assert section in out.splitlines()
    assert field(out, "hardware pmu") == "no"
    assert field(out, "cycles from tsc") == "yes"
    assert field(out, "hardware").split()[:2] == ["no", "no"]
    assert "ENOENT" in field(out, "hardware")
    assert field(out, "msr/tsc").split()[:2] == ["yes", "no"]
    assert field(out, "task-clock").split() == ["yes", "yes"]
    assert field(out, "/dev/kvm usable") == "yes"
    assert field(out, "user-space msr exits") == "yes"
    assert field(out, "msr filter") == "yes"
    assert field(out, "kvm.enable_pmu") == "no"
    assert field(out, "vendor") == "GenuineIntel"
    assert field(out, "frequency").endswith("MHz)")


def test_probe_json() -> None:
    r = run("probe", "--json", script=False)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["events"]["hardware"]["counting"] is False
    assert d["events"]["msr/tsc"]["counting"] is True
    assert d["events"]["msr/tsc"]["sampling"] is False
    assert d["events"]["task-clock"]["sampling"] is True
    assert d["kvm"]["dev_kvm"] is True and d["kvm"]["api_version"] == 12
    assert d["kvm"]["user_space_msr"] is True and d["kvm"]["msr_filter"] is True
    assert d["pmus"]["msr"] > 0 and d["tsc_hz"] > 10**8
    from kvmpmu.host import HostCaps
    assert HostCaps.from_dict(d).has_hardware_pmu is False


@pytest.mark.parametrize("args", [["probe", "--bogus"], ["bogus"], [], ["probe", "extra"]])
def test_bad_arguments_one_line_exit_2(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], r.stderr


def test_help_lists_probe() -> None:
    r = run("--help")
    assert r.returncode == 0 and "probe" in r.stdout


def test_errors_are_one_line_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    def boom(args: argparse.Namespace) -> int:
        raise OSError(13, "Permission denied", "/dev/kvm")

    cli.command("_boom", help="test only")(boom)
    try:
        assert cli.main(["_boom"]) == 1
    finally:
        del cli.COMMANDS["_boom"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "kvmpmu _boom: error:" in err and "/dev/kvm" in err


def test_registry_refuses_duplicates() -> None:
    with pytest.raises(ValueError):
        cli.command("probe", help="again")(lambda a: 0)
