"""Read one TOML configuration file, with errors that name it.

Cheap to import: `tomllib` (or `tomli` before Python 3.11) is imported on
the first read, so the probe path pays for it only when a file needs it.
"""

from __future__ import annotations

import sys

from telemd.errors import ConfigError

# typing costs the probe path about 2 ms to import; annotations need it only for mypy.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def read_text(path: str) -> str:
    """The file's text; ConfigError when it cannot be read or is not UTF-8."""
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return data.decode()
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from exc


def read_toml(path: str) -> dict[str, Any]:
    """The file's top-level table; ConfigError when it is unreadable or not TOML."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

    text = read_text(path)
    try:
        values: dict[str, Any] = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from exc
    return values
