"""`telemd-collector`: serve (the default), query, summary, events, migrate and token.

Exit status: 0 success, 1 failure (database unreachable, port taken), 2 usage,
78 bad configuration; failures print one line naming what to fix.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

from telemd import __version__
from telemd.collector import config as collector_config
from telemd.collector.access import token_store
from telemd.collector.access.tokens import Scope, check_name, parse_scopes
from telemd.collector.config import CollectorConfig, Raw
from telemd.collector.events import cli as events_cli
from telemd.collector.ingest.records import FieldError
from telemd.collector.problems import cli as problems_cli
from telemd.collector.store import export
from telemd.collector.store.base import SearchTimeout, StorageError, Store, open_engine
from telemd.collector.store.export import EXPORT_FORMATS
from telemd.collector.store.query import (
    FILTER_NAMES,
    RecordQuery,
    parse_query,
    parse_since,
    record_json,
)
from telemd.errors import ConfigError

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_CONFIG = 0, 1, 2, 78
COMMANDS = (
    "serve",
    "query",
    "summary",
    "events",
    "migrate",
    "token",
    "import",
    *problems_cli.COMMANDS,
)
# Flags that map one-to-one onto configuration keys.
SERVE_FLAGS = (
    "host",
    "port",
    "certfile",
    "keyfile",
    "max_payload_size",
    "retention_days",
    "purge_interval",
    "log_level",
    "allow_insecure_http",
    "header_timeout",
    "body_timeout",
    "keep_alive_timeout",
    "max_connections",
    "ingest_auth",
    "client_ca",
    "ingest_rate_limit",
    "rollups",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="telemd-collector",
        description="Receive telemd records over HTTP(S) and store them in SQLite or PostgreSQL.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", metavar="FILE", help="TOML configuration file")
        sub.add_argument("--db", help="sqlite:///PATH or postgresql://USER@HOST/DB")
        return sub

    serve = command("serve", "Run the collector (the default command).")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", help="TCP port (default 8080)")
    serve.add_argument(
        "--tid", action="append", metavar="UUID", help="accepted telemetry id (repeatable)"
    )
    serve.add_argument("--certfile", help="TLS certificate (PEM); with --keyfile, serve HTTPS")
    serve.add_argument("--keyfile", help="TLS private key (PEM)")
    serve.add_argument("--max-payload-size", help="largest payload in bytes (default 32768)")
    serve.add_argument("--retention-days", help="delete records older than this; 0 = keep")
    serve.add_argument(
        "--retention",
        action="append",
        metavar="CLASS=DAYS",
        help="retention for one classification (repeatable)",
    )
    serve.add_argument("--purge-interval", help="seconds between retention purges")
    serve.add_argument("--log-level", help="critical, error, warning, info or debug")
    serve.add_argument(
        "--allow-insecure-http",
        action="store_const",
        const=True,
        help="serve plain HTTP on a non-loopback address (behind a TLS proxy)",
    )
    serve.add_argument(
        "--header-timeout",
        help="seconds a TLS handshake, and then a request head, may take (default 10)",
    )
    serve.add_argument(
        "--body-timeout",
        help="seconds a request body may take to arrive, or an answer wait unread (default 60)",
    )
    serve.add_argument(
        "--keep-alive-timeout", help="seconds an idle connection is kept open (default 5)"
    )
    serve.add_argument(
        "--max-connections", help="connections served at once; beyond, the slowest is shed"
    )

    serve.add_argument(
        "--ingest-auth",
        choices=("none", "token", "mtls"),
        help="who may post records: anyone (default), an ingest token, a client certificate",
    )
    serve.add_argument("--client-ca", metavar="FILE", help="ask for client certificates of this CA")
    serve.add_argument(
        "--ingest-rate-limit", metavar="N", help="ingest requests a second per client; 0 = none"
    )

    serve.add_argument(
        "--no-rollups",
        dest="rollups",
        action="store_const",
        const=False,
        help="store records without grouping them into problems or counting them",
    )

    query = command("query", "Print stored records, newest first.")
    for name in FILTER_NAMES:
        query.add_argument("--" + name.replace("_", "-"), metavar=name.upper())
    query.add_argument(
        "--format",
        choices=("table", "json", *EXPORT_FORMATS),
        default="table",
        help="csv and ndjson print the whole result, not one page",
    )

    summary = command("summary", "Print counts per classification and machine.")
    summary.add_argument("--since", help="unix seconds or ISO-8601 time")
    summary.add_argument("--format", choices=("table", "json"), default="table")

    events = command("events", "Print stored events (shuttle, Vrooli, any app), newest first.")
    events_cli.add_arguments(events)

    command("migrate", "Apply the database schema migrations, then exit.")
    problems_cli.add_commands(command)

    importing = command("import", "Load records exported by `telemctl spool export --ndjson`.")
    importing.add_argument("file", metavar="FILE", help="one record a line; - for stdin")

    token = command("token", "Create, list or revoke access tokens.")
    actions = token.add_subparsers(dest="action", metavar="ACTION", required=True)
    create = actions.add_parser("create", help="make a token and print it (shown once)")
    create.add_argument("--name", required=True, help="what the token is for, e.g. grafana")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=[s.value for s in Scope],
        help="ingest, read or admin (repeatable)",
    )
    listing = actions.add_parser("list", help="name, scopes, created, last used (never the token)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    revoke = actions.add_parser("revoke", help="make a token useless at once")
    revoke.add_argument("name")
    for sub in (create, listing, revoke):  # also after the action: `token list --db ...`
        sub.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
        sub.add_argument("--db", default=argparse.SUPPRESS)
    return parser


def load_config(args: argparse.Namespace) -> CollectorConfig:
    flags: dict[str, Raw] = {}
    for name in ("db", *SERVE_FLAGS):
        value = getattr(args, name, None)
        if value is not None:
            flags[name] = (value, f"option --{name.replace('_', '-')}")
    if getattr(args, "tid", None):
        flags["tid"] = (args.tid, "option --tid")
    if getattr(args, "retention", None):
        table: dict[str, object] = {}
        for item in args.retention:
            classification, sep, days = item.partition("=")
            if not sep:
                raise ConfigError(f"option --retention must be CLASS=DAYS, got {item!r}")
            table[classification] = days
        flags["retention"] = (table, "option --retention")
    return collector_config.load(flags, args.config)


def open_store(config: CollectorConfig) -> Store:
    store = Store(open_engine(config.db), with_rollups=config.rollups)
    store.migrate()
    return store


def serve(config: CollectorConfig) -> int:
    import uvicorn

    from telemd.collector.jsonstream.splitter import MAX_VALUE
    from telemd.collector.jsonstream.wsprotocol import CountingWSProtocol
    from telemd.collector.server.app import Collector, create_app
    from telemd.collector.server.connections import (
        LISTEN_BACKLOG,
        ConnectionLimits,
        fit_descriptor_limit,
        guarded_protocol,
    )
    from telemd.collector.server.handshake import HandshakeGuardedConfig

    collector_config.check_listening(config)
    client_certs: dict[str, Any] = {}
    if config.client_ca:
        # Optional at the handshake: readers come with tokens, and only
        # ingest_auth = mtls makes a certificate a must.
        client_certs = {
            "ssl_ca_certs": config.client_ca,
            "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        }
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    store = open_store(config)
    limits = ConnectionLimits(
        header_timeout=config.header_timeout,
        body_timeout=config.body_timeout,
        max_connections=fit_descriptor_limit(config.max_connections),
    )
    # TLS handshakes run under the connection guard too, not asyncio's own
    # (60 s each, and not counted): see telemd.collector.server.handshake.
    uvicorn_config = HandshakeGuardedConfig(
        create_app(Collector(config, store)),
        host=config.host,
        port=config.port,
        ssl_certfile=config.certfile,
        ssl_keyfile=config.keyfile,
        log_level=config.log_level,
        # The handler set up above takes uvicorn's lines too: with its
        # own configuration (and before 0.18, its "uvicorn" logger passing
        # them on to the root) each line was written twice.
        log_config=None,
        access_log=False,
        server_header=False,
        lifespan="on",
        # h11, even where httptools is installed: h11 bounds a request's
        # head (16 KiB) and answers 400 beyond; uvicorn's httptools
        # protocol buffers headers without a limit. The guard adds head
        # and body deadlines and the connection cap; uvicorn's own
        # limit_concurrency is left unset, as it counts slow connections
        # and would answer 503 to everyone once they are many.
        http=guarded_protocol(limits, with_client_cert=bool(config.client_ca)),
        timeout_keep_alive=config.keep_alive_timeout,
        # A burst waits in the kernel's queue; what one turn of the loop
        # accepts has descriptors kept for it (fit_descriptor_limit).
        backlog=LISTEN_BACKLOG,
        # The Go client's WebSocket on `/`: wsproto, which works beside
        # h11, with pings counted and one event at most MAX_VALUE bytes.
        ws=CountingWSProtocol,
        ws_max_size=MAX_VALUE,
        **client_certs,
    )
    server = uvicorn.Server(uvicorn_config)
    # uvicorn drains on SIGTERM/SIGINT, then raises the signal again for the
    # handler that was in place before it; with this one, a drained shutdown
    # ends in exit status 0 rather than death by signal.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)
    try:
        # A socket of our own: uvicorn then names the scheme by its TLS files
        # (https) rather than by the context the guard took from it.
        server.run(sockets=[uvicorn_config.bind_socket()])
    except SystemExit:  # uvicorn's way to say it could not start (port taken, bad TLS files)
        pass
    finally:
        store.close()
    if not server.started:
        print(
            f"telemd-collector: could not serve on {config.host}:{config.port} (see above)",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    return EXIT_OK


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(v) for v in row] for row in (header, *rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )


def print_query(store: Store, args: argparse.Namespace) -> None:
    params = {n: getattr(args, n) for n in FILTER_NAMES if getattr(args, n) is not None}
    if args.format in EXPORT_FORMATS:
        if "limit" in params:
            raise FieldError("limit", "pages the table and json formats; csv and ndjson print all")
        print_export(store, args.format, parse_query(params, time.time()))
        return
    query = parse_query(params, time.time())
    records = [record_json(row) for row in store.records(query)]
    more = records[-1]["id"] if len(records) == query.limit else None
    if args.format == "json":
        print(json.dumps({"records": records, "next": more}, indent=1))
        return
    header = ("ID", "RECEIVED", "SEV", "CLASSIFICATION", "MACHINE", "BUILD", "RECORD_ID")
    rows = [
        (r["id"], r["received_at"], r["severity"], r["classification"], r["machine_id"],
         r["build"], r["record_id"])
        for r in records
    ]  # fmt: skip
    print(table(rows, header))
    if more is not None:
        print(f"(more: --before {more})")


def print_export(store: Store, fmt: str, query: RecordQuery) -> None:
    out = sys.stdout.buffer
    out.write(export.header(fmt))
    page: RecordQuery | None = export.first_page(query)
    while page is not None:
        rows = store.records(page)
        out.write(export.encode(fmt, rows))
        page = export.next_page(page, rows)
    out.flush()


def print_summary(store: Store, args: argparse.Namespace) -> None:
    report: dict[str, Any] = store.summary(parse_since(args.since) if args.since else None)
    if args.format == "json":
        print(json.dumps(report, indent=1))
        return
    header = ("CLASSIFICATION", "TOTAL", "LAST_SEEN", "SEV1", "SEV2", "SEV3", "SEV4")
    rows = [
        (c["classification"], c["total"], c["last_seen"],
         *(c["by_severity"].get(str(s), 0) for s in range(1, 5)))
        for c in report["classifications"]
    ]  # fmt: skip
    print(table(rows, header))
    print()
    print(table([(m["machine_id"], m["count"]) for m in report["machines"]], ("MACHINE", "TOTAL")))


def run_token(store: Store, args: argparse.Namespace) -> int:
    if args.action == "create":
        try:
            name = check_name(args.name)
            scopes = parse_scopes(args.scope)
        except ValueError as exc:
            print(f"telemd-collector: {exc}", file=sys.stderr)
            return EXIT_USAGE
        token = token_store.create(store, name, scopes, time.time())
        print(f"token {name!r} with scopes {', '.join(sorted(args.scope))}; it is shown only once:")
        print(token)
    elif args.action == "revoke":
        token_store.revoke(store, args.name)
        print(f"token {args.name!r} revoked")
    elif args.json:
        print(json.dumps({"tokens": [t.json() for t in token_store.list_tokens(store)]}, indent=1))
    else:
        rows = [
            (t.name, ",".join(sorted(s.value for s in t.scopes)), _when(t.created_at),
             _when(t.last_used_at) if t.last_used_at else "never")
            for t in token_store.list_tokens(store)
        ]  # fmt: skip
        print(table(rows, ("NAME", "SCOPES", "CREATED", "LAST_USED")))
    return EXIT_OK


def run_import(store: Store, config: CollectorConfig, path: str) -> int:
    from telemd.collector.ingest.importer import import_records
    from telemd.collector.ingest.records import CLEAR_LINUX_TID, Rules

    rules = Rules(config.tids, config.max_payload_size)
    # The file carries no telemetry id: its records take Clear's, or the first accepted.
    tid = CLEAR_LINUX_TID if CLEAR_LINUX_TID in config.tids else sorted(config.tids)[0]
    try:
        if path == "-":
            report = import_records(store, sys.stdin.buffer, tid=tid, rules=rules, now=time.time())
        else:
            with open(path, "rb") as file:
                report = import_records(store, file, tid=tid, rules=rules, now=time.time())
    except OSError as exc:
        print(f"telemd-collector: cannot read {path}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    for number, message in report.rejected:
        print(f"telemd-collector: {path}:{number}: {message}", file=sys.stderr)
    print(
        f"imported {report.stored} records, {report.duplicates} already stored, "
        f"{len(report.rejected)} rejected"
    )
    return EXIT_FAILURE if report.rejected else EXIT_OK


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or (
        args_list[0] not in COMMANDS and args_list[0] not in ("-h", "--help", "--version")
    ):
        args_list.insert(0, "serve")
    try:
        args = build_parser().parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        config = load_config(args)
        if args.command == "serve":
            return serve(config)
        store = open_store(config)
        try:
            if args.command == "query":
                print_query(store, args)
            elif args.command == "summary":
                print_summary(store, args)
            elif args.command == "events":
                events_cli.run(store, args, config.failure_events, sys.stdout)
            elif args.command == "token":
                return run_token(store, args)
            elif args.command == "import":
                return run_import(store, config, args.file)
            elif args.command in problems_cli.COMMANDS:
                return problems_cli.run(store, args, table)
            else:
                print(f"schema is at version {store.migrate()}")
        finally:
            store.close()
    except ConfigError as exc:
        print(f"telemd-collector: {exc.message}", file=sys.stderr)
        return EXIT_CONFIG
    except FieldError as exc:
        flag = "--" + exc.field.replace("_", "-")
        print(
            f"telemd-collector: {flag}: {exc.message.removeprefix(exc.field + ': ')}",
            file=sys.stderr,
        )
        return EXIT_USAGE
    except StorageError as exc:
        print(f"telemd-collector: database error: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except (SearchTimeout, token_store.TokenError) as exc:
        print(f"telemd-collector: {exc.message}", file=sys.stderr)
        return EXIT_FAILURE
    except BrokenPipeError:  # `telemd-collector query | head`
        return EXIT_OK
    except KeyboardInterrupt:  # the end of `events --follow`
        return EXIT_OK
    return EXIT_OK
