"""Logging to stderr, shaped for a terminal or for the systemd journal.

Under systemd (JOURNAL_STREAM names our stderr) lines carry `<N>` priority
prefixes and no time stamp, since the journal adds its own. Repeats are
limited per cause (telemd/daemon/loglimit.py): nothing a client does can
flood the journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable

from telemd.daemon.loglimit import RepeatFilter

_PRIORITIES = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITIES.get(record.levelno, 6)
        return f"<{priority}>{super().format(record)}"


def stderr_is_journal() -> bool:
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    if not inode:
        return False
    try:
        info = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return f"{info.st_dev}:{info.st_ino}" == f"{device}:{inode}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RepeatFilter(handler))
    if stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # A line per HTTP request (and httpcore's per-event trace) would drown the log.
    for name in ("httpx", "httpcore", "hpack"):
        logging.getLogger(name).setLevel(logging.WARNING)


def summarize_repeats_on(loop: asyncio.AbstractEventLoop) -> None:
    """Write each count of held-back lines from `loop` when its interval ends."""
    for handler in logging.getLogger().handlers:
        for repeats in handler.filters:
            if isinstance(repeats, RepeatFilter):
                repeats.on_pending = _flusher(loop, repeats)


def _flusher(loop: asyncio.AbstractEventLoop, repeats: RepeatFilter) -> Callable[[float], None]:
    def flush() -> None:
        delay = repeats.flush()
        if delay is not None:
            loop.call_later(delay, flush)

    def wake(delay: float) -> None:
        # Lines come from the spool writer's thread too.
        with contextlib.suppress(RuntimeError):  # the loop is closed: the process is exiting
            loop.call_soon_threadsafe(loop.call_later, delay, flush)

    return wake
