"""Whether a URL or a host name can be used, said as a reason, for configuration errors.

Checked with `urllib.parse` and `ipaddress` when the configuration is read,
so that a bad `server` is refused with its file and key rather than found
by the HTTP client at the first delivery. Pure: no I/O, no name lookups.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, urlsplit

SCHEMES = ("http", "https")
# A DNS label as resolvers take it: letters, digits, hyphens inside, and the
# underscore some internal names carry.
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+")
# The authority after any user info: a host or a bracketed IPv6 address, an optional port.
_HOST_PORT = re.compile(r"(?:\[(?P<ipv6>[^\]]*)\]|(?P<host>[^\[\]:]+))(?::(?P<port>[0-9]*))?")


def url_problem(url: str) -> str | None:
    """Why `url` cannot be a collector's http(s) URL, or None when it can."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # such as an unclosed "[" of an IPv6 address
        return str(exc)[:1].lower() + str(exc)[1:]
    if parts.scheme not in SCHEMES:
        return f"the scheme must be {' or '.join(SCHEMES)}, not {parts.scheme or 'missing'}"
    found = _HOST_PORT.fullmatch(parts.netloc.rpartition("@")[2])
    if found is None:
        return "it must name a host, then optionally :PORT"
    ipv6, host, port = found.group("ipv6", "host", "port")
    if port and not 1 <= int(port) <= 65535:
        return f"the port must be from 1 to 65535, not {port}"
    if ipv6 is not None:
        return _ipv6_problem(ipv6)
    return host_problem(host)


def host_problem(host: str) -> str | None:
    """Why `host` is neither a host name nor an IP address, or None when it is one."""
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if _DOTTED_NUMBERS.fullmatch(host):
        return f"{host} is not an IPv4 address"
    name = (host[:-1] if host.endswith(".") else host).lower()  # one root dot may end it
    if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in _ascii_labels(name)):
        return f"{host} is not a valid host name"
    return None


def _ascii_labels(name: str) -> list[str]:
    """The labels of `name` as DNS carries them; [""] when IDNA refuses it.

    Read with the `idna` package, as httpx reads them: a non-ASCII name is
    encoded, and an `xn--` label must decode.
    """
    import idna  # httpx's dependency; imported only for a server or host to check

    try:
        if not name.isascii():
            name = idna.encode(name).decode("ascii")
        for label in name.split("."):
            if label.startswith("xn--"):
                idna.decode(label)
    except (idna.IDNAError, UnicodeError):
        return [""]
    return name.split(".")


def _ipv6_problem(host: str) -> str | None:
    try:
        ipaddress.IPv6Address(unquote(host))
    except ValueError:
        return f"[{host}] is not an IPv6 address"
    return None
