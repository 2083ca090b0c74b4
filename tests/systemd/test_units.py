"""telemd's own units: valid to systemd, hardened, and in agreement with the daemon.

The exposure test and the sandbox checks cover every shipped service; the
probes' other unit checks are in tests/probes/test_systemd_units.py.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import command
from unit_files import SERVICES, SOCKETS, SYSTEMD, Unit, need, sysusers_lines, tmpfiles_lines

from telemd.collector import cli as collector_cli
from telemd.collector.config import load as load_collector_config
from telemd.config import KEYS
from telemd.daemon.main import EX_CONFIG

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

DEFAULTS = {key.name: key.default for key in KEYS}
SCRIPTS = tomllib.loads((SYSTEMD.parent / "pyproject.toml").read_text())["project"]["scripts"]
# telemd finds its sockets by these names in $LISTEN_FDNAMES.
FD_NAMES = {"telemd.socket": "probe", "telemd-control.socket": "control"}

MAX_EXPOSURE = 2.0
# The daemon's, the collector's and the probes': every service shipped.
EVERY_SERVICE = sorted(path.name for path in SYSTEMD.glob("*.service"))
EXPOSURE = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?)")
# What the daemon reads to stamp records with host metadata (telemd/hostinfo.py).
HOST_METADATA = (
    "/sys/class/dmi/id",
    "/proc/cpuinfo",
    "/proc/sys/kernel/random/boot_id",
    "/etc/os-release",
    "/usr/lib/os-release",
)


def test_systemd_analyze_verifies_the_units(tmp_path: Path) -> None:
    analyze = need("systemd-analyze")
    # verify rejects an ExecStart= whose program does not exist ("Command
    # /usr/bin/telemd is not executable"), and here the commands are installed
    # only in the test environment: the copies point at its scripts instead.
    paths = []
    for name in (*SOCKETS, *SERVICES):
        text = (SYSTEMD / name).read_text()
        (tmp_path / name).write_text(re.sub(r"/usr/bin/([\w-]+)", lambda m: command(m[1]), text))
        paths.append(str(tmp_path / name))
    result = subprocess.run([analyze, "verify", "--man=no", *paths], capture_output=True, text=True)
    assert (result.returncode, result.stderr) == (0, "")


@pytest.mark.parametrize("service", EVERY_SERVICE)
def test_the_exposure_level_is_at_most_2(service: str) -> None:
    analyze = need("systemd-analyze")
    result = subprocess.run(
        [analyze, "security", "--offline=true", "--no-pager", str(SYSTEMD / service)],
        capture_output=True,
        text=True,
    )
    [(name, level)] = EXPOSURE.findall(result.stdout)
    assert name == service
    assert float(level) <= MAX_EXPOSURE, result.stdout


def test_the_sandbox_leaves_the_host_metadata_readable() -> None:
    service = Unit("telemd.service")
    # ProcSubset=pid hides /proc/cpuinfo and /proc/sys; ProtectKernelTunables= and
    # ProtectSystem= only make them read-only.
    assert service.all("Service", "ProcSubset") in ([], ["all"])
    hidden = [
        word.lstrip("-+").split(":")[0]
        for key in ("InaccessiblePaths", "TemporaryFileSystem")
        for word in service.words("Service", key)
    ]
    for path in HOST_METADATA:
        assert not [h for h in hidden if path == h or path.startswith(h.rstrip("/") + "/")], path


@pytest.mark.parametrize("socket", SOCKETS)
def test_each_socket_unit_holds_one_socket_under_the_name_telemd_looks_for(socket: str) -> None:
    unit = Unit(socket)
    # FileDescriptorName= names every socket of a unit: one socket per unit.
    assert len(unit.all("Socket", "ListenStream")) == 1
    assert unit.one("Socket", "FileDescriptorName") == FD_NAMES[socket]
    assert unit.one("Socket", "Accept") == "no"
    assert unit.one("Socket", "Service") == "telemd.service"


def test_the_probe_socket_is_where_probes_look_with_the_daemons_mode() -> None:
    unit = Unit("telemd.socket")
    assert unit.one("Socket", "ListenStream") == DEFAULTS["socket_path"]
    assert int(unit.one("Socket", "SocketMode"), 8) == DEFAULTS["socket_mode"]


def test_the_control_socket_is_for_root_and_the_telemetry_group() -> None:
    unit = Unit("telemd-control.socket")
    assert unit.one("Socket", "ListenStream") == DEFAULTS["control_socket_path"]
    assert unit.all("Socket", "SocketUser") in ([], ["root"])
    assert unit.one("Socket", "SocketGroup") == "telemetry"
    assert int(unit.one("Socket", "SocketMode"), 8) == 0o666  # the daemon checks peers


def test_telemd_starts_with_both_sockets() -> None:
    service = Unit("telemd.service")
    assert set(SOCKETS) <= set(service.words("Unit", "Requires"))
    assert set(SOCKETS) <= set(service.words("Unit", "After"))


@pytest.mark.parametrize("unit", ["telemd.service", *SOCKETS])
def test_telemd_and_its_sockets_run_only_when_opted_in(unit: str) -> None:
    assert Unit(unit).all("Unit", "ConditionPathExists") == [DEFAULTS["opt_in_file"]]


def test_telemd_may_write_its_default_state_and_spool_directories() -> None:
    service = Unit("telemd.service")
    assert "/var/lib/" + service.one("Service", "StateDirectory") == DEFAULTS["state_dir"]
    writable = [path.lstrip("-") for path in service.words("Service", "ReadWritePaths")]
    assert DEFAULTS["spool_dir"] in writable


@pytest.mark.parametrize(
    ("service", "no_restart"),
    [
        ("telemd.service", {EX_CONFIG}),
        ("telemd-collector.service", {collector_cli.EXIT_USAGE, collector_cli.EXIT_CONFIG}),
    ],
)
def test_a_bad_configuration_is_not_restarted(service: str, no_restart: set[int]) -> None:
    unit = Unit(service)
    assert unit.one("Service", "Restart") == "on-failure"
    assert {int(s) for s in unit.words("Service", "RestartPreventExitStatus")} == no_restart


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_starts_an_installed_command(service: str) -> None:
    program = shlex.split(Unit(service).one("Service", "ExecStart"))[0]
    assert program.startswith("/usr/bin/")
    assert program.removeprefix("/usr/bin/") in SCRIPTS


def test_every_user_and_group_the_units_name_is_declared_by_sysusers() -> None:
    declared = {fields[1] for fields in sysusers_lines() if fields[0] in ("u", "g")}
    named = {Unit(s).one("Service", key) for s in SERVICES for key in ("User", "Group")}
    named |= {Unit(s).one("Socket", "SocketGroup") for s in SOCKETS if s != "telemd.socket"}
    assert named <= declared


def test_the_collector_keeps_its_database_in_its_state_directory(tmp_path: Path) -> None:
    unit = Unit("telemd-collector.service")
    environ = dict(
        word.split("=", 1)
        for value in unit.all("Service", "Environment")
        for word in shlex.split(value)
    )
    no_file = tmp_path / "collector.toml"
    no_file.write_text("")
    # The collector reads the variable the unit sets, and the path it names is
    # inside the directory systemd creates for it.
    config = load_collector_config({}, environ={**environ, "TELEMD_COLLECTOR_CONFIG": str(no_file)})
    state = "/var/lib/" + unit.one("Service", "StateDirectory")
    assert config.db.startswith(f"sqlite:///{state}/")


def test_every_service_that_writes_the_state_directory_runs_as_its_owner() -> None:
    # Root without CAP_DAC_OVERRIDE cannot write the telemetry user's 0750
    # directory: a probe's cursor or position would never be saved.
    [owner] = [line[3] for line in tmpfiles_lines() if line[1] == "/var/lib/telemetry"]
    writers = [
        service
        for service in EVERY_SERVICE
        if "/var/lib/telemetry"
        in [p.lstrip("-") for p in Unit(service).words("Service", "ReadWritePaths")]
    ]
    assert writers
    for service in writers:
        assert Unit(service).one("Service", "User") == owner, service


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("klogscanner.service", "/dev/kmsg"),
        ("crashprobe-journal.service", "/proc/sys/kernel/random/boot_id"),
        ("journalprobe.service", "/proc/sys/kernel/random/boot_id"),
        ("klogscanner.service", "/proc/sys/kernel/random/boot_id"),
    ],
)
def test_the_sandbox_leaves_each_probe_what_it_reads(service: str, path: str) -> None:
    unit = Unit(service)
    if path == "/dev/kmsg":
        assert unit.all("Service", "PrivateDevices") in ([], ["no"])
        assert unit.all("Service", "ProtectKernelLogs") in ([], ["no"])
        assert "/dev/kmsg" in unit.words("Service", "DeviceAllow")
    else:  # journalctl and the probes read the boot id
        assert unit.all("Service", "ProcSubset") in ([], ["all"])


def test_the_pstore_probe_may_remove_the_dumps_it_reported() -> None:
    unit = Unit("pstoreprobe.service")
    assert "/sys/fs/pstore" in [p.lstrip("-") for p in unit.words("Service", "ReadWritePaths")]
    assert unit.all("Service", "User") == [] and unit.all("Service", "DynamicUser") == []


def test_the_pstore_probe_remembers_what_it_sent_in_a_directory_it_may_write() -> None:
    # Root without CAP_DAC_OVERRIDE cannot write the telemetry user's
    # directory: the state directory is the probe's own, made by systemd.
    unit = Unit("pstoreprobe.service")
    state = "/var/lib/" + unit.one("Service", "StateDirectory")
    argv = shlex.split(unit.one("Service", "ExecStart"))
    assert argv[argv.index("--state-dir") + 1] == state
    assert unit.one("Service", "StateDirectoryMode") == "0700"


@pytest.mark.parametrize(
    "service", ["klogscanner.service", "journalprobe.service", "crashprobe-journal.service"]
)
def test_a_probe_running_as_the_daemons_user_cannot_reach_the_control_socket(service: str) -> None:
    control_dir = os.path.dirname(DEFAULTS["control_socket_path"])
    hidden = [p.lstrip("-") for p in Unit(service).words("Service", "InaccessiblePaths")]
    assert control_dir in hidden
