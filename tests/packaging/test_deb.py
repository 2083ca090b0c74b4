"""The built .debs: lintian, their contents, maintainer scripts, and a
working telemd from the installed files."""

from __future__ import annotations

import os
import select
import shutil
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from debbuild import SYSTEM_PATH, Debs, deb_files, system_python_lacks

from telemd.units import OWN_UNITS, UNITS

UNIT_FILES = [
    "telemd.socket",
    "telemd-control.socket",
    "telemd.service",
    "hprobe.service",
    "hprobe.timer",
    "klogscanner.service",
    "journalprobe.service",
    "pstoreprobe.service",
    "crashprobe-journal.service",
]
COMMANDS = [
    "telemd",
    "telemctl",
    "telem-record-gen",
    "hprobe",
    "crashprobe",
    "klogscanner",
    "journalprobe",
    "pstoreprobe",
]
MAN_PAGES = [
    "man8/telemd.8.gz",
    "man1/telemctl.1.gz",
    "man1/telem-record-gen.1.gz",
    "man5/telemetrics.toml.5.gz",
    "man8/hprobe.8.gz",
    "man8/crashprobe.8.gz",
    "man8/klogscanner.8.gz",
    "man8/journalprobe.8.gz",
    "man8/pstoreprobe.8.gz",
]
RUNTIME_MODULES = ("httpx", "sniffio", "sdnotify", "dbus_fast")


def test_lintian_reports_no_errors_or_warnings(debs: Debs) -> None:
    if shutil.which("lintian", path=SYSTEM_PATH) is None:
        pytest.skip("lintian not found (Debian package lintian; `make deps-packaging`)")
    result = subprocess.run(
        ["lintian", "--pedantic", "--info", "--tag-display-limit", "0", str(debs.changes)],
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8"},
        check=False,
        timeout=120,
    )
    tags = [line for line in result.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert tags == [], result.stdout
    # Everything else (I:, P:) is overridden with a reason in packaging/debian.
    assert [line for line in result.stdout.splitlines() if ":" in line[:2]] == []
    assert result.returncode == 0, result.stdout + result.stderr


def test_telemd_deb_holds_units_config_commands_and_man_pages(debs: Debs) -> None:
    files = deb_files(debs.telemd)
    expected = {f"/lib/systemd/system/{unit}" for unit in UNIT_FILES}
    expected |= {f"/usr/bin/{command}" for command in COMMANDS}
    expected |= {f"/usr/share/man/{page}" for page in MAN_PAGES}
    expected |= {
        "/usr/lib/tmpfiles.d/telemd.conf",
        "/usr/lib/sysusers.d/telemd.conf",
        "/usr/share/defaults/telemetrics/telemetrics.toml",
        "/usr/lib/python3/dist-packages/telemd/daemon/main.py",
        "/usr/lib/python3/dist-packages/telemd_probes/heartbeat/hprobe.py",
    }
    assert expected - files == set()
    # The collector and the core_pattern switch are packages of their own.
    assert not any("collector" in path for path in files)
    assert not any("sysctl.d" in path for path in files)
    # Nothing under /etc: the administrator's files and the opt-in are not ours.
    assert not any(path.startswith("/etc/") for path in files)


def test_shipped_files_are_the_trees_files(debs: Debs, tmp_path: Path) -> None:
    top = Path(__file__).resolve().parents[2]
    subprocess.run(["dpkg-deb", "-x", str(debs.telemd), str(tmp_path)], check=True)
    subprocess.run(["dpkg-deb", "-x", str(debs.crashprobe), str(tmp_path)], check=True)
    pairs = {f"lib/systemd/system/{unit}": f"systemd/{unit}" for unit in UNIT_FILES}
    pairs["usr/lib/tmpfiles.d/telemd.conf"] = "systemd/tmpfiles.d/telemd.conf"
    pairs["usr/lib/sysusers.d/telemd.conf"] = "systemd/sysusers.d/telemd.conf"
    pairs["usr/lib/sysctl.d/40-crashprobe.conf"] = "systemd/40-crashprobe.conf"
    pairs["usr/share/defaults/telemetrics/telemetrics.toml"] = "etc/telemetrics.toml"
    for installed, source in pairs.items():
        assert (tmp_path / installed).read_bytes() == (top / source).read_bytes(), installed
        assert stat.S_IMODE((tmp_path / installed).stat().st_mode) == 0o644, installed
    for command in COMMANDS:
        script = tmp_path / "usr/bin" / command
        assert script.stat().st_mode & 0o111, command
        assert script.read_text().startswith("#!/usr/bin/python3\n"), command


def test_collector_and_crashprobe_debs(debs: Debs) -> None:
    assert {
        "/lib/systemd/system/telemd-collector.service",
        "/usr/bin/telemd-collector",
        "/usr/share/man/man8/telemd-collector.8.gz",
        "/usr/lib/python3/dist-packages/telemd/collector/server/app.py",
    } - deb_files(debs.collector) == set()
    assert "/usr/lib/sysctl.d/40-crashprobe.conf" in deb_files(debs.crashprobe)


def control(deb: Path, tmp_path: Path) -> Path:
    out = tmp_path / f"{deb.name}.control"
    subprocess.run(["dpkg-deb", "-e", str(deb), str(out)], check=True)
    return out


def test_maintainer_scripts_opt_nobody_in(debs: Debs, tmp_path: Path) -> None:
    for deb in (debs.telemd, debs.collector, debs.crashprobe):
        ctl = control(deb, tmp_path)
        for script in ctl.iterdir():
            if script.name not in ("preinst", "postinst", "prerm", "postrm"):
                continue
            text = script.read_text()
            # No script creates the opt-in file or applies the core handler;
            # what they start and stop is checked under systemd (tests/systemd).
            assert "touch" not in text and "> /etc/telemetrics" not in text, (deb.name, script.name)
            assert "sysctl" not in text, (deb.name, script.name)
            assert "#TELEMD_" not in text, (deb.name, script.name)
    control_fields = subprocess.run(
        ["dpkg-deb", "-f", str(debs.collector), "Depends", "Recommends"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # Debian 12 has no python3-orjson: recommended, documented in README.Debian.
    assert "Recommends: python3-orjson" in control_fields
    assert "orjson" not in control_fields.split("Recommends:")[0]


def test_maintainer_scripts_take_their_units_from_telemd_units(debs: Debs, tmp_path: Path) -> None:
    ctl = control(debs.telemd, tmp_path)
    stop = f"deb-systemd-invoke stop {' '.join(OWN_UNITS)} "
    assert stop in (ctl / "prerm").read_text()
    assert stop in (ctl / "postrm").read_text()
    assert f"for unit in {' '.join(UNITS)}; do" in (ctl / "postinst").read_text()
    # debhelper's own stop before an upgrade left telemetry off until a reboot.
    assert not (ctl / "preinst").exists()


def run_script(ctl: Path, name: str, arg: str, root: Path, stubs: Path) -> str:
    """Run a maintainer script as dpkg would for DPKG_ROOT=root, with the
    commands that touch the running system (systemd, py3compile) replaced by
    stubs that record their arguments."""
    log = stubs / "calls.log"
    log.write_text("")
    subprocess.run(
        ["sh", "-e", str(ctl / name), arg],
        env={
            "PATH": f"{stubs}:{SYSTEM_PATH}",
            "DPKG_ROOT": str(root),
            "DPKG_MAINTSCRIPT_PACKAGE": "telemd",
            "STUB_LOG": str(log),
        },
        check=True,
        timeout=60,
    )
    return log.read_text()


@pytest.fixture
def installed(debs: Debs, tmp_path: Path) -> Path:
    """telemd unpacked by dpkg into an empty root, its postinst run for it."""
    root = tmp_path / "root"
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"):
        (root / sub).mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text("")
    # --force-script-chrootless: the empty root has no shell to chroot into;
    # the preinst does nothing under DPKG_ROOT on a first install.
    subprocess.run(
        [
            "dpkg",
            f"--root={root}",
            "--force-depends",
            "--force-not-root",
            "--force-script-chrootless",
            "--unpack",
            str(debs.telemd),
        ],
        capture_output=True,
        env={"PATH": SYSTEM_PATH},
        check=True,
        timeout=120,
    )
    return root


def test_dpkg_unpacks_into_an_empty_root(installed: Path) -> None:
    status = (installed / "var/lib/dpkg/status").read_text()
    assert "Package: telemd\nStatus: install ok unpacked" in status
    assert (installed / "usr/share/defaults/telemetrics/telemetrics.toml").is_file()
    assert (installed / "lib/systemd/system/telemd.socket").is_file()


def test_postinst_creates_users_and_directories_postrm_purges(
    debs: Debs, installed: Path, tmp_path: Path
) -> None:
    for tool in ("systemd-sysusers", "systemd-tmpfiles"):
        if shutil.which(tool, path=SYSTEM_PATH) is None:
            pytest.skip(f"{tool} not found (Debian package systemd)")
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in (
        "py3compile",
        "pypy3compile",
        "deb-systemd-helper",
        "deb-systemd-invoke",
        "systemctl",
    ):
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >>"$STUB_LOG"\n')
        stub.chmod(0o755)
    ctl = control(debs.telemd, tmp_path)
    calls = run_script(ctl, "postinst", "configure", installed, stubs)
    passwd = (installed / "etc/passwd").read_text()
    assert "\ntelemetry:" in "\n" + passwd
    assert "\ntelemetry-collector:" in "\n" + passwd
    modes = {
        "etc/telemetrics": 0o755,
        "var/lib/telemetry": 0o750,
        "var/spool/telemetry": 0o700,
    }
    for path, mode in modes.items():
        assert stat.S_IMODE((installed / path).stat().st_mode) == mode, path
    assert not (installed / "etc/telemetrics/opt-in").exists()
    # Units are enabled (inert without opt-in), none is started.
    assert "deb-systemd-helper enable 'telemd.socket'" in calls.replace('"', "'") or (
        "deb-systemd-helper enable telemd.socket" in calls
    )
    assert "start" not in calls.replace("was-enabled", "")

    (installed / "var/spool/telemetry/spool.sqlite").write_text("x")
    (installed / "etc/telemetrics/opt-in").touch()
    (installed / "etc/telemetrics/telemetrics.toml").write_text("# the admin's\n")
    (installed / "var/lib/pstoreprobe").mkdir()  # systemd makes it when pstoreprobe runs
    (installed / "var/lib/pstoreprobe/pstoreprobe.sent").write_text("")
    run_script(ctl, "postrm", "purge", installed, stubs)
    assert not (installed / "var/spool/telemetry").exists()
    assert not (installed / "var/lib/telemetry").exists()
    assert not (installed / "var/lib/pstoreprobe").exists()
    assert not (installed / "etc/telemetrics/opt-in").exists()
    assert (installed / "etc/telemetrics/telemetrics.toml").exists()


def test_installed_telemd_runs_and_takes_a_record(installed: Path, tmp_path: Path) -> None:
    reason = system_python_lacks(*RUNTIME_MODULES)
    if reason:
        pytest.skip(reason)
    site = installed / "usr/lib/python3/dist-packages"
    env = {"PATH": SYSTEM_PATH, "PYTHONPATH": str(site), "LC_ALL": "C.UTF-8"}

    def run(command: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
        script = installed / "usr/bin" / command
        return subprocess.run(
            ["/usr/bin/python3", str(script), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
            **kw,  # type: ignore[arg-type]
        )

    version = run("telemd", "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "telemd 0.1.0"
    help_ = run("telemctl", "--help")
    assert help_.returncode == 0 and "opt-in" in help_.stdout, help_.stderr

    state = tmp_path / "state"
    config = tmp_path / "telemd.toml"
    config.write_text(
        f'socket_path = "{tmp_path}/telem-0"\n'
        f'control_socket_path = "{tmp_path}/control"\n'
        f'spool_dir = "{tmp_path}/spool"\n'
        f'state_dir = "{state}"\n'
        f'opt_in_file = "{tmp_path}/opt-in"\n'
        f'static_machine_id_file = "{tmp_path}/static-machine-id"\n'
    )
    (tmp_path / "opt-in").touch()
    env["TELEMD_CONFIG"] = str(config)
    daemon = subprocess.Popen(
        ["/usr/bin/python3", str(installed / "usr/bin/telemd"), "-f", str(config)],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert daemon.stderr is not None
        deadline = time.monotonic() + 30
        log = []
        while not any(" ready: " in line for line in log):
            ready, _, _ = select.select([daemon.stderr], [], [], deadline - time.monotonic())
            assert ready, "telemd did not become ready:\n" + "".join(log)
            line = daemon.stderr.readline()
            assert line, "telemd exited:\n" + "".join(log)
            log.append(line)
        sent = run(
            "telem-record-gen",
            "-c",
            "org.example/packaging/test",
            "-s",
            "2",
            "-p",
            "from the installed package",
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        listed = run("telemctl", "spool", "list")
        assert "org.example/packaging/test" in listed.stdout, listed.stdout + listed.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    assert os.path.isdir(state)
