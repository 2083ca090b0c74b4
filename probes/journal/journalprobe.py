"""`journalprobe`: a systemd unit that fails becomes an `org.clearlinux/journal/error` record.

Runs as a service (journalprobe.service). Watches systemd over D-Bus
(systemd_watch) for units whose ActiveState becomes `failed`, and sends one
record per failed run with the unit's Result, exit status and, when the
privacy filters are lifted (`no_privacy_filters_file` exists), its last
`journal_lines` log lines (`journalctl -u UNIT`). Units matching a pattern
of `journal_ignore_units` are skipped, and so are telemd's own units
(telemd.units): a record about the failure of telemd or of a probe would
start them again, and fail again, in a loop. Failures already reported are
remembered under the state directory, so that a restart, which lists the
units failed so far, does not report them again; where that cannot be
saved, nothing is sent.
"""

from __future__ import annotations

import asyncio
import os
import signal

from telemd.atomic_file import replace_file
from telemd.errors import ErrorCode
from telemd.record import Record
from telemd.units import OWN_UNITS

from ..common.cli import (
    COMMON_OPTIONS,
    EXIT_CANNOT_SAVE,
    Options,
    deliver,
    log,
    start_command,
    text_option,
)
from ..common.settings import ProbeSettings
from ..common.subproc import run_bounded
from .unit_failure import CLASSIFICATION, SEVERITY, UnitFailure, is_ignored, payload

PROG = "journalprobe"
REPORTED_NAME = "journalprobe.reported"
_MAX_REPORTED = 512
_JOURNALCTL_TIMEOUT = 10.0
_CONNECT_TIMEOUT = 60.0  # systemd can be slow to answer while the machine boots
# Rejections that sending again would not change: the failure counts as reported.
_FINAL_ERRORS = (ErrorCode.INVALID, ErrorCode.TOO_LARGE, ErrorCode.OPTED_OUT)
OPTIONS = {**COMMON_OPTIONS, "D": ("directory", True), "S": ("state-dir", True)}
HELP = f"""\
Usage: {PROG} [-f FILE]
Watch systemd for units that fail, and send a record for each failure.

  -D, --directory DIR     read unit logs from the journal files in DIR
  -S, --state-dir DIR     where the failures already reported are kept
  -f, --config-file FILE  configuration file to use
  -V, --version           print the version
  -h, --help              show this help
"""


class NotSaved(Exception):
    """A failure was reported but cannot be remembered: stop before the next."""


class Reported:
    """Keys of the failures already reported, the most recent last, kept in a file."""

    def __init__(self, path: str) -> None:
        self.path = path
        try:
            with open(path, encoding="utf-8") as handle:
                self._keys = handle.read(1 << 20).splitlines()[-_MAX_REPORTED:]
        except (OSError, UnicodeDecodeError):
            self._keys = []

    def __contains__(self, key: str) -> bool:
        return key in self._keys

    def add(self, key: str) -> None:
        """Remember `key`; raise NotSaved if the file cannot be written."""
        self._keys = [*self._keys, key][-_MAX_REPORTED:]
        try:
            self.save()
        except OSError as exc:
            raise NotSaved(f"cannot save {self.path}: {exc}") from None

    def save(self) -> None:
        replace_file(self.path, "".join(f"{k}\n" for k in self._keys))


def main(argv: list[str] | None = None) -> int:
    started = start_command(PROG, argv, OPTIONS, HELP)
    if isinstance(started, int):
        return started
    options, settings = started
    state_dir = text_option(options, "state-dir") or settings.state_dir
    reported = Reported(os.path.join(state_dir, REPORTED_NAME))
    try:
        return asyncio.run(_watch(settings, options, reported))
    except NotSaved as exc:
        log(PROG, f"{exc}; stopping")
        return EXIT_CANNOT_SAVE


async def _watch(settings: ProbeSettings, options: Options, reported: Reported) -> int:
    from dbus_fast.errors import DBusError

    from .systemd_watch import SystemdWatcher

    try:
        watcher = await asyncio.wait_for(SystemdWatcher.connect(), _CONNECT_TIMEOUT)
    except (OSError, DBusError, ValueError) as exc:
        log(PROG, f"cannot watch systemd on the system bus: {exc}")
        return 1
    except asyncio.TimeoutError:
        log(PROG, f"systemd did not answer on the system bus within {_CONNECT_TIMEOUT:g} s")
        return 1
    try:
        reported.save()  # proves it can be saved before anything is sent
    except OSError as exc:
        watcher.close()
        log(PROG, f"cannot save {reported.path}: {exc}; sending nothing")
        return EXIT_CANNOT_SAVE
    stopping = asyncio.Event()

    def stop() -> None:
        stopping.set()
        watcher.close()  # the failure being handled is finished first

    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop)
    log(PROG, "watching systemd for failed units")
    try:
        async for failure in watcher.failures():
            await _handle(failure, settings, options, reported)
    finally:
        watcher.close()
    if stopping.is_set():
        return 0
    log(PROG, "lost the connection to the system bus")
    return 1  # so that systemd starts it again


async def _handle(
    failure: UnitFailure, settings: ProbeSettings, options: Options, reported: Reported
) -> None:
    if is_ignored(failure.unit, settings.journal_ignore_units):
        log(PROG, f"{failure.unit}: failed ({failure.result}); ignored (journal_ignore_units)")
        return
    if failure.unit in OWN_UNITS:
        log(PROG, f"{failure.unit}: failed ({failure.result}); telemd's own, not reported")
        return
    if failure.key in reported:
        log(PROG, f"{failure.unit}: this failure was reported already")
        return
    # A unit's log is whatever its programs print (names, paths, tokens): under
    # the privacy filter only systemd's own account of the failure is sent.
    filtered = not os.path.exists(settings.no_privacy_filters_file)
    count = 0 if filtered else settings.journal_lines
    lines = await asyncio.to_thread(
        journal_lines, failure.unit, count, text_option(options, "directory")
    )
    record = Record(CLASSIFICATION, SEVERITY, payload(failure, lines))
    error = await asyncio.to_thread(deliver, PROG, record, settings, options, failure.unit)
    if error is None or error.code in _FINAL_ERRORS:
        reported.add(failure.key)


def journal_lines(unit: str, count: int, directory: str | None) -> list[str]:
    """The last `count` log lines of `unit`; none if journalctl cannot say."""
    if count == 0:
        return []
    argv = ["journalctl", "-u", unit, "-n", str(count), "-o", "short-iso", "--no-pager", "-q"]
    if directory is not None:
        argv += ["--directory", directory]
    try:
        outcome = run_bounded(argv, timeout=_JOURNALCTL_TIMEOUT, limit=256 * 1024)
    except OSError as exc:
        log(PROG, f"cannot run journalctl: {exc.strerror}")
        return []
    if outcome.returncode != 0:
        log(PROG, f"journalctl -u {unit} failed: {outcome.stderr.decode(errors='replace').strip()}")
        return []
    return outcome.stdout.decode("utf-8", "replace").splitlines()[-count:]
