"""The collector's settings: built once from a TOML file, the environment and flags.

Precedence, lowest first: built-in defaults < the TOML file (`--config`, else
$TELEMD_COLLECTOR_CONFIG, else /etc/telemetrics/collector.toml if present) <
TELEMD_COLLECTOR_<KEY> environment variables < command-line flags. Every value
is checked here, and a bad one raises ConfigError naming where it came from
(file and key, variable or flag), the value and what was expected.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from telemd.collector.events.model import DEFAULT_FAILURE_EVENTS
from telemd.collector.ingest.records import CLEAR_LINUX_TID
from telemd.errors import ConfigError, RecordError
from telemd.record import validate_classification
from telemd.tomlfile import read_toml
from telemd.urlcheck import host_problem

SYSTEM_CONFIG = "/etc/telemetrics/collector.toml"
CONFIG_ENV = "TELEMD_COLLECTOR_CONFIG"
ENV_PREFIX = "TELEMD_COLLECTOR_"
DEFAULT_DB = "sqlite:////var/lib/telemd/collector.db"
# Four times telemd's own payload cap, so a daemon configured with a larger
# cap is still served; the batch body limit (4 MiB) bounds everything anyway.
DEFAULT_MAX_PAYLOAD_SIZE = 32768
MAX_BODY_SIZE = 4 * 1024 * 1024
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")
INGEST_AUTH_MODES = ("none", "token", "mtls")
# Far above what a machine sends (a few records an hour), far below what
# one client needs to crowd out the others.
DEFAULT_INGEST_RATE_LIMIT = 200.0


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    db: str = DEFAULT_DB
    host: str = "127.0.0.1"
    port: int = 8080
    tids: frozenset[str] = frozenset({CLEAR_LINUX_TID})
    certfile: str | None = None
    keyfile: str | None = None
    max_payload_size: int = DEFAULT_MAX_PAYLOAD_SIZE
    retention_days: int = 0
    retention: Mapping[str, int] = field(default_factory=dict)
    purge_interval: float = 3600.0
    log_level: str = "info"
    # Plain HTTP beyond loopback sends machine ids in clear text: opt in.
    allow_insecure_http: bool = False
    # Slow and surplus connections (telemd/collector/server/connections.py).
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive_timeout: int = 5
    max_connections: int = 4096
    # Who may post records: anyone with the TID (Clear's backend), an ingest
    # token, or a client certificate signed by client_ca.
    ingest_auth: str = "none"
    client_ca: str | None = None
    # Ingest requests a second per client (token, certificate or address); 0 = no limit.
    ingest_rate_limit: float = DEFAULT_INGEST_RATE_LIMIT
    # Problems and their counts, kept at ingest (telemd/collector/problems/).
    rollups: bool = True
    # Event names that count as failures (Vrooli's summary, --level error).
    failure_events: frozenset[str] = frozenset(DEFAULT_FAILURE_EVENTS)

    @property
    def tls(self) -> bool:
        return self.certfile is not None


# A raw value and a phrase saying where it came from, for error messages.
Raw = tuple[object, str]


def _fail(where: str, expected: str, value: object) -> ConfigError:
    return ConfigError(f"{where} must be {expected}, got {value!r}")


def _int(low: int, high: int) -> Callable[[object, str], int]:
    def convert(value: object, where: str) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _fail(where, f"an integer in {low}..{high}", value)
        return value

    return convert


def _seconds(value: object, where: str) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = -1.0
    if isinstance(value, bool) or not 1 <= seconds <= 7 * 86400:
        raise _fail(where, "a number of seconds in 1..604800", value)
    return seconds


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, "a non-empty string", value)
    return value.strip()


def _host(value: object, where: str) -> str:
    host = _text(value, where)
    problem = host_problem(host)
    if problem:
        raise ConfigError(f"{_fail(where, 'an IP address or a host name', host)}: {problem}")
    return host


def _db(value: object, where: str) -> str:
    url = _text(value, where)
    if not url.startswith(("sqlite:///", "postgresql://", "postgres://")):
        raise _fail(where, "a URL sqlite:///PATH or postgresql://...", _without_password(url))
    if url.startswith("postgres"):
        try:
            port = urlsplit(url).port
            problem = "port 0 cannot be connected to" if port == 0 else ""
        except ValueError as exc:  # a port beyond 65535 or not a number; a bad bracket
            problem = str(exc)
        if problem:
            expected = "a URL postgresql://USER@HOST[:PORT]/DB"
            raise ConfigError(f"{_fail(where, expected, _without_password(url))}: {problem}")
    return url


def _without_password(url: str) -> str:
    """`url` fit for an error message: the user info, which may hold a password, left out."""
    scheme, sep, rest = url.partition("://")
    return scheme + sep + rest.rpartition("@")[2] if sep else url.rpartition("@")[2]


def _path(value: object, where: str) -> str:
    path = _text(value, where)
    try:
        with open(path, "rb"):
            pass
    except OSError as exc:
        raise ConfigError(f"{_fail(where, 'a readable file', path)}: {exc.strerror}") from None
    return path


def _tids(value: object, where: str) -> frozenset[str]:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise _fail(where, "one or more telemetry ids (UUIDs)", value)
    tids = set()
    for item in items:
        try:
            tids.add(str(uuid.UUID(str(item))))
        except ValueError:
            raise _fail(where, "a telemetry id, a UUID like " + CLEAR_LINUX_TID, item) from None
    return frozenset(tids)


def _level(value: object, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in LOG_LEVELS:
        raise _fail(where, "one of " + ", ".join(LOG_LEVELS), value)
    return value.lower()


def _bool(value: object, where: str) -> bool:
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    if not isinstance(value, bool):
        raise _fail(where, "true or false", value)
    return value


def _retention(value: object, where: str) -> dict[str, int]:
    if isinstance(value, str):  # the environment's "CLASS=DAYS,CLASS=DAYS"
        value = dict(item.partition("=")[::2] for item in value.split(",") if item)
    if not isinstance(value, dict):
        raise _fail(where, "a table of classification = days", value)
    table = {}
    for classification, days in value.items():
        try:
            validate_classification(classification)
        except RecordError as exc:
            raise ConfigError(f"{where}: {exc.message}") from None
        table[classification] = _int(0, 100_000)(days, f"{where} {classification!r}")
    return table


def _ingest_auth(value: object, where: str) -> str:
    if not isinstance(value, str) or value.lower() not in INGEST_AUTH_MODES:
        raise _fail(where, "one of " + ", ".join(INGEST_AUTH_MODES), value)
    return value.lower()


def _rate(value: object, where: str) -> float:
    try:
        rate = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        rate = -1.0
    if isinstance(value, bool) or not 0 <= rate <= 1_000_000:
        raise _fail(where, "requests a second in 0..1000000 (0 = no limit)", value)
    return rate


def _names(value: object, where: str) -> frozenset[str]:
    items = value.replace(",", " ").split() if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(
        isinstance(item, str) and item.strip() for item in items
    ):
        raise _fail(where, "a list of event names", value)
    return frozenset(item.strip() for item in items)


CONVERTERS: dict[str, Callable[[object, str], Any]] = {
    "db": _db,
    "host": _host,
    "port": _int(1, 65535),
    "tid": _tids,
    "certfile": _path,
    "keyfile": _path,
    "max_payload_size": _int(1, MAX_BODY_SIZE),
    "retention_days": _int(0, 100_000),
    "retention": _retention,
    "purge_interval": _seconds,
    "log_level": _level,
    "allow_insecure_http": _bool,
    "header_timeout": _seconds,
    "body_timeout": _seconds,
    "keep_alive_timeout": _int(1, 3600),
    "max_connections": _int(1, 1_000_000),
    "ingest_auth": _ingest_auth,
    "client_ca": _path,
    "ingest_rate_limit": _rate,
    "rollups": _bool,
    "failure_events": _names,
}


def read_file(path: str) -> dict[str, Raw]:
    data = read_toml(path)
    for key in data:
        if key not in CONVERTERS:
            raise ConfigError(f"unknown key {key!r} in {path}; known: {', '.join(CONVERTERS)}")
    return {key: (value, f"{key} in {path}") for key, value in data.items()}


def read_environ(environ: Mapping[str, str]) -> dict[str, Raw]:
    raw: dict[str, Raw] = {}
    for key in CONVERTERS:
        name = ENV_PREFIX + key.upper()
        if environ.get(name):
            raw[key] = (environ[name], f"environment variable {name}")
    return raw


def load(
    flags: Mapping[str, Raw],
    config_file: str | None = None,
    environ: Mapping[str, str] = os.environ,
) -> CollectorConfig:
    """Merge file < environment < flags into a checked CollectorConfig."""
    path = config_file or environ.get(CONFIG_ENV)
    if not path and os.path.isfile(SYSTEM_CONFIG):
        path = SYSTEM_CONFIG
    raw = read_file(path) if path else {}
    raw.update(read_environ(environ))
    raw.update(flags)
    values = {key: CONVERTERS[key](value, where) for key, (value, where) in raw.items()}
    if ("certfile" in values) != ("keyfile" in values):
        raise ConfigError("certfile and keyfile must be given together, for HTTPS")
    if "client_ca" in values and "certfile" not in values:
        raise ConfigError("client_ca needs certfile and keyfile: client certificates need HTTPS")
    if values.get("ingest_auth") == "mtls" and "client_ca" not in values:
        raise ConfigError("ingest_auth = mtls needs client_ca, the CA of the client certificates")
    if "certfile" in values:
        _check_certificate(raw["certfile"][1], values["certfile"], values["keyfile"])
    if "tid" in values:
        values["tids"] = values.pop("tid")
    return CollectorConfig(**values)


def _check_certificate(where: str, certfile: str, keyfile: str) -> None:
    """Load the pair as the server will, so that a bad one is a configuration error."""
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(certfile, keyfile)
    except ssl.SSLError as exc:
        # OpenSSL's PEM_LIB says only that reading the PEM data failed.
        reason = (
            "no PEM certificate and key could be read"
            if exc.reason in (None, "PEM_LIB")
            else (str(exc.reason).lower().replace("_", " "))
        )
        raise ConfigError(
            f"{_fail(where, 'a PEM certificate matching keyfile ' + repr(keyfile), certfile)}"
            f": {reason}"
        ) from None


def check_listening(config: CollectorConfig) -> None:
    """Refuse plain HTTP on an address other hosts can reach, unless allowed."""
    if config.tls or config.allow_insecure_http:
        return
    try:
        loopback = ipaddress.ip_address(config.host).is_loopback
    except ValueError:
        loopback = config.host == "localhost"
    if not loopback:
        raise ConfigError(
            f"host {config.host} is not a loopback address: give certfile and keyfile to "
            "serve HTTPS there, or set allow_insecure_http = true (behind a TLS proxy)"
        )
