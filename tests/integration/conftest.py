"""Fixtures that start real telemd processes in temporary directories."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness
from http_sink import HttpSink


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


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[HttpSink]:
    """A real HTTPS collector stand-in that answers as each test tells it."""
    server = HttpSink(tmp_path / "sink")
    yield server
    server.stop()


@pytest.fixture
def delivering(tmp_path: Path, sink: HttpSink) -> Iterator[DaemonHarness]:
    """A configured daemon pointed at the sink, with quick retries; not started."""
    harness = DaemonHarness(
        tmp_path / "telemd",
        server=sink.url,
        cainfo=str(sink.ca_file),
        retry_initial=0.05,
        retry_max=0.4,
        connect_timeout=1.0,
        request_timeout=1.0,
        uid_records_per_minute=-1,
    )
    yield harness
    if harness.proc is not None and harness.proc.poll() is None:
        harness.kill()
