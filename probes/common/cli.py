"""What every probe command shares: options, settings, log lines and sending.

Each probe is a small `main()` around this: Clear's option names (`-f`,
`-V`, `-h`), exit statuses 0/1/2 (success, failure, usage), one line on
stderr per record sent or lost, and never a traceback. Cheap to import: the
probe path pays only for `telemd.client`.
"""

from __future__ import annotations

import sys

from telemd import __version__
from telemd.cli.argv import UsageError, parse
from telemd.client import send
from telemd.errors import EX_CONFIG, ConfigError, TelemetryError
from telemd.record import Record

from .settings import ProbeSettings, load_probe_settings

COMMON_OPTIONS: dict[str, tuple[str, bool]] = {
    "h": ("help", False),
    "V": ("version", False),
    "f": ("config-file", True),
}
Options = dict[str, "str | bool"]


def parse_command(
    prog: str, argv: list[str] | None, options: dict[str, tuple[str, bool]], help_text: str
) -> Options | int:
    """The parsed options, or the exit status if the command is already done
    (help, version, or a usage error, which is reported here)."""
    try:
        parsed, positional = parse(sys.argv[1:] if argv is None else argv, options)
        if positional:
            raise UsageError(f"unexpected argument {positional[0]!r}")
    except UsageError as exc:
        log(prog, f"{exc}\nTry '{prog} --help'.")
        return 2
    if parsed.get("help"):
        sys.stdout.write(help_text)
        return 0
    if parsed.get("version"):
        print(__version__)
        return 0
    return parsed


def text_option(options: Options, name: str) -> str | None:
    value = options.get(name)
    return value if isinstance(value, str) else None


def number_option(options: Options, name: str) -> int | None:
    """An integer option; raises UsageError (reported by the caller) when it is not one."""
    value = text_option(options, name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"--{name} must be an integer, got {value!r}") from None


def load_settings(prog: str, options: Options) -> ProbeSettings | None:
    """The probe settings of `-f` and the chain; None (reported) when they are unusable."""
    try:
        return load_probe_settings(text_option(options, "config-file"))
    except ConfigError as exc:
        log(prog, exc.message)
        return None


# A probe that cannot save what it has sent (a journal cursor, a kernel log
# position, the failures reported) stops with this status (EX_CANTCREAT)
# instead of sending the same records again after a restart; its unit does
# not restart on it (RestartPreventExitStatus=).
EXIT_CANNOT_SAVE = 73


def start_command(
    prog: str, argv: list[str] | None, options: dict[str, tuple[str, bool]], help_text: str
) -> tuple[Options, ProbeSettings] | int:
    """`parse_command` then `load_settings`: the options and settings a probe
    runs with, or the exit status if it is already done."""
    parsed = parse_command(prog, argv, options, help_text)
    if isinstance(parsed, int):
        return parsed
    settings = load_settings(prog, parsed)
    if settings is None:
        return EX_CONFIG
    return parsed, settings


def log(prog: str, message: str) -> None:
    """One line on stderr; to syslog when there is no stderr (as under the kernel)."""
    if sys.stderr is not None:
        print(f"{prog}: {message}", file=sys.stderr, flush=True)
        return
    import syslog

    syslog.openlog(prog, syslog.LOG_PID, syslog.LOG_DAEMON)
    syslog.syslog(syslog.LOG_ERR, message)


def deliver(
    prog: str, record: Record, settings: ProbeSettings, options: Options, what: str
) -> TelemetryError | None:
    """Send `record` and log its record id; return the error that lost it, if any."""
    try:
        record_id = send(
            record,
            config_file=text_option(options, "config-file"),
            socket_path=settings.client_socket,
        )
    except TelemetryError as exc:
        log(prog, f"{what}: not recorded: {exc.message}")
        return exc
    log(prog, f"{what}: sent {record.classification} as record {record_id}")
    return None


class Shutdown:
    """SIGTERM ends the process between two events, never while one is handled.

    A record sent whose position (cursor, sequence number) is not saved yet
    would be sent again after a restart; so the handler exits at once only
    when the probe waits for input, and otherwise once the event is done.
    """

    def __init__(self) -> None:
        import signal  # imports enum: paid only by the probes that run a loop

        self._busy = False
        self._requested = False
        signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        if self._busy:
            self._requested = True
        else:
            raise SystemExit(0)

    def begin(self) -> None:
        self._busy = True

    def end(self) -> None:
        self._busy = False
        if self._requested:
            raise SystemExit(0)
