"""`pstoreprobe`: the crashes pstore kept across a reboot become kernel records.

Run once at boot (pstoreprobe.service). Reads the dmesg dumps in the pstore
directory (`pstore_dir`, or `--dir`), sends one record per dump, in Clear's
kernel layout with the kind of the report found in it, then removes the
dump's files so that the firmware has room for the next crash
(`pstore_keep = true` keeps them). Each dump is sent at most once: its files
are remembered in the state directory (`sent.SentFiles`) before its record
is sent, and remembered files are left out at every later run, whether or
not they could be removed; a failed removal is logged once. Where that state
cannot be saved, nothing is sent (exit 73). Files of a dump that could not be
sent (telemd not running, opted out, throttled) are forgotten again and stay
for the next run. Console logs and other pstore files are left alone;
compressed dumps the kernel could not unpack are removed unsent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from telemd.errors import DaemonUnavailable, ErrorCode, TelemetryError
from telemd.record import Record

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
from .dump import Dump, Part, crash_event, group_dumps, is_compressed, is_dump_file, read_part
from .sent import SENT_NAME, SentFiles, file_identity

PROG = "pstoreprobe"
_MAX_FILE_BYTES = 1 << 20  # pstore records are a few KiB to a few hundred
# Rejections that sending again would not change; other failures keep the files.
_NEVER_ACCEPTED = (ErrorCode.INVALID, ErrorCode.TOO_LARGE)
_COMPRESSED = "compressed by the kernel and not unpacked"
OPTIONS = {**COMMON_OPTIONS, "d": ("dir", True), "S": ("state-dir", True)}
HELP = f"""\
Usage: {PROG} [-d DIR] [-S DIR] [-f FILE]
Send a record for each kernel crash saved in pstore, then remove its files.

  -d, --dir DIR           pstore directory (default: pstore_dir, /sys/fs/pstore)
  -S, --state-dir DIR     where the files already sent are remembered
  -f, --config-file FILE  configuration file to use
  -V, --version           print the version
  -h, --help              show this help
"""


@dataclass(frozen=True, slots=True)
class DumpFile:
    name: str
    data: bytes
    mtime: float
    identity: str


class NotSaved(Exception):
    """What is sent cannot be remembered: stop before sending (more)."""


def main(argv: list[str] | None = None) -> int:
    started = start_command(PROG, argv, OPTIONS, HELP)
    if isinstance(started, int):
        return started
    options, settings = started
    directory = text_option(options, "dir") or settings.pstore_dir
    state_dir = text_option(options, "state-dir") or settings.state_dir
    sent = SentFiles(os.path.join(state_dir, SENT_NAME))
    try:
        names = sorted(name for name in os.listdir(directory) if is_dump_file(name))
    except OSError as exc:
        log(PROG, f"cannot read {directory}: {exc.strerror}")
        return 1
    try:
        if sent.lock() is None:
            log(PROG, f"another pstoreprobe is handling the dumps; {directory} is left to it")
            return 0
    except OSError as exc:
        log(PROG, f"cannot lock {sent.path}.lock: {exc.strerror}; sending nothing")
        return EXIT_CANNOT_SAVE
    files = [file for name in names if (file := _read(directory, name)) is not None]
    sent.keep_only(file.identity for file in files)
    new = [file for file in files if file.identity not in sent]
    try:
        status = _handle(new, directory, sent, settings, options)
        if sent.changed:
            _save(sent, "its files may be reported again")
    except NotSaved as exc:
        log(PROG, str(exc))
        return EXIT_CANNOT_SAVE
    return status


def _handle(
    new: list[DumpFile], directory: str, sent: SentFiles, settings: ProbeSettings, options: Options
) -> int:
    """Send the dumps of the files not sent yet, then drop the compressed ones; the exit status."""
    identities: dict[str, str] = {}
    parts: list[Part] = []
    for file in new:
        part = None if is_compressed(file.name) else read_part(file.name, _text(file), file.mtime)
        if part is not None:
            parts.append(part)
            identities[file.name] = file.identity
    status = 0
    for index, dump in enumerate(group_dumps(parts)):
        dump_identities = [identities[name] for name in dump.names]
        sent.add(dump_identities)
        # Saved before sending (the first save proves it can be): a run
        # stopped after sending does not send the dump again.
        _save(sent, "stopping" if index else "sending nothing")
        error = _send(dump, directory, settings, options)
        if error is not None and error.code not in _NEVER_ACCEPTED:
            sent.discard(dump_identities)  # not taken: sent again at the next run
            _save(sent, "stopping")
            status = 1
            if isinstance(error, DaemonUnavailable):
                break  # every dump left stays for the next run
            continue
        if error is not None:
            status = 1
        if settings.pstore_keep:
            continue
        failure = _remove(directory, dump.names)
        if failure is None:
            sent.discard(dump_identities)  # gone: nothing left to remember
        else:
            log(PROG, f"{directory}: {_label(dump)}: {failure}; it was sent, not sent again")
    for file in new:
        if is_compressed(file.name):
            _drop_compressed(directory, file, sent, settings)
    return status


def _text(file: DumpFile) -> str:
    return file.data.decode("utf-8", "replace")


def _drop_compressed(
    directory: str, file: DumpFile, sent: SentFiles, settings: ProbeSettings
) -> None:
    """Removed unsent; else remembered as a dump sent is, so that it is logged once."""
    path = os.path.join(directory, file.name)
    if settings.pstore_keep:
        outcome = "kept unsent (pstore_keep)"
    else:
        failure = _remove(directory, (file.name,))
        if failure is None:
            log(PROG, f"{path}: {_COMPRESSED}; removed unsent")
            return
        outcome = f"{failure}; left unsent"
    log(PROG, f"{path}: {_COMPRESSED}; {outcome}")
    sent.add((file.identity,))


def _save(sent: SentFiles, then: str) -> None:
    try:
        sent.save()
    except OSError as exc:
        raise NotSaved(f"cannot save {sent.path}: {exc.strerror}; {then}") from None


def _read(directory: str, name: str) -> DumpFile | None:
    path = os.path.join(directory, name)
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_FILE_BYTES)
            mtime = os.fstat(handle.fileno()).st_mtime
    except OSError as exc:
        log(PROG, f"cannot read {path}: {exc.strerror}")
        return None
    return DumpFile(name, data, mtime, file_identity(name, data))


def _label(dump: Dump) -> str:
    return f"{dump.reason}#{dump.count} ({len(dump.parts)} parts)"


def _send(
    dump: Dump, directory: str, settings: ProbeSettings, options: Options
) -> TelemetryError | None:
    event = crash_event(dump)
    what = f"{directory}: {_label(dump)}: {event.signature}"
    record = Record(event.classification, event.severity, event.payload())
    return deliver(PROG, record, settings, options, what)


def _remove(directory: str, names: tuple[str, ...]) -> str | None:
    """Remove the files; None if all went, else why not (the first reason)."""
    failed: list[tuple[str, str]] = []
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except FileNotFoundError:
            pass
        except OSError as exc:
            failed.append((name, exc.strerror or str(exc)))
    if not failed:
        return None
    name, reason = failed[0]
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    return f"cannot remove {name}{more}: {reason}"
