"""`hprobe`: the heartbeat probe; one `org.clearlinux/hello/world` record.

Sent at opt-in and daily by hprobe.timer, so a fleet's owner can count the
machines that report. On the probe path: keep imports cheap.
"""

from __future__ import annotations

import sys

from telemd import __version__
from telemd.cli.argv import UsageError, parse
from telemd.client import send
from telemd.errors import TelemetryError
from telemd.record import Record

PROG = "hprobe"
CLASSIFICATION = "org.clearlinux/hello/world"
PAYLOAD = "hello\n"
OPTIONS = {"h": ("help", False), "V": ("version", False), "f": ("config-file", True)}
HELP = f"""\
Usage: {PROG} [-f FILE]
Send a heartbeat record ({CLASSIFICATION}) to telemd.

  -f, --config-file FILE  configuration file to use
  -V, --version           print the version
  -h, --help              show this help
"""


def main(argv: list[str] | None = None) -> int:
    try:
        options, positional = parse(sys.argv[1:] if argv is None else argv, OPTIONS)
        if positional:
            raise UsageError(f"unexpected argument {positional[0]!r}")
    except UsageError as exc:
        print(f"{PROG}: {exc}\nTry '{PROG} --help'.", file=sys.stderr)
        return 2
    if options.get("help"):
        sys.stdout.write(HELP)
        return 0
    if options.get("version"):
        print(__version__)
        return 0
    config_file = options.get("config-file")
    assert config_file is None or isinstance(config_file, str)
    try:
        send(Record(CLASSIFICATION, 1, PAYLOAD), config_file=config_file)
    except TelemetryError as exc:
        print(f"{PROG}: {exc.message}", file=sys.stderr)
        return 1
    return 0
