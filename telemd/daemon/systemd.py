"""What telemd asks of systemd: activated sockets, readiness, status, watchdog.

Every function here is a no-op without systemd, so the same daemon runs in
the foreground, under another supervisor, or socket-activated.
"""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

log = logging.getLogger("telemd.systemd")

SD_LISTEN_FDS_START = 3


def activated_sockets(environ: dict[str, str] | None = None) -> dict[str, socket.socket]:
    """Sockets passed by systemd (LISTEN_FDS), by FileDescriptorName.

    An unnamed first socket is taken as the probe socket. The variables are
    removed from the environment so that child processes do not inherit them.
    """
    env = os.environ if environ is None else environ
    try:
        count = int(env.get("LISTEN_FDS", "0"))
        pid = int(env.get("LISTEN_PID", "0"))
    except ValueError:
        return {}
    names = env.get("LISTEN_FDNAMES", "").split(":")
    for variable in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        env.pop(variable, None)
    if count <= 0 or pid != os.getpid():
        return {}
    sockets: dict[str, socket.socket] = {}
    for index in range(count):
        fd = SD_LISTEN_FDS_START + index
        name = names[index] if index < len(names) and names[index] else ""
        if not name or name == "unknown":
            name = "probe" if "probe" not in sockets else f"fd{fd}"
        sock = socket.socket(fileno=fd)
        sock.setblocking(False)
        sockets[name] = sock
    return sockets


class Notifier:
    """sd_notify messages to $NOTIFY_SOCKET; silent when there is none."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.enabled = bool(env.get("NOTIFY_SOCKET"))
        self._notifier: Any = None
        if self.enabled:
            import sdnotify  # type: ignore[import-untyped]

            self._notifier = sdnotify.SystemdNotifier()
        self._last_status = ""

    def notify(self, message: str) -> None:
        if self._notifier is not None:
            self._notifier.notify(message)

    def ready(self) -> None:
        self.notify("READY=1")

    def status(self, text: str) -> None:
        if text != self._last_status:
            self._last_status = text
            self.notify(f"STATUS={text}")

    def watchdog(self) -> None:
        self.notify("WATCHDOG=1")

    def stopping(self) -> None:
        self.notify("STOPPING=1")


def watchdog_interval(environ: dict[str, str] | None = None) -> float | None:
    """How often to send WATCHDOG=1: half of WATCHDOG_USEC, as sd_watchdog_enabled advises."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID", str(os.getpid())))
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2_000_000
