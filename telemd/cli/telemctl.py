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
from telemd.cli import journal_view, spool_view
from telemd.config import Settings, load_settings, setting_names, validate_file
from telemd.errors import ConfigError, TelemetryError

EX_CONFIG = 78


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

    journal = commands.add_parser("journal", help="what became of each record")
    journal_view.add_arguments(journal)

    spool = commands.add_parser("spool", help="records waiting for delivery")
    spool_commands = spool.add_subparsers(dest="spool_command", metavar="ACTION", required=True)
    spool_list = spool_commands.add_parser("list", help="list spooled records")
    spool_list.add_argument("--json", action="store_true")
    spool_show = spool_commands.add_parser("show", help="one spooled record with its payload")
    spool_show.add_argument("record_id")
    spool_show.add_argument("--json", action="store_true")

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
    handlers: dict[tuple[str, str | None], Callable[[], int]] = {
        ("journal", None): lambda: journal_view.show(settings, args),
        ("spool", "list"): lambda: spool_view.list_records(settings, args.json),
        ("spool", "show"): lambda: spool_view.show_record(settings, args.record_id, args.json),
        ("config", "show"): lambda: config_show(settings, args),
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
