"""The probes' settings, read from the daemon's configuration chain.

Probe keys (`crash_*`, `journal_*`, `pstore_*`, `klog_*`) sit in the same
TOML files as the daemon's (`telemd.paths.config_chain`), flat, with the same
precedence. This module reads only those keys, plus the four shared paths a
probe acts on itself (socket, opt-in file, privacy-filter override, state
directory), and ignores every other key: checking the daemon's keys is
`telemd.config`'s job. Both take these keys, their bounds and the check of a
value from `telemd.keys`, so a value is valid for a probe exactly when it is
valid for the daemon; `telemd.config` itself costs a probe more to import
than the rest of its run.

On the probe path: `tomllib` is imported only when a file in the chain
mentions a key read here, and Clear's legacy INI files (which may set only
Clear's keys) are skipped. Errors name the file, the key, the value and what
was expected, and are raised as `ConfigError`.
"""

from __future__ import annotations

from telemd.errors import ConfigError
from telemd.keys import PROBE_KEYS, SHARED_KEYS, Key, check, error
from telemd.paths import config_chain, is_legacy_config
from telemd.tomlfile import read_toml

# Keys written in a larger unit than the one the probes use.
_SCALE = {"crash_max_core_size": 1024 * 1024}  # MiB in the file, bytes in ProbeSettings

# docs/probes.md says what each key does.
KEYS: dict[str, Key] = {key.name: key for key in (*PROBE_KEYS, *SHARED_KEYS)}


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
        for name in KEYS:  # each value was checked against its key
            setattr(self, name, values[name])
        self.explicit = explicit

    @property
    def client_socket(self) -> str | None:
        """The socket to pass to `telemd.client.send`, or None to let it resolve its own."""
        return self.socket_path if "socket_path" in self.explicit else None


def load_probe_settings(config_file: str | None = None) -> ProbeSettings:
    """Defaults overridden by each TOML file of the chain; raise ConfigError on a bad value."""
    values = {name: _checked("default", key, key.default) for name, key in KEYS.items()}
    explicit: set[str] = set()
    for path in config_chain(config_file):
        if is_legacy_config(path) or not _mentions_a_key(path):
            continue
        for name, value in read_toml(path).items():
            key = KEYS.get(name)
            if key is not None:
                values[name] = _checked(path, key, value)
                explicit.add(name)
    return ProbeSettings(values, frozenset(explicit))


def _mentions_a_key(path: str) -> bool:
    """Cheap pre-check; unreadable files say yes, so that the reader reports them."""
    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError:
        return True
    return any(name.encode() in data for name in KEYS)


def _checked(path: str, key: Key, value: object) -> object:
    try:
        checked = check(key, value)
    except ValueError:
        raise ConfigError(error(path, key, value)) from None
    if key.name in _SCALE:
        assert isinstance(checked, int)
        return checked * _SCALE[key.name]
    return checked
