"""Fixtures that start real telemd processes in temporary directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[DaemonHarness]:
    """A configured daemon, opted in, not yet started."""
    harness = DaemonHarness(tmp_path)
    yield harness
    if harness.proc is not None and harness.proc.poll() is None:
        harness.kill()


@pytest.fixture
def daemon(harness: DaemonHarness) -> DaemonHarness:
    """A running daemon."""
    harness.start()
    return harness
