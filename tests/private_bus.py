"""A private dbus-daemon that stands in for the system bus in tests.

systemd cannot run here as PID 1, so its D-Bus API is played by
tests/probes/systemd_standin.py on a bus of the test's own;
$DBUS_SYSTEM_BUS_ADDRESS points the code under test at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

STANDIN = str(Path(__file__).resolve().parent / "probes" / "systemd_standin.py")
BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def start_bus(directory: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A private dbus-daemon, and the environment that makes it the system bus."""
    pytest.importorskip("dbus_fast", reason="needs dbus-fast (pip install dbus-fast)")
    daemon = shutil.which("dbus-daemon")
    if daemon is None:
        pytest.skip("needs dbus-daemon (Debian package dbus-daemon)")
    config = directory / "bus.conf"
    config.write_text(BUS_CONFIG.format(socket=directory / "bus.socket"))
    bus = subprocess.Popen(
        [daemon, f"--config-file={config}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert bus.stdout is not None
    address = bus.stdout.readline().strip()
    return bus, dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=address)
