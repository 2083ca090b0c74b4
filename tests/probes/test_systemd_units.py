"""The probes' systemd units and sysctl file: valid, opt-in only, and naming real commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness, command
from probe_support import ProbeConfig, need, probe

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
PROBE_UNITS = [
    "crashprobe-journal.service",
    "klogscanner.service",
    "journalprobe.service",
    "pstoreprobe.service",
    "hprobe.service",
    "hprobe.timer",
]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


@pytest.mark.parametrize("unit", PROBE_UNITS)
def test_each_unit_runs_only_when_opted_in(unit: str) -> None:
    assert "ConditionPathExists=/etc/telemetrics/opt-in\n" in (SYSTEMD / unit).read_text()


@pytest.mark.parametrize("unit", [name for name in PROBE_UNITS if name.endswith(".service")])
def test_each_service_starts_an_installed_probe(unit: str) -> None:
    [exec_start] = re.findall(r"^ExecStart=(.*)$", (SYSTEMD / unit).read_text(), re.M)
    program = shlex.split(exec_start)[0]
    assert program.startswith("/usr/bin/")
    assert program.removeprefix("/usr/bin/") in SCRIPTS


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = need("systemd-analyze", "systemd")
    paths = []
    for unit in PROBE_UNITS:
        text = re.sub(r"/usr/bin/(\w+)", lambda m: command(m[1]), (SYSTEMD / unit).read_text())
        (tmp_path / unit).write_text(text)
        paths.append(str(tmp_path / unit))
    result = subprocess.run([analyze, "verify", "--man=no", *paths], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


def test_the_sysctl_file_yields_to_systemd_coredump() -> None:
    [sysctl] = SYSTEMD.glob("*.conf")
    assert sysctl.name < "50-coredump.conf"  # sysctl.d: the later name wins


def test_the_core_pattern_is_one_crashprobe_accepts(
    harness: DaemonHarness, probe_config: ProbeConfig
) -> None:
    text = (SYSTEMD / "40-crashprobe.conf").read_text()
    [line] = re.findall(r"^kernel\.core_pattern = \|(.*)$", text, re.M)
    program, *args = line.split()
    assert program == "/usr/bin/crashprobe"
    values = {"%e": "demo", "%E": "!usr!bin!demo", "%s": "11", "%P": "42", "%u": "1000", "%t": "1"}
    expanded = [values.get(arg, arg) for arg in args]
    harness.opt_out()  # opted out, it accepts its arguments and leaves at once
    result = probe("crashprobe", "-f", str(probe_config()), *expanded, stdin=subprocess.DEVNULL)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize(
    "unit", ["crashprobe-journal.service", "journalprobe.service", "klogscanner.service"]
)
def test_a_probe_keeping_its_position_can_write_it_and_is_not_restarted_without(
    unit: str,
) -> None:
    """As root with no capability it could not write /var/lib/telemetry
    (0750 telemetry); exit 73 is a position it cannot save, 78 a bad configuration."""
    text = (SYSTEMD / unit).read_text()
    assert "\nUser=telemetry\n" in text and "\nReadWritePaths=-/var/lib/telemetry\n" in text
    assert "\nRestartPreventExitStatus=73 78\n" in text


def test_klogscanner_waits_for_a_kernel_log() -> None:
    assert "\nConditionPathExists=/dev/kmsg\n" in (SYSTEMD / "klogscanner.service").read_text()
