"""Choosing the daemon's event loop."""

from __future__ import annotations

import asyncio
import sys

import pytest

from telemd.daemon import eventloop
from telemd.errors import TelemetryError


async def running_loop_name() -> str:
    return eventloop.loop_name(asyncio.get_running_loop())


def test_asyncio_is_the_standard_librarys_loop() -> None:
    assert eventloop.run(running_loop_name(), "asyncio") == "asyncio"


def test_auto_takes_uvloop_when_it_is_installed() -> None:
    pytest.importorskip("uvloop", reason="uvloop is a dependency on Linux (pyproject.toml)")
    assert eventloop.run(running_loop_name(), "auto") == "uvloop"


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` fail
    assert eventloop.run(running_loop_name(), "auto") == "asyncio"


def test_asking_for_a_missing_uvloop_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)
    main = running_loop_name()
    with pytest.raises(TelemetryError, match="uvloop is not installed"):
        eventloop.run(main, "uvloop")
    assert main.cr_frame is None  # closed, not left to warn "never awaited"
