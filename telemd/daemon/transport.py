"""Requests to the collector: the three body formats, and the one httpx client.

Building a request is pure (`build_request`); sending it is `Transport.post`,
the only place telemd speaks HTTP. httpx is imported here and nowhere on the
probe path.

Formats (PROTOCOL.md section 3):
- `headers`: telemetrics-backend's API, one record per request, the record
  headers as HTTP headers and the payload as the body;
- `json`: one record per request as one JSON object of strings;
- `ndjson`: a batch, one JSON object per line with its `record_id`; the
  collector answers per record.
"""

from __future__ import annotations

import email.utils
import json
import os
import ssl
import time
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from telemd import __version__
from telemd.errors import ConfigError
from telemd.record import HEADER_NAMES

if TYPE_CHECKING:
    from telemd.config import Settings

Verdict = Literal["delivered", "retry", "rejected", "misconfigured"]

# 4xx answers about the request rather than the record it carries (wrong
# credentials, URL, method, proxy, content type or protocol): every record
# would get the same, so they wait for the configuration to be fixed.
REQUEST_LEVEL_STATUSES = frozenset({401, 403, 404, 405, 407, 411, 415, 421, 426})

HTTP_HEADER_NAMES = {
    name: "-".join(part.capitalize() for part in name.split("_")) for name in HEADER_NAMES
}
RECORD_ID_HEADER = "X-Telemetry-Record-Id"
USER_AGENT = f"telemd/{__version__}"
# Longest Retry-After honoured, so a confused server cannot park the queue for days.
RETRY_AFTER_CAP = 6 * 3600.0
_CONTROL = {code: " " for code in (*range(0x20), 0x7F)}
# Signs DMI and cpuinfo strings use that NFKD leaves alone.
_SIGNS = {ord("®"): "(R)", ord("©"): "(C)", ord("°"): " deg"}


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One spooled record on its way out."""

    seq: int
    record_id: str
    headers: dict[str, str]  # the 15 record headers, by header name
    payload: str
    received_at: float
    attempts: int
    size: int
    boot_id: str


@dataclass(frozen=True, slots=True)
class Request:
    content: bytes
    headers: dict[str, str]
    records: tuple[Outgoing, ...]


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: str
    retry_after: float | None


def _clean(value: str) -> str:
    # Host values come from files on the machine; no control character may
    # reach an HTTP header.
    return value.translate(_CONTROL)


def ascii_header(value: str) -> str:
    """`value` as ASCII for an HTTP header: accents dropped, ™ as TM, ® as (R), others as ?.

    telemetrics-backend refuses a record whose header values are not ASCII,
    and RFC 9110 leaves other bytes' meaning to the receiver.
    """
    value = _clean(value)
    if value.isascii():
        return value
    decomposed = unicodedata.normalize("NFKD", value.translate(_SIGNS))
    kept = "".join(c for c in decomposed if not unicodedata.combining(c))
    return _clean(kept.encode("ascii", "replace").decode())


def build_request(post_format: str, records: Sequence[Outgoing]) -> Request:
    if post_format == "headers":
        [record] = records
        headers = {
            HTTP_HEADER_NAMES[name]: ascii_header(value) for name, value in record.headers.items()
        }
        headers[RECORD_ID_HEADER] = record.record_id
        headers["Content-Type"] = "text/plain; charset=utf-8"
        return Request(record.payload.encode(), headers, tuple(records))
    if post_format == "json":
        [record] = records
        body = {**record.headers, "payload": record.payload}
        return Request(
            json.dumps(body, ensure_ascii=False).encode(),
            {"Content-Type": "application/json", RECORD_ID_HEADER: record.record_id},
            tuple(records),
        )
    lines = [ndjson_line(record) for record in records]
    return Request(
        ("\n".join(lines) + "\n").encode(),
        {"Content-Type": "application/x-ndjson"},
        tuple(records),
    )


def ndjson_line(record: Outgoing) -> str:
    """One record of the ndjson format (also what `telemctl spool export` writes)."""
    return json.dumps(
        {**record.headers, "payload": record.payload, "record_id": record.record_id},
        ensure_ascii=False,
    )


def request_size(request: Request) -> int:
    """Bytes posted: the body and the headers this request adds."""
    return len(request.content) + sum(len(k) + len(v) + 4 for k, v in request.headers.items())


def verdict(status: int, batch: bool = False) -> Verdict:
    """What an HTTP status means for the records of a request.

    Only a 4xx to a single record can be about that record: a batch is
    answered record by record in its results, so a 4xx to a whole batch
    (413 included) is about the request.
    """
    if 200 <= status < 300:
        return "delivered"
    if status in (408, 429) or status >= 500 or status < 400:
        return "retry"
    if batch or status in REQUEST_LEVEL_STATUSES:
        return "misconfigured"
    return "rejected"


def batch_verdicts(reply: Reply, records: Sequence[Outgoing]) -> dict[str, tuple[Verdict, str]]:
    """Per-record outcome of an ndjson batch answered 2xx.

    An answer with `results` settles the records it names; one it does not
    name is retried rather than assumed stored. An answer without results
    (a generic NDJSON endpoint) accepts the whole batch, and a plain count
    `n` the first n records.
    """
    body = reply.body.strip()
    if body.isascii() and body.isdigit() and len(body) <= 18:  # int() refuses 4300+ digits
        accepted = int(body)
        beyond: tuple[Verdict, str] = ("retry", "the collector counted fewer records")
        return {
            r.record_id: ("delivered", "") if i < accepted else beyond
            for i, r in enumerate(records)
        }
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    results = parsed.get("results") if isinstance(parsed, dict) else None
    if not isinstance(results, list):
        return {r.record_id: ("delivered", "") for r in records}
    by_id = {
        item.get("record_id"): item
        for item in results
        if isinstance(item, dict) and isinstance(item.get("record_id"), str)
    }
    outcome: dict[str, tuple[Verdict, str]] = {}
    for record in records:
        item = by_id.get(record.record_id)
        status = item.get("status") if item else None
        if status in ("stored", "duplicate"):
            outcome[record.record_id] = ("delivered", str(status))
        elif status == "rejected":
            outcome[record.record_id] = ("rejected", str(item.get("message", "")) if item else "")
        else:
            outcome[record.record_id] = ("retry", "the collector's answer did not mention it")
    return outcome


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(max(when.timestamp() - now, 0.0), RETRY_AFTER_CAP)


def tid_header(setting: str) -> tuple[str, str]:
    name, _, value = setting.partition(":")
    return name.strip(), value.strip()


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """System CAs, or the `cainfo` bundle; a client certificate for mutual TLS."""
    context = ssl.create_default_context(cafile=settings.cainfo or None)
    if settings.tls_client_cert:
        context.load_cert_chain(settings.tls_client_cert, settings.tls_client_key or None)
    return context


def read_token(path: str) -> str:
    """The collector token in `path` (load_settings checked who may read it)."""
    try:
        with open(path) as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"collector_token_file {path}: cannot read it: {exc}") from None
    if not token or any(c.isspace() or not c.isprintable() for c in token):
        raise ConfigError(f"collector_token_file {path} must hold one token on one line")
    return token


class TransportError(Exception):
    """The request did not get an HTTP answer (connection refused, timeout, TLS)."""


class Transport:
    """One httpx connection pool for the daemon's life: keep-alive, optional HTTP/2.

    Requests go straight to httpx's transport: the client layer above it
    (cookie jar, redirects, auth, event hooks) does nothing a telemetry post
    needs, and its cookie bookkeeping alone cost a quarter of delivery's CPU
    time per record. Proxies come from the environment, as with httpx's
    client and libcurl: https_proxy, all_proxy, no_proxy.
    """

    def __init__(self, settings: Settings) -> None:
        import httpx

        self._httpx = httpx
        name, value = tid_header(settings.tidheader)
        self.url = httpx.URL(settings.server)
        self._headers = {name: value, "User-Agent": USER_AGENT}
        if settings.collector_token_file:
            self._headers["Authorization"] = "Bearer " + read_token(settings.collector_token_file)
        self._extensions = {
            "timeout": httpx.Timeout(
                settings.request_timeout, connect=settings.connect_timeout
            ).as_dict()
        }
        self._pool = httpx.AsyncHTTPTransport(
            http2=settings.http2,
            verify=ssl_context(settings),
            limits=httpx.Limits(
                max_connections=settings.max_in_flight,
                max_keepalive_connections=settings.max_in_flight,
            ),
            proxy=environment_proxy(settings.server),
        )

    async def post(self, request: Request) -> Reply:
        httpx = self._httpx
        headers: dict[str, Any] = {
            key: value.encode() if not value.isascii() else value
            for key, value in request.headers.items()
        }
        headers.update(self._headers)
        outgoing = httpx.Request(
            "POST", self.url, content=request.content, headers=headers, extensions=self._extensions
        )
        try:
            response = await self._pool.handle_async_request(outgoing)
            try:
                body = await response.aread()
            finally:
                await response.aclose()
        except httpx.HTTPError as exc:
            raise TransportError(
                f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            ) from exc
        except ssl.SSLError as exc:
            raise TransportError(f"TLS: {exc}") from exc
        return Reply(
            response.status_code,
            body.decode("utf-8", "replace"),
            retry_after(response.headers.get("Retry-After"), time.time()),
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


def environment_proxy(url: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The proxy the environment names for `url`, unless no_proxy exempts its host.

    As curl reads them: `<scheme>_proxy`, then `all_proxy`; no_proxy is a
    comma-separated list of hosts and domains, or `*`. Each is looked up in
    lower case first, then in upper case, except HTTP_PROXY, which curl
    ignores: under CGI a client's `Proxy:` header arrives as HTTP_PROXY.
    """
    import httpx

    environ = os.environ if environ is None else environ
    parsed = httpx.URL(url)
    proxy = _variable(environ, f"{parsed.scheme}_proxy") or _variable(environ, "all_proxy")
    if not proxy:
        return None
    host = parsed.host  # lower case, an IPv6 address without its brackets
    for entry in (_variable(environ, "no_proxy") or "").split(","):
        domain = entry.strip().lower().lstrip(".")
        if domain == "*" or (domain and (host == domain or host.endswith("." + domain))):
            return None
    return proxy


def _variable(environ: Mapping[str, str], name: str) -> str | None:
    # As in curl, an empty variable counts as unset.
    value = environ.get(name) or (None if name == "http_proxy" else environ.get(name.upper()))
    return value or None


def error_message(reply: Reply) -> str:
    """The collector's message ({"message": ...} as telemetrics-backend sends), or its body."""
    try:
        parsed = json.loads(reply.body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("message"), str):
        return f"HTTP {reply.status}: {parsed['message']}"
    body = " ".join(reply.body.split())[:200]
    return f"HTTP {reply.status}: {body}" if body else f"HTTP {reply.status}"
