"""The daemon's settings: read once at start, checked against one table, frozen.

Built-in defaults are overridden by each file of `telemd.paths.config_chain`,
lowest precedence first. Files are flat TOML, or Clear Linux's legacy INI
(`[settings]`, `key=value`) when the name ends in `.conf`. Every error names
the file, the key, the value and what was expected. This module only reads
files; it never writes one, and it never acts on the settings it reads.
"""

from __future__ import annotations

import configparser
import difflib
import logging
import os
import re
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from telemd import paths
from telemd.errors import ConfigError
from telemd.keys import (
    ETC_DIR,
    NO_PRIVACY_FILTERS_FILE,
    OPT_IN_FILE,
    PROBE_KEYS,
    SOCKET_PATH,
    STATE_DIR,
    Key,
    check,
    error,
    expected,
)
from telemd.tomlfile import read_text, read_toml
from telemd.urlcheck import url_problem

log = logging.getLogger("telemd.config")

_LEVELS = ("debug", "info", "warning", "error")
_TID = "X-Telemetry-TID: 6907c830-eed9-4ce9-81ae-76daf8d88f0f"

# Clear Linux's keys, with Clear's meaning; the only keys legacy INI files may set.
CLEAR_KEYS: tuple[Key, ...] = (
    Key("server", "url", "", "Collector URL; empty keeps every record in the spool."),
    SOCKET_PATH,
    Key("spool_dir", "path", "/var/spool/telemetry", "Directory of records not yet delivered."),
    Key("cainfo", "optional_path", "", "CA bundle for the collector; empty uses the system CAs."),
    Key("tidheader", "header", _TID, "HTTP header sent with every record."),
    Key("record_expiry", "int", 1200, "Spooled records older than this are deleted.", "minutes", 1),
    Key("spool_max_size", "int", 5120, "Most space the spool may use.", "KiB", 1, off=True),
    Key(
        "spool_process_time",
        "int",
        120,
        "Accepted for Clear's files; telemd retries with backoff (retry_initial, retry_max).",
        "seconds",
        1,
        3600,
    ),
    Key("rate_limit_enabled", "bool", True, "Master switch of the two rate limits below."),
    Key("record_burst_limit", "int", 1000, "Records accepted per record window.", "", 1, off=True),
    Key("record_window_length", "int", 15, "Length of the record window.", "minutes", 1, 59),
    Key("byte_burst_limit", "int", -1, "Payload bytes per byte window.", "bytes", 1, off=True),
    Key("byte_window_length", "int", 20, "Length of the byte window.", "minutes", 1, 59),
    Key(
        "rate_limit_strategy",
        "choice",
        "spool",
        "What to do with records over a limit: spool them for later, or drop them.",
        choices=("spool", "drop"),
    ),
    Key(
        "record_retention_enabled",
        "bool",
        False,
        "Keep local copies of the last retention_count payloads.",
    ),
    Key("record_server_delivery_enabled", "bool", True, "Send records; false keeps them local."),
    Key("daemon_recycling_enabled", "bool", True, "Exit when idle; the socket starts it again."),
)
# telemd's own keys.
OWN_KEYS: tuple[Key, ...] = (
    OPT_IN_FILE,
    Key(
        "static_machine_id_file",
        "path",
        ETC_DIR + "opt-in-static-machine-id",
        "If this file exists, it holds a fixed machine id used instead of a rotating one.",
    ),
    NO_PRIVACY_FILTERS_FILE,
    STATE_DIR,
    Key(
        "control_socket_path",
        "socket",
        "/run/telemd/control",
        "Socket telemctl talks to; anyone may read status, only root or the daemon's"
        " user or group may change state.",
    ),
    Key(
        "idle_exit_after",
        "float",
        600.0,
        "When socket-activated with recycling on: exit after this long idle with an empty spool.",
        "seconds",
        0,
        86400,
        low_exclusive=True,
    ),
    Key("socket_mode", "mode", 0o666, "Permissions of the probe socket."),
    Key("max_clients", "int", 512, "Probe connections served at once.", "", 1, 65536),
    Key(
        "max_uid_connections",
        "int",
        128,
        "Probe connections one user may hold open at once.",
        "",
        1,
        65536,
    ),
    Key(
        "client_timeout",
        "float",
        5.0,
        "Time a probe has to finish sending a frame.",
        "seconds",
        0,
        3600,
        low_exclusive=True,
    ),
    Key("max_payload_size", "int", 8192, "Largest payload accepted.", "bytes", 1, 1048576),
    Key(
        "uid_records_per_minute",
        "int",
        1000,
        "Records each user may send per minute.",
        "",
        1,
        off=True,
    ),
    Key("log_level", "choice", "info", "Least severe messages logged.", choices=_LEVELS),
    Key(
        "event_loop",
        "choice",
        "auto",
        "The daemon's event loop: auto (uvloop when installed, else asyncio's), uvloop, asyncio.",
        choices=("auto", "uvloop", "asyncio"),
    ),
    Key(
        "post_format",
        "choice",
        "headers",
        "Request format: headers (telemetrics-backend), json (as Clear 2.4.x), ndjson (batches).",
        choices=("headers", "json", "ndjson"),
    ),
    Key("http2", "bool", False, "Use HTTP/2 to the collector (needs the h2 package)."),
    Key("max_in_flight", "int", 4, "Requests to the collector at once.", "", 1, 64),
    Key("batch_max_records", "int", 500, "Most records in one ndjson request.", "", 1, 10000),
    Key(
        "batch_max_bytes",
        "int",
        1048576,
        "Most bytes in one ndjson request.",
        "bytes",
        1024,
        4194304,
    ),
    Key("tls_client_cert", "optional_path", "", "Client certificate for mutual TLS."),
    Key("tls_client_key", "optional_path", "", "Key of the client certificate."),
    Key(
        "collector_token_file",
        "optional_path",
        "",
        "File holding the collector's token, sent as Authorization: Bearer; "
        "readable by root and the daemon only.",
    ),
    Key(
        "retry_initial",
        "float",
        1.0,
        "First retry delay after a failure; doubles per failure.",
        "seconds",
        0,
        3600,
        low_exclusive=True,
    ),
    Key(
        "retry_max",
        "float",
        300.0,
        "Longest retry delay (a server's Retry-After may ask for more).",
        "seconds",
        0,
        86400,
        low_exclusive=True,
    ),
    Key(
        "connect_timeout",
        "float",
        5.0,
        "Time to connect to the collector.",
        "seconds",
        0,
        600,
        low_exclusive=True,
    ),
    Key(
        "request_timeout",
        "float",
        10.0,
        "Time for a whole request to the collector.",
        "seconds",
        0,
        3600,
        low_exclusive=True,
    ),
    Key("retention_count", "int", 100, "Payloads kept by record retention.", "", 1, 100000),
    Key(
        "journal_max_entries",
        "int",
        10000,
        "Record fates kept in the journal.",
        "",
        100,
        10000000,
    ),
)
KEYS = CLEAR_KEYS + OWN_KEYS + PROBE_KEYS
TLS_FILE_KEYS = ("cainfo", "tls_client_cert", "tls_client_key")
_BY_NAME = {key.name: key for key in KEYS}


@dataclass(frozen=True, slots=True)
class Settings:
    """Checked settings, ready to use.

    Durations are float seconds, whatever unit the file uses: `record_expiry`,
    `record_window_length` and `byte_window_length` are written in minutes
    (as in Clear Linux) and converted; `spool_process_time` and
    `client_timeout` are written in seconds. `spool_max_size` is KiB,
    `byte_burst_limit` and `max_payload_size` are bytes; -1 means "no limit"
    where the key allows it. `sources` maps each key to the file it came from,
    or "default".
    """

    server: str
    socket_path: str
    spool_dir: str
    cainfo: str
    tidheader: str
    record_expiry: float
    spool_max_size: int
    spool_process_time: float
    rate_limit_enabled: bool
    record_burst_limit: int
    record_window_length: float
    byte_burst_limit: int
    byte_window_length: float
    rate_limit_strategy: Literal["spool", "drop"]
    record_retention_enabled: bool
    record_server_delivery_enabled: bool
    daemon_recycling_enabled: bool
    opt_in_file: str
    static_machine_id_file: str
    no_privacy_filters_file: str
    state_dir: str
    control_socket_path: str
    idle_exit_after: float
    socket_mode: int
    max_clients: int
    max_uid_connections: int
    client_timeout: float
    max_payload_size: int
    uid_records_per_minute: int
    log_level: Literal["debug", "info", "warning", "error"]
    event_loop: Literal["auto", "uvloop", "asyncio"]
    post_format: Literal["headers", "json", "ndjson"]
    http2: bool
    max_in_flight: int
    batch_max_records: int
    batch_max_bytes: int
    tls_client_cert: str
    tls_client_key: str
    collector_token_file: str
    retry_initial: float
    retry_max: float
    connect_timeout: float
    request_timeout: float
    retention_count: int
    journal_max_entries: int
    crash_max_core_size: int
    crash_include_cmdline: bool
    crash_dedup_window: float
    crash_unwind_timeout: float
    journal_lines: int
    journal_ignore_units: tuple[str, ...]
    pstore_dir: str
    pstore_keep: bool
    klog_quiet_period: float
    sources: Mapping[str, str] = field(compare=False, repr=False)


def setting_names() -> tuple[str, ...]:
    """Every key, in the order of the documentation."""
    return tuple(key.name for key in KEYS)


def load_settings(
    config_file: str | None = None,
    environ: Mapping[str, str] = os.environ,
    *,
    open_files: bool = False,
) -> Settings:
    """Merge the defaults and every file of the chain; raise ConfigError on the first error.

    `open_files` also opens the TLS files the settings name (`tls_file_errors`):
    the daemon does, since it will use them; telemctl does not, since the user
    running it may not be allowed to read them.
    """
    values: dict[str, Any] = {key.name: check(key, key.default) for key in KEYS}
    sources = dict.fromkeys(values, "default")
    for path in paths.config_chain(config_file, environ):
        found, errors = _read_and_check(path)
        if errors:
            raise ConfigError(errors[0])
        values.update(found)
        sources.update(dict.fromkeys(found, path))
    if values["collector_token_file"]:
        check_secret_file(values["collector_token_file"], sources["collector_token_file"])
    if open_files:
        errors = tls_file_errors(values, sources)
        if errors:
            raise ConfigError(errors[0])
    return Settings(**values, sources=MappingProxyType(sources))


def check_secret_file(path: str, source: str) -> None:
    """Refuse a secret that other users can read or change (stat only: any user may check)."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"collector_token_file in {source}: {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"collector_token_file in {source}: {path} is not a regular file")
    if mode & 0o007:
        raise ConfigError(
            f"collector_token_file in {source}: {path} is open to other users "
            f"(mode {stat.S_IMODE(mode):04o}); fix with 'chmod o-rwx {path}'"
        )


def validate_file(path: str) -> list[str]:
    """Every error in one file, as one-line messages; empty if the file is valid."""
    values, errors = _read_and_check(path)
    # Only whether they open: the rest of a TLS setup may come from other files.
    return errors + unreadable_file_errors(values, dict.fromkeys(values, path))


def tls_file_errors(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[str]:
    """What is wrong with the TLS files of complete settings: each must open and hold
    PEM data of its kind, and a client key needs its certificate."""
    errors = unreadable_file_errors(values, sources)
    if errors:
        return errors
    cainfo, cert, key = (values[name] for name in TLS_FILE_KEYS)
    if key and not cert:
        return [
            f"{sources['tls_client_key']}: tls_client_key must be empty while tls_client_cert"
            f" is (mutual TLS needs both), got {key!r}"
        ]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cainfo:
        try:
            context.load_verify_locations(cafile=cainfo)
        except ssl.SSLError as exc:
            expected = "a PEM bundle of CA certificates"
            errors.append(_file_error(sources["cainfo"], "cainfo", cainfo, expected, _reason(exc)))
    if cert:
        try:
            context.load_cert_chain(cert, key or None)
        except ssl.SSLError as exc:
            expected = "a PEM certificate" + (" matching tls_client_key" if key else " and its key")
            source = sources["tls_client_cert"]
            errors.append(_file_error(source, "tls_client_cert", cert, expected, _reason(exc)))
    return errors


def unreadable_file_errors(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[str]:
    """One message per TLS file named in `values` that cannot be opened for reading."""
    return [
        _file_error(sources[name], name, values[name], "a readable file", problem)
        for name in TLS_FILE_KEYS
        if values.get(name) and (problem := _unreadable(values[name]))
    ]


def render_default_file() -> str:
    """The shipped telemetrics.toml: every key commented out with its default."""
    lines = [
        "# telemd configuration. Each setting below is commented out and shows its",
        "# built-in default; uncomment a line and change the value to override it.",
        f"# This file ({paths.SYSTEM_CONFIG}) overrides",
        f"# {paths.DEFAULTS_CONFIG}; `telemd -f FILE` or",
        f"# ${paths.CONFIG_ENV} override this file. Clear Linux's telemetrics.conf is",
        "# read only when this file does not exist.",
    ]
    for key in KEYS:
        lines += ["", f"# {key.doc}", f"# Must be {expected(key)}.", f"#{key.name} = {_toml(key)}"]
    return "\n".join(lines) + "\n"


def _read_and_check(path: str) -> tuple[dict[str, Any], list[str]]:
    """The valid values of one file, and one message per error in it."""
    legacy = paths.is_legacy_config(path)
    try:
        raw = _read_ini(path) if legacy else read_toml(path)
    except ConfigError as exc:
        return {}, [exc.message]
    values: dict[str, Any] = {}
    errors: list[str] = []
    ignored: list[str] = []
    for name, value in raw.items():
        key = _BY_NAME.get(name)
        if isinstance(value, dict):
            errors.append(f"{path}: key {name!r} is a table; only key = value lines are allowed")
        elif key is None or (legacy and key not in CLEAR_KEYS):
            if legacy:
                ignored.append(name)
            else:
                close = difflib.get_close_matches(name, _BY_NAME, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                errors.append(f"{path}: unknown key {name!r}{hint}")
        else:
            try:
                values[name] = check(key, _from_ini(key, value) if legacy else value)
            except ValueError:
                errors.append(error(path, key, value))
                continue
            problem = url_problem(values[name]) if key.kind == "url" and values[name] else None
            if problem:
                del values[name]
                errors.append(f"{error(path, key, value)}: {problem}")
    if legacy:
        unused = f"; ignored keys it does not know: {', '.join(ignored)}" if ignored else ""
        log.warning(
            "read Clear Linux's legacy configuration %s%s; move these settings to a TOML "
            "file such as %s",
            path,
            unused,
            paths.SYSTEM_CONFIG,
        )
    return values, errors


def _unreadable(path: str) -> str | None:
    """Why `path` cannot be read as a file, or None."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def _reason(exc: ssl.SSLError) -> str:
    # OpenSSL's PEM_LIB says only that the PEM reading failed.
    if exc.reason in (None, "PEM_LIB"):
        return "no PEM data of that kind could be read from it"
    return str(exc.reason).lower().replace("_", " ")


def _file_error(source: str, name: str, value: str, expected: str, problem: str) -> str:
    return f"{source}: {name} must be {expected}, got {value!r}: {problem}"


def _read_ini(path: str) -> dict[str, Any]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    try:
        parser.read_string(read_text(path), source=path)
    except configparser.Error as exc:
        raise ConfigError(f"{path}: invalid INI file: {' '.join(str(exc).split())}") from exc
    return dict(parser["settings"]) if parser.has_section("settings") else {}


_INI_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _from_ini(key: Key, text: str) -> object:
    """Type an INI string the way its key expects; text that does not fit stays text."""
    if key.kind == "bool":
        return _INI_BOOLS.get(text.lower(), text)
    if key.kind == "int" and re.fullmatch(r"[+-]?[0-9]+", text):
        return int(text)
    return text


def _toml(key: Key) -> str:
    """The default of `key` as a TOML value."""
    value = key.default
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and key.kind == "mode":
        return f"0o{value:03o}"
    if isinstance(value, str):
        return f'"{value}"'  # no default needs escaping; the shipped-file test checks it
    if isinstance(value, tuple):
        return "[" + ", ".join(f'"{item}"' for item in value) + "]"
    return repr(value)
