"""Problems read in the request's thread (`Store.sign`) count only while they are still right."""

from __future__ import annotations

from collector_proc import row

from telemd.collector.ingest.records import Row
from telemd.collector.problems.rollups import Signed
from telemd.collector.problems.signature import Problem, ProblemKind, SkipList
from telemd.collector.store.base import Store

NOW = 1_800_000_000.0
CRASH = "org.clearlinux/crash/clr"


def crash(function: str) -> Row:
    return row(
        classification=CRASH,
        payload=(
            "Process: /usr/bin/prog\nPID: 7\nSignal: 11\n\nBacktrace (TID 7):\n"
            f"#0 raise() - [libc.so.6] +0x1\n#1 {function}() - [libfoo.so.1] +0x2\n"
            "#2 main() - [/usr/bin/prog] +0x3\n"
        ),
    )


def titles(store: Store) -> dict[str, int]:
    with store.reading() as session:
        rows = session.fetch("SELECT title, occurrences FROM problems")
    return {str(title): int(n) for title, n in rows}


def load_skip_list(store: Store) -> None:
    """The writer reads the skip list at its first write; `sign` waits for that."""
    assert store.sign([crash("early")]) is None
    store.write([[row()]], NOW)


def test_sign_reads_the_records_that_report_problems(store: Store) -> None:
    load_skip_list(store)
    failing, hello = crash("parse_header"), row()
    signed = store.sign([failing, hello])
    assert signed is not None
    [(record_id, problem)] = signed.problems.items()
    assert record_id == failing[0] and problem is not None
    assert problem.title == "SIGSEGV in parse_header() [libfoo.so.1]"
    store.write([[failing, hello]], NOW, [signed])
    assert titles(store) == {"SIGSEGV in parse_header() [libfoo.so.1]": 1}


def test_the_writer_counts_what_was_signed_with_its_skip_list(store: Store) -> None:
    load_skip_list(store)
    record = crash("parse_header")
    signed = store.sign([record])
    assert signed is not None
    # What the writer counts is what the request's thread read, not a second reading.
    forged = Problem(ProblemKind.CRASH, "forged", "read beforehand")
    store.write([[record]], NOW, [Signed(signed.skip, {str(record[0]): forged})])
    assert titles(store) == {"read beforehand": 1}


def test_problems_read_with_another_skip_list_are_read_again(store: Store) -> None:
    load_skip_list(store)
    record = crash("parse_header")
    stale = Signed(SkipList(()), {str(record[0]): Problem(ProblemKind.CRASH, "stale", "stale")})
    store.write([[record]], NOW, [stale])
    assert titles(store) == {"SIGSEGV in parse_header() [libfoo.so.1]": 1}


def test_a_record_id_in_two_batches_counts_the_stored_copy(store: Store) -> None:
    load_skip_list(store)
    first, second = crash("first_fault"), crash("second_fault")
    second = (first[0], *second[1:])  # the same record id, another payload
    signs = [store.sign([first]), store.sign([second])]
    assert [len(ids) for ids in store.write([[first], [second]], NOW, signs)] == [1, 0]
    assert titles(store) == {"SIGSEGV in first_fault() [libfoo.so.1]": 1}
