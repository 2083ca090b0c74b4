"""`crashprobe`: a crashed process becomes an `org.clearlinux/crash/*` record.

Two ways in, one record layout (crash_report):
  - as the kernel's core handler (systemd/40-crashprobe.conf):
        kernel.core_pattern = |/usr/bin/crashprobe -p %e -E %E -s %s -P %P -u %u -t %t
    The core arrives on stdin; it is copied, bounded, into a private file
    (core_file), unwound by eu-stack (eu_stack) and removed.
  - `--from-journal`: systemd-coredump's journal entries (coredump_entry),
    followed after a saved cursor (journal_follow), with the stack trace
    systemd-coredump already wrote.
Identical crashes in a burst are counted rather than each sent (crash_storm).

Started by the kernel, it must never hang, never leave a core behind and
never print a traceback: helpers have deadlines, reads have bounds, and a
failure is one log line and exit status 1.
"""

from __future__ import annotations

import os

from telemd.cli.argv import UsageError
from telemd.errors import EX_CONFIG, DaemonUnavailable, TelemetryError
from telemd.record import Record

from ..common.cli import (
    COMMON_OPTIONS,
    EXIT_CANNOT_SAVE,
    Options,
    Shutdown,
    deliver,
    load_settings,
    log,
    number_option,
    parse_command,
    text_option,
)
from ..common.settings import ProbeSettings
from .report import (
    Crash,
    CrashKind,
    classify,
    final_kind,
    needs_backtrace,
    payload,
    storm_key,
)
from .storm import StormLedger

PROG = "crashprobe"
CURSOR_NAME = "crashprobe-journal.cursor"
OPTIONS = {
    **COMMON_OPTIONS,
    "p": ("process-name", True),
    "E": ("process-path", True),
    "s": ("signal", True),
    "P": ("pid", True),
    "u": ("uid", True),
    "t": ("time", True),
    "c": ("core-file", True),
    "J": ("from-journal", False),
    "o": ("once", False),
    "D": ("directory", True),
    "S": ("state-dir", True),
}
HELP = f"""\
Usage: {PROG} -p NAME [-E PATH] [-s SIGNAL] [-P PID] [-u UID] [-t TIME] [-c CORE]
       {PROG} --from-journal [--once] [-D DIR]
Send a crash record for a core read from stdin (as the kernel's core handler),
or for each crash systemd-coredump logs to the journal.

  -p, --process-name NAME  name of the crashed process (%e)
  -E, --process-path PATH  its executable, with ! or / separators (%E)
  -s, --signal N           the signal that killed it (%s)
  -P, --pid N              its process id (%P)
  -u, --uid N              its user id (%u); eu-stack runs as this user
  -t, --time N             when it crashed, in unix seconds (%t)
  -c, --core-file FILE     read the core from FILE instead of stdin
  -J, --from-journal       report systemd-coredump's entries in the journal
  -o, --once               with --from-journal: stop at the end of the journal
  -D, --directory DIR      with --from-journal: read the journal files in DIR
  -S, --state-dir DIR      where crash counts and the journal cursor are kept
  -f, --config-file FILE   configuration file to use
  -V, --version            print the version
  -h, --help               show this help
"""


def main(argv: list[str] | None = None) -> int:
    _open_standard_fds()
    options = parse_command(PROG, argv, OPTIONS, HELP)
    if isinstance(options, int):
        return options
    try:
        from_journal = bool(options.get("from-journal"))
        crash, uid = (None, None) if from_journal else _crash_from_options(options)
        settings = load_settings(PROG, options)
        if settings is None:
            return EX_CONFIG
        if not os.path.exists(settings.opt_in_file):
            return 0  # opted out: leave the core alone
        ledger = StormLedger(
            text_option(options, "state-dir") or settings.state_dir, settings.crash_dedup_window
        )
        if crash is None:
            return _from_journal(options, settings, ledger)
        return _from_kernel(crash, uid, options, settings, ledger)
    except UsageError as exc:
        log(PROG, f"{exc}\nTry '{PROG} --help'.")
        return 2
    except Exception as exc:  # the kernel's handler must end with a line, not a traceback
        log(PROG, f"internal error: {exc!r}")
        return 1


def _crash_from_options(options: Options) -> tuple[Crash, int | None]:
    """The crash as core_pattern describes it, and the crashed user; raise UsageError."""
    name = text_option(options, "process-name")
    if name is None:
        raise UsageError("missing -p NAME (or --from-journal)")
    crash = Crash(
        executable=(text_option(options, "process-path") or name).replace("!", "/"),
        name=name,
        pid=number_option(options, "pid"),
        signal=number_option(options, "signal"),
        timestamp=number_option(options, "time"),
    )
    return crash, number_option(options, "uid")


def _from_kernel(
    crash: Crash, uid: int | None, options: Options, settings: ProbeSettings, ledger: StormLedger
) -> int:
    kind = classify(crash.executable, not os.path.exists(settings.no_privacy_filters_file))
    if needs_backtrace(kind):
        from .kernel_core import unwind_core

        crash = unwind_core(crash, text_option(options, "core-file"), settings, uid)
    error = _report(crash, final_kind(kind, crash), settings, options, ledger, crash.executable)
    return 0 if error is None else 1


def _from_journal(options: Options, settings: ProbeSettings, ledger: StormLedger) -> int:
    from .coredump_entry import COREDUMP_MESSAGE_ID, crash_from_entry
    from .journal_follow import CursorFile, JournalReader

    cursor_file = CursorFile(os.path.join(os.path.dirname(ledger.path), CURSOR_NAME))
    cursor = cursor_file.load()
    try:
        cursor_file.save(cursor or "")  # proves it can be saved before anything is sent
    except OSError as exc:
        log(PROG, f"cannot save the journal cursor in {cursor_file.path}: {exc}; sending nothing")
        return EXIT_CANNOT_SAVE
    reader = JournalReader(
        [f"MESSAGE_ID={COREDUMP_MESSAGE_ID}"],
        cursor=cursor,
        follow=not options.get("once"),
        directory=text_option(options, "directory"),
    )
    # SIGTERM ends the loop through `finally`, which stops journalctl too.
    shutdown = Shutdown()
    filtered = not os.path.exists(settings.no_privacy_filters_file)
    try:
        for entry, cursor in reader.entries():
            shutdown.begin()
            crash = crash_from_entry(entry, settings.crash_include_cmdline)
            kind = final_kind(classify(crash.executable, filtered), crash)
            error = _report(crash, kind, settings, options, ledger, crash.executable)
            if isinstance(error, DaemonUnavailable):
                return 1  # the cursor stays before this entry: it is read again after a restart
            try:
                cursor_file.save(cursor)
            except OSError as exc:
                log(PROG, f"cannot save the journal cursor in {cursor_file.path}: {exc}; stopping")
                return EXIT_CANNOT_SAVE
            shutdown.end()
    except OSError as exc:
        log(PROG, f"cannot read the journal: {exc}")
        return 1
    finally:
        reader.close()
    return 0


def _report(
    crash: Crash,
    kind: CrashKind,
    settings: ProbeSettings,
    options: Options,
    ledger: StormLedger,
    what: str,
) -> TelemetryError | None:
    """Count the crash, and send a record if its storm schedule says so."""
    try:
        count = ledger.admit(storm_key(crash))
    except OSError as exc:
        log(PROG, f"cannot count crashes in {ledger.path}: {exc.strerror}; sending anyway")
        count = 1
    if count == 0:
        log(PROG, f"{what}: counted, not sent (same crash within crash_dedup_window)")
        return None
    record = Record(
        kind.classification,
        kind.severity,
        payload(crash, kind, count),
        creation_timestamp=crash.timestamp,
    )
    return deliver(PROG, record, settings, options, what)


def _open_standard_fds() -> None:
    """The kernel starts the handler with only stdin open; keep fds 1 and 2 taken,
    so that no file opened later becomes a child's stdout by accident."""
    for fd in (1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
