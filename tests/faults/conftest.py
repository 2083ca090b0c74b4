"""Fixtures for the fault suite: a real collector and a real daemon per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness
from processes import Collector

pytest.importorskip("starlette", reason="the collector extra is not installed")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    """A running collector on SQLite."""
    server = Collector(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[DaemonHarness]:
    """A configured daemon, opted in, not yet started."""
    harness = DaemonHarness(tmp_path / "telemd")
    yield harness
    if harness.proc is not None and harness.proc.poll() is None:
        harness.kill()


@pytest.fixture(scope="module")
def fuzz_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    """One collector for a whole module of fuzzed requests."""
    server = Collector(tmp_path_factory.mktemp("fuzz-collector"))
    server.start()
    yield server
    server.stop()
