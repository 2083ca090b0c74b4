"""`telemctl`: what an administrator touches.

Subcommands read files directly where that is enough (journal, spool list
and show, configuration) and ask the running daemon over its control socket
for what needs the live process (status counters, flush, purge). Exit
status: 0 success, 1 failure, 2 usage, 78 bad configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from telemd import __version__
from telemd.cli import control_client, journal_view, optin, services, spool_view, status_view
from telemd.config import Settings, load_settings, setting_names, validate_file
from telemd.errors import EX_CONFIG, ConfigError, TelemetryError


def config_show(settings: Settings, args: argparse.Namespace) -> int:
    values = {name: getattr(settings, name) for name in setting_names()}
    if args.json:
        print(json.dumps({name: {"value": value, "source": settings.sources[name]}
                          for name, value in values.items()}))  # fmt: skip
        return 0
    for name, value in values.items():
        shown = oct(value) if name == "socket_mode" else json.dumps(value)
        print(f"{name} = {shown}  # {settings.sources[name]}")
    return 0


def flush(settings: Settings) -> int:
    control_client.request(settings.control_socket_path, "flush")
    print("Delivery of the spool starts now.")
    return 0


def purge(settings: Settings) -> int:
    print(f"Purged {optin.purge(settings)} records from the spool.")
    return 0


def unit_control(verb: str, config_file: str | None) -> int:
    failures = services.control(verb, config_file)
    for failure in failures:
        print(f"telemctl: {failure}", file=sys.stderr)
    return 1 if failures else 0


def reload(config_file: str | None) -> int:
    """The configuration was read and found valid (dispatch); now the daemon."""
    if services.reload(config_file) == "active":
        print("telemd re-read its configuration.")
    else:
        print("telemd is not running; it reads the configuration when next started.")
    return 0


EXIT_NOT_ACTIVE = 3  # `systemctl is-active`'s status when no unit is active


def is_active(config_file: str | None) -> int:
    """Clear's shape: one line per unit, `name : state`; 0 if any is active."""
    states = services.states(config_file)
    for unit, state in states:
        print(f"{unit} : {state}")
    return 0 if any(state == "active" for _, state in states) else EXIT_NOT_ACTIVE


def config_check(path: str) -> int:
    errors = validate_file(path)
    for error in errors:
        print(error, file=sys.stderr)
    if not errors:
        print(f"{path}: OK")
    return 1 if errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telemctl", description="Control telemd.")
    parser.add_argument("-f", "--config-file", metavar="FILE", help="configuration file")
    parser.add_argument("--version", action="version", version=f"telemctl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    opt_in = commands.add_parser("opt-in", help="opt in to telemetry and start the services")
    opt_in.add_argument("--no-start", action="store_true", help="only create the opt-in file")
    opt_out = commands.add_parser(
        "opt-out", help="opt out, stop the services, purge what waits to be sent"
    )
    opt_out.add_argument("--no-stop", action="store_true", help="leave the services alone")
    opt_out.add_argument("--keep-spool", action="store_true", help="keep spooled records")
    for verb in ("start", "stop", "restart"):
        commands.add_parser(verb, help=f"{verb} the telemetry services (systemd)")
    commands.add_parser("is-active", help="the state of each telemetry unit")
    commands.add_parser("reload", help="check the configuration, then apply it (running or not)")

    status = commands.add_parser("status", help="opt-in, daemon, spool and delivery state")
    status.add_argument("--json", action="store_true")

    journal = commands.add_parser("journal", help="what became of each record")
    journal_view.add_arguments(journal)

    spool = commands.add_parser("spool", help="records waiting for delivery")
    spool_commands = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    spool_list = spool_commands.add_parser("list", help="list spooled records")
    spool_list.add_argument("--json", action="store_true")
    spool_show = spool_commands.add_parser("show", help="one spooled record with its payload")
    spool_show.add_argument("record_id")
    spool_show.add_argument("--json", action="store_true")
    spool_export = spool_commands.add_parser(
        "export", help="write the waiting records to a file, for telemd-collector import"
    )
    spool_export.add_argument(
        "--ndjson", required=True, metavar="FILE", help="one record a line; - for stdout"
    )
    spool_commands.add_parser("flush", help="deliver now, ignoring any backoff")
    spool_commands.add_parser("purge", help="drop every waiting record (journaled as dropped)")

    config = commands.add_parser("config", help="the configuration")
    config_commands = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = config_commands.add_parser("show", help="effective settings and where each came from")
    show.add_argument("--json", action="store_true")
    check = config_commands.add_parser("check", help="validate a configuration file")
    check.add_argument("file", nargs="?", help="default: the -f file or the system file")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "config" and args.config_command == "check":
        from telemd.paths import config_chain

        chain = config_chain()
        path = args.file or args.config_file or (chain[-1] if chain else None)
        if path is None:
            print("telemctl: no configuration file to check", file=sys.stderr)
            return 1
        return config_check(path)
    settings = load_settings(args.config_file)
    config_file = args.config_file
    handlers: dict[tuple[str, str | None], Callable[[], int]] = {
        ("journal", None): lambda: journal_view.show(settings, args),
        ("status", None): lambda: status_view.show(settings, args.json),
        ("spool", "list"): lambda: spool_view.list_records(settings, args.json),
        ("spool", "show"): lambda: spool_view.show_record(settings, args.record_id, args.json),
        ("spool", "export"): lambda: spool_view.export_records(settings, args.ndjson),
        ("spool", "flush"): lambda: flush(settings),
        ("spool", "purge"): lambda: purge(settings),
        ("config", "show"): lambda: config_show(settings, args),
        ("opt-in", None): lambda: optin.opt_in(settings, config_file, not args.no_start),
        ("opt-out", None): lambda: optin.opt_out(
            settings, config_file, not args.no_stop, args.keep_spool
        ),
        ("start", None): lambda: unit_control("start", config_file),
        ("stop", None): lambda: unit_control("stop", config_file),
        ("restart", None): lambda: unit_control("restart", config_file),
        ("is-active", None): lambda: is_active(config_file),
        ("reload", None): lambda: reload(config_file),
    }
    action = getattr(args, "spool_command", None) or getattr(args, "config_command", None)
    return handlers[(args.command, action)]()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except ConfigError as exc:
        print(f"telemctl: {exc.message}", file=sys.stderr)
        return EX_CONFIG
    except TelemetryError as exc:
        print(f"telemctl: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0  # `telemctl journal | head`
