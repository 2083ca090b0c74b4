"""Which event loop runs the daemon: uvloop when installed, else asyncio's own.

uvloop (libuv) takes a connection, its frame and its reply in about half the
CPU time of asyncio's selector loop, and posts to the collector faster too;
everything telemd does works on either loop. `event_loop = "asyncio"` keeps
the standard library's loop; `"uvloop"` makes a missing uvloop an error.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from telemd.errors import TelemetryError

T = TypeVar("T")


def loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop factory, or None for asyncio's default loop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise TelemetryError(
                'event_loop = "uvloop" but uvloop is not installed;'
                ' install it or set event_loop = "auto"'
            ) from None
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T], choice: str) -> T:
    """asyncio.run(main) on the loop `choice` names."""
    try:
        factory = loop_factory(choice)
    except TelemetryError:
        main.close()
        raise
    if sys.version_info >= (3, 11):
        with asyncio.Runner(loop_factory=factory) as runner:
            return runner.run(main)
    if factory is not None:  # Python 3.10: asyncio.run has no loop_factory
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(main)


def loop_name(loop: asyncio.AbstractEventLoop) -> str:
    return type(loop).__module__.partition(".")[0]
