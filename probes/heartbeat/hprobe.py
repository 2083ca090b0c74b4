"""`hprobe`: the heartbeat probe; one `org.clearlinux/hello/world` record.

Sent at opt-in and daily by hprobe.timer, so a fleet's owner can count the
machines that report. On the probe path: keep imports cheap.
"""

from __future__ import annotations

from telemd.record import Record

from ..common.cli import COMMON_OPTIONS, log, parse_command, text_option

PROG = "hprobe"
CLASSIFICATION = "org.clearlinux/hello/world"
PAYLOAD = "hello\n"
HELP = f"""\
Usage: {PROG} [-f FILE]
Send a heartbeat record ({CLASSIFICATION}) to telemd.

  -f, --config-file FILE  configuration file to use
  -V, --version           print the version
  -h, --help              show this help
"""


def main(argv: list[str] | None = None) -> int:
    options = parse_command(PROG, argv, COMMON_OPTIONS, HELP)
    if isinstance(options, int):
        return options
    from telemd.client import send
    from telemd.errors import EX_CONFIG, ConfigError, TelemetryError

    try:
        send(Record(CLASSIFICATION, 1, PAYLOAD), config_file=text_option(options, "config-file"))
    except ConfigError as exc:
        log(PROG, exc.message)
        return EX_CONFIG
    except TelemetryError as exc:
        log(PROG, exc.message)
        return 1
    return 0
