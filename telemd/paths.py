"""Where configuration lives, and the order in which files override each other.

Cheap to import (only `os`): the probe path uses it to find its configuration
without loading the full TOML machinery of `telemd.config`.
"""

from __future__ import annotations

import os

# Spelled out rather than imported from typing, which is costly to import.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

DEFAULTS_CONFIG = "/usr/share/defaults/telemetrics/telemetrics.toml"
SYSTEM_CONFIG = "/etc/telemetrics/telemetrics.toml"
# Clear Linux's INI file; read only when no TOML file sits beside it.
LEGACY_SYSTEM_CONFIG = "/etc/telemetrics/telemetrics.conf"
CONFIG_ENV = "TELEMD_CONFIG"


def config_chain(
    config_file: str | None = None, environ: Mapping[str, str] = os.environ
) -> list[str]:
    """Configuration files to read, lowest precedence first.

    Built-in defaults < DEFAULTS_CONFIG < SYSTEM_CONFIG (or, failing that, the
    legacy INI file) < `config_file`, else $TELEMD_CONFIG. The explicit file
    is always listed, so that a missing one is reported rather than ignored.
    """
    chain = [path for path in (DEFAULTS_CONFIG,) if os.path.isfile(path)]
    if os.path.isfile(SYSTEM_CONFIG):
        chain.append(SYSTEM_CONFIG)
    elif os.path.isfile(LEGACY_SYSTEM_CONFIG):
        chain.append(LEGACY_SYSTEM_CONFIG)
    explicit = config_file or environ.get(CONFIG_ENV) or None
    if explicit:
        chain.append(explicit)
    return chain


def is_legacy_config(path: str) -> bool:
    """Clear's INI files end in .conf; everything else is TOML."""
    return path.endswith(".conf")
