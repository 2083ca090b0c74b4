"""`telem-record-gen`: create a record from the command line and send it.

Clear's options and meaning. Exits 0 only once the daemon has acknowledged
the record as durably spooled; otherwise one line on stderr and status 1
(2 for a bad command line). On the probe path: keep imports cheap.
"""

from __future__ import annotations

import os
import sys

from telemd import __version__
from telemd.cli.argv import UsageError, parse
from telemd.client import client_settings, send
from telemd.errors import EX_CONFIG, ConfigError, DaemonUnavailable, TelemetryError
from telemd.frame import encode_frame
from telemd.record import (
    EVENT_ID_ENV,
    MAX_SEVERITY,
    MIN_SEVERITY,
    Record,
    environment_event_id,
    new_event_id,
    normalise_event_id,
    validate_payload_bytes,
)

PROG = "telem-record-gen"

OPTIONS = {
    "h": ("help", False),
    "V": ("version", False),
    "s": ("severity", True),
    "c": ("class", True),
    "p": ("payload", True),
    "P": ("payload-file", True),
    "R": ("record-version", True),
    "e": ("event-id", True),
    "o": ("echo", False),
    "n": ("no-post", False),
    "f": ("config-file", True),
    # Long only: a key of several letters never matches a short option.
    "new-event-id": ("new-event-id", False),
}

HELP = f"""\
Usage:
  {PROG} [OPTIONS] - create and send a custom telemetry record

Options:
  -h, --help             Show this help
  -V, --version          Print the program version
  -s, --severity N       Severity level (1-4) (default 1)
  -c, --class CLASS      Classification domain/probe/rest (required)
  -p, --payload TEXT     Record body (at most max_payload_size bytes, 8 KiB by default)
  -P, --payload-file F   File to read the record body from
                         (without -p or -P the body is read from standard input)
  -R, --record-version N Version number of the payload's format (default 1)
  -e, --event-id ID      Event id (32 hex characters or a UUID); default ${EVENT_ID_ENV},
                         else random
      --new-event-id     Print a fresh event id (export it as ${EVENT_ID_ENV}) and exit
  -o, --echo             Print the record to standard output
  -n, --no-post          Do not send the record (with -o: only print it)
  -f, --config-file F    Configuration file to use
"""


def _number(options: dict[str, str | bool], name: str, default: int) -> int:
    value = options.get(name, str(default))
    assert isinstance(value, str)
    if not (value.isascii() and value.isdigit()):
        raise UsageError(f"--{name} must be a whole number, got {value!r}")
    return int(value)


def _payload(options: dict[str, str | bool], limit: int) -> str:
    if "payload" in options:
        text = options["payload"]
        assert isinstance(text, str)
        return text
    path = options.get("payload-file")
    if isinstance(path, str):
        try:
            with open(path, "rb") as handle:
                data = handle.read(limit + 1)
        except OSError as exc:
            raise TelemetryError(f"cannot read payload file {path}: {exc.strerror}") from None
    else:
        data = sys.stdin.buffer.read(limit + 1)
    return validate_payload_bytes(data, limit)


def _echo(record: Record) -> None:
    frame = encode_frame(record)
    header_size = int.from_bytes(frame[4:8], "little")
    sys.stdout.write(frame[8 : 8 + header_size].decode() + record.payload + "\n")


def run(argv: list[str]) -> int:
    options, positional = parse(argv, OPTIONS)
    if options.get("help"):
        sys.stdout.write(HELP)
        return 0
    if options.get("version"):
        print(__version__)
        return 0
    if positional:
        raise UsageError(f"unexpected argument {positional[0]!r}")
    if options.get("new-event-id"):
        print(new_event_id())
        return 0
    classification = options.get("class")
    if not isinstance(classification, str):
        raise UsageError("a classification is required (-c domain/probe/rest)")
    severity = _number(options, "severity", 1)
    if not MIN_SEVERITY <= severity <= MAX_SEVERITY:
        raise UsageError(f"severity must be between 1 and 4, got {severity}")
    given = options.get("event-id")
    if isinstance(given, str):
        event_id: str | None = normalise_event_id(given) or given  # Record names a bad one
    else:
        try:
            event_id = environment_event_id()
        except TelemetryError as exc:
            raise UsageError(exc.message) from None
    config_file = options.get("config-file")
    assert config_file is None or isinstance(config_file, str)

    settings = client_settings(config_file)
    record = Record(
        classification,
        severity,
        _payload(options, settings.max_payload_size),
        payload_format_version=_number(options, "record-version", 1),
        event_id=event_id,
        max_payload_size=settings.max_payload_size,
    )
    if options.get("echo"):
        _echo(record)
    if options.get("no-post"):
        return 0

    try:
        send(record, socket_path=settings.socket_path)
    except DaemonUnavailable:
        if not os.path.exists(settings.opt_in_file):
            raise TelemetryError("telemetry is opted out; opt in with 'telemctl opt-in'") from None
        raise
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        print(f"{PROG}: {exc}\nTry '{PROG} --help'.", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return EX_CONFIG
    except TelemetryError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 1
