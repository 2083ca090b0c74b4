"""The three settings a client needs, read without the cost of the full loader.

Importing `tomllib` and `telemd.config` costs a probe about 20 ms, more than
the rest of its run. A client needs only `socket_path`, `opt_in_file` and
`max_payload_size`, so it reads the configuration chain line by line and
understands the plain forms of those assignments (`key = "text"`,
`key = 'text'`, `key = 8192`, optionally followed by a comment). Anything
else that touches those keys (escapes, multi-line strings, a table, a legacy
INI file) is handed to `telemd.config`, so the answer is always the full
loader's; the cheap path only saves it from running.

The client does not validate the daemon's other keys: a broken file there
stops the daemon, and the client then reports that the daemon is not running.
"""

from __future__ import annotations

from telemd.paths import config_chain, is_legacy_config
from telemd.record import DEFAULT_MAX_PAYLOAD_SIZE

DEFAULT_SOCKET_PATH = "/run/telem-0"
DEFAULT_OPT_IN_FILE = "/etc/telemetrics/opt-in"
_KEYS = ("socket_path", "opt_in_file", "max_payload_size")
_MAX_PAYLOAD_LIMIT = 1048576


class ClientSettings:
    __slots__ = ("max_payload_size", "opt_in_file", "socket_path")

    def __init__(self, socket_path: str, opt_in_file: str, max_payload_size: int) -> None:
        self.socket_path = socket_path
        self.opt_in_file = opt_in_file
        self.max_payload_size = max_payload_size


class _NeedsFullLoader(Exception):
    pass


def _plain_value(text: str) -> str | int:
    """Parse the right-hand side of `key = value  # comment` in its plain forms."""
    text = text.strip()
    quote = text[:1]
    if quote in ('"', "'"):
        end = text.find(quote, 1)
        value: str | int = text[1:end]
        rest = text[end + 1 :].strip()
        if end < 0 or text.startswith(quote * 3) or (quote == '"' and "\\" in str(value)):
            raise _NeedsFullLoader
    else:
        number, _, comment = text.partition("#")
        number = number.strip()
        if not (number.isascii() and number.isdigit()):
            raise _NeedsFullLoader
        value, rest = int(number), "#" + comment if comment else ""
    if rest and not rest.startswith("#"):
        raise _NeedsFullLoader
    return value


def _assignments(path: str, found: dict[str, str | int]) -> None:
    try:
        with open(path, "rb") as handle:
            text = handle.read().decode()
    except (OSError, UnicodeDecodeError):
        raise _NeedsFullLoader from None  # the full loader words the error
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            raise _NeedsFullLoader  # tables are the full loader's to reject
        key, equals, value = line.partition("=")
        key = key.strip().strip("\"'")
        if equals and key in _KEYS:
            if is_legacy_config(path):
                raise _NeedsFullLoader
            found[key] = _plain_value(value)


def client_settings(config_file: str | None = None) -> ClientSettings:
    """The socket path, opt-in file and payload limit in effect."""
    found: dict[str, str | int] = {}
    try:
        for path in config_chain(config_file):
            _assignments(path, found)
        socket_path = found.get("socket_path", DEFAULT_SOCKET_PATH)
        opt_in_file = found.get("opt_in_file", DEFAULT_OPT_IN_FILE)
        max_payload = found.get("max_payload_size", DEFAULT_MAX_PAYLOAD_SIZE)
        if not (
            isinstance(socket_path, str)
            and socket_path.startswith("/")
            and isinstance(opt_in_file, str)
            and opt_in_file.startswith("/")
            and isinstance(max_payload, int)
            and 1 <= max_payload <= _MAX_PAYLOAD_LIMIT
        ):
            raise _NeedsFullLoader  # out of range: let the full loader say so
    except _NeedsFullLoader:
        from telemd.config import load_settings

        settings = load_settings(config_file)
        return ClientSettings(settings.socket_path, settings.opt_in_file, settings.max_payload_size)
    return ClientSettings(socket_path, opt_in_file, max_payload)
