"""Reading the files under systemd/ the way systemd does, and finding systemd's tools.

Unit files repeat keys (SystemCallFilter=, ListenStream=), which
configparser refuses, so a unit is read as a list of (section, key, value).
"""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "systemd"
TMPFILES = SYSTEMD / "tmpfiles.d" / "telemd.conf"
SYSUSERS = SYSTEMD / "sysusers.d" / "telemd.conf"
SOCKETS = ("telemd.socket", "telemd-control.socket")
SERVICES = ("telemd.service", "telemd-collector.service")


class Unit:
    def __init__(self, name: str) -> None:
        self.name = name
        self.path = SYSTEMD / name
        self.entries: list[tuple[str, str, str]] = []
        section = ""
        for line in self.path.read_text().splitlines():
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            self.entries.append((section, key, value))

    def all(self, section: str, key: str) -> list[str]:
        """Every value given to `key`, in order (an empty value resets, as in systemd)."""
        values: list[str] = []
        for where, name, value in self.entries:
            if (where, name) == (section, key):
                values = [*values, value] if value else []
        return values

    def one(self, section: str, key: str) -> str:
        values = self.all(section, key)
        assert len(values) == 1, f"{self.name}: [{section}] {key}= given {len(values)} times"
        return values[0]

    def words(self, section: str, key: str) -> list[str]:
        return [word for value in self.all(section, key) for word in value.split()]


def sysusers_lines() -> list[list[str]]:
    """The sysusers.d lines, split into fields (the quoted GECOS kept as one)."""
    return [
        shlex.split(line)
        for line in SYSUSERS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def tmpfiles_lines() -> list[list[str]]:
    return [
        line.split()
        for line in TMPFILES.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def need(tool: str) -> str:
    """The path of one of systemd's tools, or skip the test naming it and its package."""
    path = shutil.which(tool) or next(
        (p for p in (f"/usr/bin/{tool}", f"/bin/{tool}") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip(f"needs {tool} (Debian package systemd)")
    return path
