"""The probes' settings, read from the daemon's configuration chain.

Probe keys (`crash_*`, `journal_*`, `pstore_*`, `klog_*`) sit in the same
TOML files as the daemon's (`telemd.paths.config_chain`), flat, with the same
precedence. This module reads only those keys, plus the four shared paths a
probe acts on itself (socket, opt-in file, privacy-filter override, state
directory), and ignores every other key: checking the daemon's keys is
`telemd.config`'s job. `telemd.config` knows the probe keys too, but costs
a probe more to import than the rest of its run.

On the probe path: `tomllib` is imported only when a file in the chain
mentions a key read here, and Clear's legacy INI files (which may set only
Clear's keys) are skipped. Errors name the file, the key, the value and what
was expected, and are raised as `ConfigError`.
"""

from __future__ import annotations

from telemd.errors import ConfigError
from telemd.paths import config_chain, is_legacy_config
from telemd.tomlfile import read_toml

# Keys written in a larger unit than the one the probes use.
_SCALE = {"crash_max_core_size": 1024 * 1024}  # MiB in the file, bytes in ProbeSettings

# name: (default, kind, low bound); docs/probes.md says what each does. Kinds:
# "int", "float" (seconds), "bool", "path", "patterns" (a list of shell patterns).
KEYS: dict[str, tuple[object, str, float]] = {
    "crash_max_core_size": (512, "int", 1),  # MiB
    "crash_include_cmdline": (False, "bool", 0),
    "crash_dedup_window": (600, "float", 0),
    "crash_unwind_timeout": (30, "float", 1),
    "journal_lines": (10, "int", 0),
    "journal_ignore_units": ([], "patterns", 0),
    "pstore_dir": ("/sys/fs/pstore", "path", 0),
    "pstore_keep": (False, "bool", 0),
    "klog_quiet_period": (2, "float", 0.01),
}
# Shared with the daemon; the defaults are telemd.config's (a test checks they agree).
SHARED_KEYS: dict[str, str] = {
    "socket_path": "/run/telem-0",
    "opt_in_file": "/etc/telemetrics/opt-in",
    "no_privacy_filters_file": "/etc/telemetrics/opt-in-no-privacy-filters",
    "state_dir": "/var/lib/telemetry",
}
_NAMES = tuple(KEYS) + tuple(SHARED_KEYS)


class ProbeSettings:
    """Checked probe settings; `explicit` holds the names some file set."""

    __slots__ = (
        "crash_dedup_window",
        "crash_include_cmdline",
        "crash_max_core_size",
        "crash_unwind_timeout",
        "explicit",
        "journal_ignore_units",
        "journal_lines",
        "klog_quiet_period",
        "no_privacy_filters_file",
        "opt_in_file",
        "pstore_dir",
        "pstore_keep",
        "socket_path",
        "state_dir",
    )

    crash_max_core_size: int  # bytes (the file says MiB)
    crash_include_cmdline: bool
    crash_dedup_window: float
    crash_unwind_timeout: float
    journal_lines: int
    journal_ignore_units: tuple[str, ...]
    pstore_dir: str
    pstore_keep: bool
    klog_quiet_period: float
    socket_path: str
    opt_in_file: str
    no_privacy_filters_file: str
    state_dir: str
    explicit: frozenset[str]

    def __init__(self, values: dict[str, object], explicit: frozenset[str]) -> None:
        for name in _NAMES:  # each value was checked against its key's kind
            setattr(self, name, values[name])
        self.explicit = explicit

    @property
    def client_socket(self) -> str | None:
        """The socket to pass to `telemd.client.send`, or None to let it resolve its own."""
        return self.socket_path if "socket_path" in self.explicit else None


def load_probe_settings(config_file: str | None = None) -> ProbeSettings:
    """Defaults overridden by each TOML file of the chain; raise ConfigError on a bad value."""
    values: dict[str, object] = {name: _check("default", name, KEYS[name][0]) for name in KEYS}
    values.update(SHARED_KEYS)
    explicit: set[str] = set()
    for path in config_chain(config_file):
        if is_legacy_config(path) or not _mentions_a_key(path):
            continue
        for name, value in read_toml(path).items():
            if name in KEYS:
                values[name] = _check(path, name, value)
            elif name in SHARED_KEYS:
                if not isinstance(value, str) or not value:
                    raise ConfigError(f"{path}: {name} must be a path, got {value!r}")
                values[name] = value
            else:
                continue
            explicit.add(name)
    return ProbeSettings(values, frozenset(explicit))


def _mentions_a_key(path: str) -> bool:
    """Cheap pre-check; unreadable files say yes, so that the reader reports them."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return True
    return any(name.encode() in data for name in _NAMES)


def _check(path: str, name: str, value: object) -> object:
    _, kind, low = KEYS[name]
    checked: object = None
    if kind == "bool":
        checked = value if isinstance(value, bool) else None
    elif kind == "path":
        checked = value if isinstance(value, str) and value else None
    elif kind == "patterns":
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            checked = tuple(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and value >= low:
        if kind == "float":
            checked = float(value)
        elif value == int(value):
            checked = int(value) * _SCALE.get(name, 1)
    if checked is None:
        raise ConfigError(f"{path}: {name} must be {_expected(kind, low)}, got {value!r}")
    return checked


def _expected(kind: str, low: float) -> str:
    if kind == "int":
        return f"an integer of at least {int(low)}"
    if kind == "float":
        return f"a number of seconds of at least {low:g}"
    if kind == "bool":
        return "true or false"
    if kind == "path":
        return "a non-empty path"
    return "a list of strings"
