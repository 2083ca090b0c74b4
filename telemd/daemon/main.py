"""`telemd`: the daemon. `Daemon.run()` reads as the life of the process.

Start: directories, spool, host metadata, socket. Serve until SIGTERM or
SIGINT (SIGHUP reloads the configuration). Stop: refuse new frames, let what
was received reach the disk and be acknowledged, close. A second SIGTERM or
SIGINT exits at once; acknowledged records are safe on disk either way.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import resource
import signal
import stat
import sys
import time
from typing import Any

from telemd import __version__
from telemd.config import Settings, load_settings
from telemd.daemon import eventloop
from telemd.daemon.budget import UidBudget
from telemd.daemon.control import ControlServer
from telemd.daemon.delivery import Delivery
from telemd.daemon.intake import Intake, IntakeOptions, bind_unix_socket
from telemd.daemon.logs import setup_logging, summarize_repeats_on
from telemd.daemon.spool import HostKey, Spool
from telemd.daemon.status import snapshot, status_line
from telemd.daemon.systemd import Notifier, activated_sockets, watchdog_interval
from telemd.daemon.transport import Transport
from telemd.errors import EX_CONFIG, ConfigError, RecordError, TelemetryError
from telemd.hostinfo import HostInfo, read_host_info
from telemd.journal import JOURNAL_FILE
from telemd.machineid import MachineId
from telemd.record import HOST_TEXT_LIMITS, check_arch, check_kernel_version, conform_host_text

log = logging.getLogger("telemd")

GIL_SWITCH_INTERVAL = 0.0005  # seconds

# sysexits' internal software error: the spool writer is gone. Any failure
# status makes systemd restart the unit (Restart=on-failure).
EX_SOFTWARE = 70
# How long SIGTERM waits for received frames to reach the disk.
SHUTDOWN_GRACE = 10.0
STATUS_INTERVAL = 1.0


def intake_options(settings: Settings) -> IntakeOptions:
    return IntakeOptions(
        opt_in_file=settings.opt_in_file,
        max_payload_size=settings.max_payload_size,
        max_clients=settings.max_clients,
        client_timeout=settings.client_timeout,
        max_uid_connections=settings.max_uid_connections,
        journal_max=settings.journal_max_entries,
    )


def spool_quota(settings: Settings) -> int | None:
    return None if settings.spool_max_size < 0 else settings.spool_max_size * 1024


def per_minute(settings: Settings) -> int | None:
    return None if settings.uid_records_per_minute < 0 else settings.uid_records_per_minute


def ensure_private_directory(path: str, mode: int) -> None:
    """Create `path` with `mode`; refuse a symlink, a directory owned by another
    user, or one that other users may write to.

    Everything the daemon keeps lives in these directories, so once they are
    its own no other user can plant a link in them for it to follow.
    """
    os.makedirs(path, mode=mode, exist_ok=True)
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise TelemetryError(f"{path} is a symbolic link; it must be a directory of its own")
    if not stat.S_ISDIR(info.st_mode):
        raise TelemetryError(f"{path} is not a directory")
    if info.st_uid != os.geteuid():
        raise TelemetryError(
            f"{path} belongs to uid {info.st_uid}, not to the daemon's uid {os.geteuid()};"
            f" fix with 'chown {os.geteuid()} {path}'"
        )
    if info.st_mode & stat.S_IWOTH:
        raise TelemetryError(f"{path} is writable by other users; fix with 'chmod o-w {path}'")


class Daemon:
    def __init__(self, settings: Settings, config_file: str | None) -> None:
        self.settings = settings
        self.config_file = config_file
        self.spool = Spool(settings.spool_dir, max_bytes=spool_quota(settings))
        self.machine_id = MachineId(settings.state_dir, settings.static_machine_id_file)
        self.host: HostInfo = conform_host(read_host_info())
        self.notifier = Notifier()
        self.started = time.time()
        self._stop = asyncio.Event()
        self._exit_status = 0
        self._signals = 0
        self._last_activity = 0.0
        self._status_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # set by run()

    def host_key(self) -> HostKey:
        return (self.machine_id.current(), self.host)

    async def run(self) -> int:
        loop = self._loop = asyncio.get_running_loop()
        summarize_repeats_on(loop)
        settings = self.settings
        ensure_private_directory(settings.spool_dir, 0o700)
        ensure_private_directory(settings.state_dir, 0o750)
        self.spool.on_writer_gone = self._writer_gone
        self.spool.open(loop, os.path.join(settings.state_dir, JOURNAL_FILE))
        self.delivery = Delivery(settings, self.spool, transport=make_transport(settings))
        self.delivery.on_settled = self._activity
        budget = UidBudget(per_minute(settings), loop.time)
        self.intake = Intake(
            intake_options(settings), self.spool, self.host_key, budget, on_stored=self._stored
        )
        activated = activated_sockets()
        bound = [path for name, path in self._own_sockets() if name not in activated]
        await self.intake.start(
            activated.get("probe") or bind_unix_socket(settings.socket_path, settings.socket_mode)
        )
        control = ControlServer(
            {"status": self._status, "flush": self._flush, "purge": self._purge}
        )
        await control.start(
            activated.get("control") or bind_unix_socket(settings.control_socket_path, 0o666)
        )
        delivering = asyncio.create_task(self.delivery.run(), name="delivery")
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_stop_signal, signum)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        if activated and settings.daemon_recycling_enabled:
            loop.call_later(settings.idle_exit_after, self._idle_check)
        log.info(
            "telemd %s ready: socket %s%s, spool %s (%d records waiting), event loop %s",
            __version__,
            settings.socket_path,
            " (socket-activated)" if activated else "",
            self.spool.path,
            self.spool.depth,
            eventloop.loop_name(loop),
        )
        self.notifier.ready()
        self._update_status()
        self._start_watchdog(loop)

        await self._stop.wait()

        log.info("stopping: finishing what is in flight")
        self.notifier.stopping()
        control.close()
        await self.intake.stop(SHUTDOWN_GRACE)
        await self.delivery.stop(SHUTDOWN_GRACE)
        await delivering
        self.spool.close()
        for path in bound:
            _unlink_quietly(path)
        log.info("stopped; %d records spooled", self.spool.depth)
        return self._exit_status

    def _own_sockets(self) -> list[tuple[str, str]]:
        return [
            ("probe", self.settings.socket_path),
            ("control", self.settings.control_socket_path),
        ]

    # Control requests --------------------------------------------------------

    async def _status(self) -> dict[str, Any]:
        return snapshot(self.settings, self.intake, self.spool, self.delivery, self.started)

    async def _flush(self) -> dict[str, Any]:
        self.delivery.flush()
        return {"flushed": True}

    async def _purge(self) -> dict[str, Any]:
        return {"purged": await self.delivery.purge()}

    # Activity: STATUS=, the watchdog, and exiting when idle ------------------

    def _stored(self) -> None:
        self.delivery.notify()
        self._activity()

    def _activity(self) -> None:
        # Runs for every record stored: the loop is kept rather than looked
        # up, which costs a getpid() system call each time.
        loop = self._loop
        assert loop is not None
        self._last_activity = loop.time()
        if self.notifier.enabled and self._status_timer is None:
            # At most one STATUS= a second, and none while nothing happens.
            self._status_timer = loop.call_later(STATUS_INTERVAL, self._update_status)

    def _update_status(self) -> None:
        self._status_timer = None
        if self.notifier.enabled:
            state = snapshot(self.settings, self.intake, self.spool, self.delivery, self.started)
            self.notifier.status(status_line(state))

    def _start_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        interval = watchdog_interval()
        if interval is None:
            return

        def pet() -> None:
            # Sent from the event loop, so a wedged loop stops the pings; and
            # only while the spool writer lives, for a daemon that cannot
            # store is as good as wedged.
            if self.spool.writer_failure is not None:
                return
            self.notifier.watchdog()
            loop.call_later(interval, pet)

        pet()

    def _writer_gone(self) -> None:
        """The spool writer thread ended: nothing can be stored any more.
        Exit with a failure status so that the service manager restarts us."""
        log.critical(
            "the spool writer is gone (%s); exiting with status %d to be restarted",
            self.spool.writer_failure,
            EX_SOFTWARE,
        )
        self._exit_status = EX_SOFTWARE
        self._stop.set()

    def _idle_check(self) -> None:
        loop = asyncio.get_running_loop()
        idle_for = loop.time() - self._last_activity
        limit = self.settings.idle_exit_after
        busy = self.intake.connections or self.spool.depth or self.delivery.in_flight
        if not busy and idle_for >= limit:
            log.info("idle for %.0f s with an empty spool: exiting until the next probe", idle_for)
            self._stop.set()
            return
        loop.call_later(max(limit - idle_for, 1.0), self._idle_check)

    def _on_stop_signal(self, signum: int) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("second %s: exiting now", signal.Signals(signum).name)
            os._exit(1)
        self._stop.set()

    def reload(self) -> None:
        """SIGHUP: re-read the configuration, host metadata and machine id override."""
        try:
            settings = load_settings(self.config_file, open_files=True)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc.message)
            return
        for key in RESTART_KEYS:
            if getattr(settings, key) != getattr(self.settings, key):
                log.warning("%s changed; it takes effect at the next restart", key)
        self.settings = settings
        self.intake.apply(intake_options(settings))
        self.intake.budget.per_minute = per_minute(settings)
        self.spool.max_bytes = spool_quota(settings)
        try:
            transport = make_transport(settings)
        except (OSError, ValueError) as exc:  # an unreadable cainfo or client certificate
            log.error("delivery keeps its previous server and TLS settings: %s", exc)
        else:
            self.delivery.reconfigure(settings, transport)
        self.host = conform_host(read_host_info())
        self.machine_id.reload()
        logging.getLogger().setLevel(settings.log_level.upper())
        log.info("configuration reloaded")


# Keys read once at start: a reload names them in a warning when they change.
RESTART_KEYS = (
    "socket_path",
    "socket_mode",
    "control_socket_path",
    "spool_dir",
    "state_dir",
    "static_machine_id_file",
    "event_loop",
    "daemon_recycling_enabled",
)


def conform_host(info: HostInfo) -> HostInfo:
    """This machine's metadata as the record rules allow it (telemd.record):
    unprintable characters become spaces, long values are cut. What cannot
    be conformed (an architecture or kernel version the collector refuses)
    is logged, once per reading."""
    headers = info.headers()
    for check, name in ((check_arch, "arch"), (check_kernel_version, "kernel_version")):
        try:
            check(headers[name])
        except RecordError as exc:
            log.warning("%s; telemd-collector will refuse this machine's records", exc.message)
    return dataclasses.replace(
        info,
        **{
            name: conform_host_text(name, value)
            for name, value in headers.items()
            if name in HOST_TEXT_LIMITS
        },
    )


def make_transport(settings: Settings) -> Transport | None:
    """The HTTP client, or None when no server is configured or delivery is off."""
    if not settings.server or not settings.record_server_delivery_enabled:
        return None
    if settings.server.startswith("http://"):
        log.warning("server %s is plain http: records travel unencrypted", settings.server)
    return Transport(settings)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _raise_fd_limit() -> None:
    # Every client connection is a file descriptor; max_clients may exceed 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="telemd", description="Collect telemetry records from local probes and spool them."
    )
    parser.add_argument(
        "-f", "--config-file", metavar="FILE", help="configuration file (default: $TELEMD_CONFIG)"
    )
    parser.add_argument("-V", "--version", action="version", version=f"telemd {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        settings = load_settings(args.config_file, open_files=True)
    except ConfigError as exc:
        print(f"telemd: {exc.message}", file=sys.stderr)
        return EX_CONFIG
    setup_logging(settings.log_level)
    _raise_fd_limit()
    # Files the daemon makes are for itself and its group (telemctl), never others.
    os.umask(0o027)
    try:
        # The spool writer needs the GIL back as soon as its fsync returns,
        # and a thread kept waiting asks the loop to let go only after the
        # switch interval (5 ms by default). 0.5 ms bounds that wait; once
        # the writer committed a batch in one statement, the 8-client
        # connect measure showed no difference beyond noise between the two
        # (14,244 against 14,608 records/s, bench/intake.py's clients).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        return eventloop.run(Daemon(settings, args.config_file).run(), settings.event_loop)
    except TelemetryError as exc:
        log.error("%s", exc.message)
        return 1
    except OSError as exc:
        log.error("%s: %s", exc.filename or "telemd", exc.strerror or exc)
        return 1
