"""Log lines limited per cause: first occurrence, then one summary per interval."""

from __future__ import annotations

import logging

import pytest
from log_capture import Clock, Lines

from telemd.daemon.loglimit import RepeatFilter, RepeatLimiter, cause_of


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
def logger(clock: Clock) -> tuple[logging.Logger, Lines, RepeatFilter]:
    lines = Lines()
    repeats = RepeatFilter(lines, RepeatLimiter(interval=60.0, clock=clock))
    lines.addFilter(repeats)
    log = logging.getLogger("telemd.test-loglimit")
    log.handlers[:] = [lines]
    log.propagate = False
    log.setLevel(logging.DEBUG)
    return log, lines, repeats


def test_repeats_within_the_interval_become_one_summary_with_their_count(
    logger: tuple[logging.Logger, Lines, RepeatFilter], clock: Clock
) -> None:
    log, lines, repeats = logger
    for n in range(10_000):
        log.info("bad frame from uid %d", n, extra={"cause": "bad-frame"})
    assert lines.lines == ["bad frame from uid 0"]
    assert repeats.flush() is not None  # a count is open, its interval not over
    clock.now += 60.0
    assert repeats.flush() is None  # nothing more to count until the next repeat
    assert lines.lines == [
        "bad frame from uid 0",
        "9999 more like this in the last 60 s, the latest: bad frame from uid 9999",
    ]
    clock.now += 60.0  # a quiet interval: the cause starts afresh
    log.info("bad frame from uid %d", 7, extra={"cause": "bad-frame"})
    assert lines.lines[-1] == "bad frame from uid 7"


def test_a_sustained_flood_writes_one_summary_per_interval(
    logger: tuple[logging.Logger, Lines, RepeatFilter], clock: Clock
) -> None:
    log, lines, _ = logger
    for _ in range(5):  # five intervals, the summary written by the next line
        for _ in range(100):
            log.info("refused", extra={"cause": "refused"})
            clock.now += 0.5
        clock.now += 10.0
    assert len(lines.lines) == 5
    assert lines.lines[0] == "refused"
    assert all(line.startswith("100 more like this") for line in lines.lines[2:])


def test_causes_are_counted_apart(
    logger: tuple[logging.Logger, Lines, RepeatFilter], clock: Clock
) -> None:
    log, lines, repeats = logger
    for _ in range(3):
        log.info("a", extra={"cause": "a"})
        log.info("b", extra={"cause": "b"})
    clock.now += 60.0
    repeats.flush()
    assert sorted(lines.lines) == sorted(
        [
            "a",
            "b",
            "2 more like this in the last 60 s, the latest: a",
            "2 more like this in the last 60 s, the latest: b",
        ]
    )


def test_warnings_group_by_template_and_string_arguments(
    logger: tuple[logging.Logger, Lines, RepeatFilter],
) -> None:
    log, lines, _ = logger
    for n in range(50):
        log.error("spool commit of %d records failed: %s", n, "database or disk is full")
    log.error("spool commit of %d records failed: %s", 1, "disk I/O error")
    for n in range(50):
        log.info("record %s delivered", f"{n:032x}")  # no cause: never limited
    assert lines.lines[:2] == [
        "spool commit of 0 records failed: database or disk is full",
        "spool commit of 1 records failed: disk I/O error",
    ]
    assert len(lines.lines) == 52


def test_past_max_causes_lines_pass_rather_than_vanish(clock: Clock) -> None:
    limiter = RepeatLimiter(interval=60.0, clock=clock, max_causes=4)
    record = logging.makeLogRecord({"msg": "x"})
    passed = [limiter.admit(n, record)[0] for n in range(10)]
    assert passed == [True] * 10
    assert limiter.admit(0, record) == (False, None)  # the first four are still counted


def test_debug_and_info_lines_without_a_cause_are_not_limited() -> None:
    record = logging.makeLogRecord({"msg": "x", "levelno": logging.INFO})
    assert cause_of(record) is None
