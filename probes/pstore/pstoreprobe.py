"""`pstoreprobe`: the crashes pstore kept across a reboot become kernel records.

Run once at boot (pstoreprobe.service). Reads the dmesg dumps in the pstore
directory (`pstore_dir`, or `--dir`), sends one record per dump, in Clear's
kernel layout with the kind of the report found in it, then removes the
dump's files so that the firmware has room for the next crash
(`pstore_keep = true` keeps them, and they are then sent again at the next
run). Files of a dump that could not be sent (telemd not running, opted
out, throttled) stay for the next run. Console logs and other pstore files are left alone;
compressed dumps the kernel could not unpack are removed unsent.
"""

from __future__ import annotations

import os

from telemd.errors import DaemonUnavailable, ErrorCode, TelemetryError
from telemd.record import Record

from ..common.cli import COMMON_OPTIONS, Options, deliver, log, start_command, text_option
from ..common.settings import ProbeSettings
from .dump import Dump, Part, crash_event, group_dumps, is_compressed, is_dump_file, read_part

PROG = "pstoreprobe"
_MAX_FILE_BYTES = 1 << 20  # pstore records are a few KiB to a few hundred
# Rejections that sending again would not change; other failures keep the files.
_NEVER_ACCEPTED = (ErrorCode.INVALID, ErrorCode.TOO_LARGE)
OPTIONS = {**COMMON_OPTIONS, "d": ("dir", True)}
HELP = f"""\
Usage: {PROG} [-d DIR] [-f FILE]
Send a record for each kernel crash saved in pstore, then remove its files.

  -d, --dir DIR           pstore directory (default: pstore_dir, /sys/fs/pstore)
  -f, --config-file FILE  configuration file to use
  -V, --version           print the version
  -h, --help              show this help
"""


def main(argv: list[str] | None = None) -> int:
    started = start_command(PROG, argv, OPTIONS, HELP)
    if isinstance(started, int):
        return started
    options, settings = started
    directory = text_option(options, "dir") or settings.pstore_dir
    try:
        names = sorted(name for name in os.listdir(directory) if is_dump_file(name))
    except OSError as exc:
        log(PROG, f"cannot read {directory}: {exc.strerror}")
        return 1
    parts: list[Part] = []
    for name in names:
        path = os.path.join(directory, name)
        if is_compressed(name):
            log(PROG, f"{path}: compressed by the kernel and not unpacked; removed unsent")
            _remove(directory, (name,), settings)
            continue
        part = _read(path, name)
        if part is not None:
            parts.append(part)
    status = 0
    for dump in group_dumps(parts):
        error = _send(dump, directory, settings, options)
        if isinstance(error, DaemonUnavailable):
            return 1  # every dump left stays for the next run
        if error is not None:
            status = 1
        if error is None or error.code in _NEVER_ACCEPTED:
            _remove(directory, dump.names, settings)
    return status


def _read(path: str, name: str) -> Part | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(_MAX_FILE_BYTES)
            mtime = os.fstat(handle.fileno()).st_mtime
    except OSError as exc:
        log(PROG, f"cannot read {path}: {exc.strerror}")
        return None
    return read_part(name, data.decode("utf-8", "replace"), mtime)


def _send(
    dump: Dump, directory: str, settings: ProbeSettings, options: Options
) -> TelemetryError | None:
    event = crash_event(dump)
    what = f"{directory}: {dump.reason}#{dump.count} ({len(dump.parts)} parts): {event.signature}"
    record = Record(event.classification, event.severity, event.payload())
    return deliver(PROG, record, settings, options, what)


def _remove(directory: str, names: tuple[str, ...], settings: ProbeSettings) -> None:
    if settings.pstore_keep:
        return
    for name in names:
        try:
            os.unlink(os.path.join(directory, name))
        except OSError as exc:
            log(PROG, f"cannot remove {os.path.join(directory, name)}: {exc.strerror}")
