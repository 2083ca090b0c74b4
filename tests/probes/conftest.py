"""Fixtures for whole-process probe tests: a real telemd, and a probe configuration.

The probes read their own keys and the shared paths from the file given with
`-f`; the daemon keeps its own file, so each test states exactly what the
probe under test sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonHarness
from integration.conftest import daemon, harness  # noqa: F401  (fixtures)
from probe_support import ProbeConfig, toml


@pytest.fixture
def probe_config(harness: DaemonHarness) -> ProbeConfig:  # noqa: F811
    """Write a probe configuration for `harness`'s daemon; keyword arguments add probe keys.

    Privacy filters are lifted unless `filters=True`: test programs live outside /usr.
    """

    def write(filters: bool = False, **keys: Any) -> Path:
        no_filters = harness.root / "no-privacy-filters"
        if filters:
            no_filters.unlink(missing_ok=True)
        else:
            no_filters.touch()
        settings: dict[str, Any] = {
            "socket_path": harness.socket,
            "opt_in_file": str(harness.opt_in_file),
            "no_privacy_filters_file": str(no_filters),
            "state_dir": str(harness.state_dir),
            **keys,
        }
        path = harness.root / "probes.toml"
        path.write_text("".join(f"{key} = {toml(value)}\n" for key, value in settings.items()))
        return path

    return write


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR for the probes, checked to be empty afterwards (no core left behind)."""
    directory = tmp_path / "tmpdir"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    yield directory
    assert list(directory.iterdir()) == []
