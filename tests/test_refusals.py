"""Telling a record's 4xx from a configuration's, on plain values."""

from __future__ import annotations

from dataclasses import dataclass

from telemd.daemon.refusals import Refusals


@dataclass(frozen=True)
class Rec:
    seq: int


MISMATCH = (400, "HTTP 400: Telemetry ID mismatch")
BAD_ARCH = (400, "HTTP 400: arch: not allowed")


def test_one_refused_record_is_held_then_rejected_when_another_is_delivered() -> None:
    refusals: Refusals[Rec] = Refusals(hold_for=300)
    assert refusals.record_refused(Rec(1), BAD_ARCH, now=0) == ([], [])
    assert refusals.holding
    assert refusals.delivered() == [(Rec(1), BAD_ARCH)]
    assert not refusals.holding


def test_the_same_answer_for_a_different_record_is_a_configuration_error() -> None:
    refusals: Refusals[Rec] = Refusals(hold_for=300)
    refusals.record_refused(Rec(1), MISMATCH, now=0)
    rejected, put_back = refusals.record_refused(Rec(2), MISMATCH, now=1)
    assert rejected == [] and sorted(r.seq for r in put_back) == [1, 2]
    assert refusals.config_error == MISMATCH
    assert refusals.tried == {1, 2}
    # Record 1 again, alone: still the configuration error, not its own.
    assert refusals.record_refused(Rec(1), MISMATCH, now=2) == ([], [Rec(1)])


def test_a_different_answer_rejects_the_held_record_and_holds_the_new_one() -> None:
    refusals: Refusals[Rec] = Refusals(hold_for=300)
    refusals.record_refused(Rec(1), BAD_ARCH, now=0)
    rejected, put_back = refusals.record_refused(Rec(2), MISMATCH, now=1)
    assert rejected == [(Rec(1), BAD_ARCH)] and put_back == []
    # The rejected record's answer is remembered: a third record answered
    # alike is a configuration error even though record 1 is gone.
    assert refusals.record_refused(Rec(3), BAD_ARCH, now=2) == ([], [Rec(3), Rec(2)])


def test_a_held_record_with_nothing_to_compare_waits_hold_for_seconds() -> None:
    refusals: Refusals[Rec] = Refusals(hold_for=300)
    refusals.record_refused(Rec(1), BAD_ARCH, now=100)
    assert refusals.expire(now=150) == ([], 250)
    assert refusals.expire(now=400) == ([(Rec(1), BAD_ARCH)], None)
    assert refusals.expire(now=500) == ([], None)


def test_a_delivery_after_a_configuration_error_teaches_the_answer_is_the_records() -> None:
    refusals: Refusals[Rec] = Refusals(hold_for=300)
    refusals.record_refused(Rec(1), BAD_ARCH, now=0)
    refusals.record_refused(Rec(2), BAD_ARCH, now=0)  # looks like a configuration error
    assert refusals.delivered() == []
    assert refusals.tried == set() and refusals.config_error is None
    assert refusals.record_refused(Rec(1), BAD_ARCH, now=1) == ([(Rec(1), BAD_ARCH)], [])
    refusals.reset()  # a new configuration: learn again
    assert refusals.record_refused(Rec(2), BAD_ARCH, now=2) == ([], [])


def test_request_level_refusals_put_back_the_held_record_too() -> None:
    refusals: Refusals[Rec] = Refusals(hold_for=300)
    refusals.record_refused(Rec(1), BAD_ARCH, now=0)
    put_back = refusals.request_refused([Rec(2)], (401, "HTTP 401"))
    assert sorted(r.seq for r in put_back) == [1, 2]
    assert not refusals.holding and refusals.config_error == (401, "HTTP 401")
