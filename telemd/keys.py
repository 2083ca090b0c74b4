"""Configuration keys: how one is described and checked, and the keys probes read.

`telemd.config` holds the whole table and builds the daemon's settings from
it. The probes read their own keys and four shared paths through
`telemd_probes.common.settings`, which must not pay for `telemd.config` (dataclasses,
configparser, difflib): so the key description, the check every reader
applies and the probes' part of the table live here, in a module that
imports nothing. A value is then valid for a probe exactly when it is valid
for the daemon, and both word the error the same way.
"""

from __future__ import annotations

# typing costs the probe path about 2 ms to import; annotations need it only for mypy.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal

    Kind = Literal[
        "url",
        "header",
        "path",
        "socket",
        "optional_path",
        "int",
        "float",
        "bool",
        "choice",
        "mode",
        "patterns",
    ]


class Key:
    """One configuration key: how it is written, checked and documented.

    `default` is written as in a file (minutes stay minutes). Integer keys
    whose unit is "minutes" or "seconds" are durations: they are checked
    into float seconds.
    """

    __slots__ = (
        "choices",
        "default",
        "doc",
        "high",
        "kind",
        "low",
        "low_exclusive",
        "name",
        "off",
        "unit",
    )

    def __init__(
        self,
        name: str,
        kind: Kind,
        default: object,
        doc: str,
        unit: str = "",
        low: int | None = None,
        high: int | None = None,
        *,
        low_exclusive: bool = False,
        off: bool = False,  # -1 switches the limit off
        choices: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.kind = kind
        self.default = default
        self.doc = doc
        self.unit = unit
        self.low = low
        self.high = high
        self.low_exclusive = low_exclusive
        self.off = off
        self.choices = choices

    def __repr__(self) -> str:
        return f"Key({self.name!r}, {self.kind!r}, {self.default!r})"


ETC_DIR = "/etc/telemetrics/"  # Clear's directory of switch files and settings

# Paths both the daemon and the probes act on.
SOCKET_PATH = Key("socket_path", "socket", "/run/telem-0", "Socket that probes send records to.")
OPT_IN_FILE = Key(
    "opt_in_file", "path", ETC_DIR + "opt-in", "Records are accepted only while this exists."
)
NO_PRIVACY_FILTERS_FILE = Key(
    "no_privacy_filters_file",
    "path",
    ETC_DIR + "opt-in-no-privacy-filters",
    "If this file exists, payloads are sent without the privacy filters.",
)
STATE_DIR = Key(
    "state_dir", "path", "/var/lib/telemetry", "Machine id, journal and retained copies."
)
SHARED_KEYS = (SOCKET_PATH, OPT_IN_FILE, NO_PRIVACY_FILTERS_FILE, STATE_DIR)

# The probes' own keys; the daemon accepts and checks them too, so that one
# file can configure the daemon and its probes.
PROBE_KEYS: tuple[Key, ...] = (
    Key("crash_max_core_size", "int", 512, "Largest core crashprobe reads.", "MiB", 1, 1048576),
    Key("crash_include_cmdline", "bool", False, "Send a crashed program's command line."),
    Key(
        "crash_dedup_window",
        "float",
        600.0,
        "Identical crashes within this time become one record with a count.",
        "seconds",
        0,
        86400,
    ),
    Key(
        "crash_unwind_timeout",
        "float",
        30.0,
        "Longest time eu-stack may take on a core.",
        "seconds",
        1,
        600,
    ),
    Key(
        "journal_lines",
        "int",
        10,
        "Log lines sent with a failed unit, when the privacy filters are lifted.",
        "",
        0,
        1000,
    ),
    Key(
        "journal_ignore_units",
        "patterns",
        (),
        "Units whose failures journalprobe ignores (shell patterns).",
    ),
    Key("pstore_dir", "path", "/sys/fs/pstore", "Where the kernel's pstore is mounted."),
    Key("pstore_keep", "bool", False, "Keep pstore files after reporting them."),
    Key(
        "klog_quiet_period",
        "float",
        2.0,
        "Silence after which klogscanner sends an unfinished report.",
        "seconds",
        0,
        3600,
        low_exclusive=True,
    ),
)

_URL = r"https?://[^\x00-\x20\x7f/]+[^\x00-\x20\x7f]*"
# An RFC 9110 field name, a colon, and a value without control characters.
_HEADER = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+:[ \t]*[^\x00-\x20\x7f][^\x00-\x08\x0a-\x1f\x7f]*"
_SECONDS_PER = {"minutes": 60.0, "seconds": 1.0}
# A Unix socket's address holds 108 bytes, the last one a NUL.
SOCKET_PATH_MAX = 107


def check(key: Key, value: object) -> object:
    """Return `value` ready for use, or raise ValueError."""
    if isinstance(value, bool):
        if key.kind == "bool":
            return value
    elif (key.kind == "int" and isinstance(value, int)) or (
        key.kind == "float" and isinstance(value, (int, float))
    ):
        if (key.off and value == -1) or _in_range(key, value):
            scale = _SECONDS_PER.get(key.unit)
            return value * scale if scale else value
    elif isinstance(value, (list, tuple)) and key.kind == "patterns":
        if all(isinstance(item, str) and item for item in value):
            return tuple(value)
    elif isinstance(value, int) and key.kind == "mode":
        if 0 <= value <= 0o777:
            return value
    elif isinstance(value, str):
        if key.kind in ("path", "optional_path") and value.startswith("/") and "\0" not in value:
            return value
        if key.kind == "socket" and _fits_a_socket_address(value):
            return value
        if key.kind == "optional_path" and value == "":
            return value
        if key.kind == "choice" and value in key.choices:
            return value
        if key.kind in ("mode", "url", "header"):
            return _check_pattern(key, value)
    raise ValueError(value)


def _fits_a_socket_address(value: str) -> bool:
    return value.startswith("/") and "\0" not in value and len(value.encode()) <= SOCKET_PATH_MAX


def _check_pattern(key: Key, value: str) -> object:
    # Only the daemon's keys are checked against patterns: probes never import re.
    import re

    if key.kind == "mode" and re.fullmatch("[0-7]{1,4}", value) and int(value, 8) <= 0o777:
        return int(value, 8)
    if key.kind == "url" and (value == "" or re.fullmatch(_URL, value)):
        return value
    if key.kind == "header" and re.fullmatch(_HEADER, value):
        return value
    raise ValueError(value)


def _in_range(key: Key, value: float) -> bool:
    # Written so that NaN is out of every range.
    above = key.low is None or (value > key.low if key.low_exclusive else value >= key.low)
    return above and (key.high is None or value <= key.high)


def expected(key: Key) -> str:
    """What `key` takes, worded to follow "must be"."""
    if key.kind in ("int", "float"):
        text = "an integer" if key.kind == "int" else "a number"
        if key.unit:
            text += (" number" if key.kind == "int" else "") + f" of {key.unit}"
        if key.high is None:
            text += f" >= {key.low}"
        elif key.low_exclusive:
            text += f" > {key.low} and <= {key.high}"
        else:
            text += f" from {key.low} to {key.high}"
        return text + (", or -1 for no limit" if key.off else "")
    return {
        "bool": "true or false",
        "choice": "one of " + ", ".join(repr(choice) for choice in key.choices),
        "mode": "a file mode from 0o000 to 0o777, written 0o640 or '0640'",
        "url": "empty or an http:// or https:// URL",
        "header": "an HTTP header 'Name: value'",
        "path": "an absolute path",
        "socket": f"an absolute path of at most {SOCKET_PATH_MAX} bytes (a Unix socket's limit)",
        "optional_path": "empty or an absolute path",
        "patterns": "a list of shell patterns such as ['user@*.service']",
    }[key.kind]


def error(path: str, key: Key, value: object) -> str:
    """The message for a bad value: the file, the key, the value and what it takes."""
    shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    return f"{path}: {key.name} must be {expected(key)}, got {shown}"
