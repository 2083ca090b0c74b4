"""sysusers.d and tmpfiles.d applied for real, by systemd's own tools, in a temporary root.

systemd-sysusers --root=DIR writes DIR/etc/passwd and DIR/etc/group, and
systemd-tmpfiles --root=DIR resolves owners from those files, so the owners
checked here are the users the sysusers file creates, not the host's.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from unit_files import SYSUSERS, TMPFILES, Unit, need, tmpfiles_lines

# Every directory telemd needs: mode, owner, group.
EXPECTED = {
    "/etc/telemetrics": (0o755, "root", "root"),
    "/var/lib/telemetry": (0o750, "telemetry", "telemetry"),
    "/var/spool/telemetry": (0o700, "telemetry", "telemetry"),
    "/run/telemd": (0o755, "telemetry", "telemetry"),
}


def read_ids(path: Path) -> dict[str, list[str]]:
    """/etc/passwd or /etc/group as name -> fields."""
    rows = (line.split(":") for line in path.read_text().splitlines() if line)
    return {row[0]: row for row in rows}


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A root directory with the sysusers file applied."""
    sysusers = need("systemd-sysusers")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    # A relative path would be looked up in the sysusers.d directories.
    result = subprocess.run(
        [sysusers, f"--root={root}", str(SYSUSERS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return root


def create(root: Path, config: Path) -> None:
    tmpfiles = need("systemd-tmpfiles")
    result = subprocess.run(
        [tmpfiles, "--create", f"--root={root}", str(config)], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr) == (0, "")


def applicable(tmp_path: Path) -> Path:
    """The tmpfiles file as this user can apply it.

    Only root may give a directory away; for anyone else a copy without owners
    is applied, and only the modes are checked.
    """
    if os.geteuid() == 0:
        return TMPFILES
    copy = tmp_path / "telemd.conf"
    lines = [" ".join([*f[:3], "-", "-", *f[5:]]) for f in tmpfiles_lines()]
    copy.write_text("\n".join(lines) + "\n")
    return copy


@pytest.mark.parametrize(
    ("user", "home"),
    [("telemetry", "/var/lib/telemetry"), ("telemetry-collector", "/var/lib/telemd-collector")],
)
def test_sysusers_creates_a_system_user_without_login(root: Path, user: str, home: str) -> None:
    passwd = read_ids(root / "etc" / "passwd")
    group = read_ids(root / "etc" / "group")
    _, _, uid, gid, _, user_home, shell = passwd[user]
    assert int(uid) < 1000  # the system range on every distribution we ship to
    assert group[user][2] == gid  # its primary group bears its name
    assert (user_home, os.path.basename(shell)) == (home, "nologin")


def test_the_users_state_directories_are_their_homes(root: Path) -> None:
    passwd = read_ids(root / "etc" / "passwd")
    for service in ("telemd.service", "telemd-collector.service"):
        unit = Unit(service)
        home = passwd[unit.one("Service", "User")][5]
        assert home == "/var/lib/" + unit.one("Service", "StateDirectory")


def test_tmpfiles_declares_exactly_the_expected_directories() -> None:
    lines = tmpfiles_lines()
    assert {fields[0] for fields in lines} == {"d"}
    assert {fields[1] for fields in lines} == set(EXPECTED)
    # No age field: tmpfiles must never clean up records or state.
    assert {fields[5] for fields in lines} == {"-"}


def test_tmpfiles_creates_every_directory_with_its_mode_and_owner(
    root: Path, tmp_path: Path
) -> None:
    create(root, applicable(tmp_path))
    passwd = read_ids(root / "etc" / "passwd")
    group = read_ids(root / "etc" / "group")
    for path, (mode, user, grp) in EXPECTED.items():
        info = (root / path.lstrip("/")).lstat()
        assert stat.S_ISDIR(info.st_mode), path
        assert stat.S_IMODE(info.st_mode) == mode, path
        if os.geteuid() == 0:
            uid = 0 if user == "root" else int(passwd[user][2])
            gid = 0 if grp == "root" else int(group[grp][2])
            assert (info.st_uid, info.st_gid) == (uid, gid), path


def test_tmpfiles_tightens_a_spool_made_too_open_before(root: Path, tmp_path: Path) -> None:
    spool = root / "var" / "spool" / "telemetry"
    spool.mkdir(parents=True)
    spool.chmod(0o755)
    create(root, applicable(tmp_path))
    assert stat.S_IMODE(spool.stat().st_mode) == 0o700


def test_anyone_can_reach_the_control_socket_but_not_write_its_directory() -> None:
    # Unprivileged users may read `telemctl status`; the daemon refuses them
    # flush and purge by their peer credentials.
    control = Unit("telemd-control.socket")
    parent = os.path.dirname(control.one("Socket", "ListenStream"))
    [fields] = [f for f in tmpfiles_lines() if f[1] == parent]
    mode = int(fields[2], 8)
    assert fields[4] == control.one("Socket", "SocketGroup")
    assert mode & stat.S_IXOTH
    assert not mode & (stat.S_IWGRP | stat.S_IWOTH)
