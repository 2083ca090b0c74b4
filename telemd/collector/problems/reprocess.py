"""`telemd-collector reprocess`: every stored record's signature again, every count rebuilt.

Run after the skip list changed, or after an upgrade that reads payloads
better. It works in batches that each commit, so collectors keep storing
records between them:

1. One short transaction, once every write under way has committed, empties
   the counts, moves `rollup_epoch` on (writers forget the keys they knew)
   and notes in `reprocess_state` the newest record there is, the mark.
   Records stored from then on are counted by their writers as usual.
2. Each batch counts the next records up to the mark and notes how far it
   got, in the same transaction: a reprocess stopped anywhere (killed, a
   lost connection) leaves every record counted once or waiting for its
   batch, and running the command again carries on from there.
3. The last transaction deletes the problems no record has any more and the
   state row.

While it runs the pages show the counts growing back. A problem keeps its id
when its signature survives, so links to it still work. The retention purge
leaves the records still waiting out of what it subtracts
(`problems/retention.py`). Counts of records that retention already removed
are not brought back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from telemd.collector.problems import rollups, skip_frames

if TYPE_CHECKING:
    from telemd.collector.store.base import Session, Store

ROLLUP_TABLES = (
    "problem_records",
    "problem_days",
    "problem_builds",
    "problem_machines",
    "builds",
    "build_machines",
    "build_days",
    "build_day_machines",
    "days",
    "day_machines",
    "kind_days",
)
RECORDS_PER_BATCH = 5000
# Later than any received_at: the first record folded in sets first_seen.
_NEVER = 1e300


@dataclass(frozen=True, slots=True)
class Progress:
    """A reprocess under way: records with done < id <= mark still wait for their batch."""

    epoch: int
    mark: int
    done: int


def under_way(session: Session) -> Progress | None:
    rows = session.fetch("SELECT epoch, mark, done FROM reprocess_state")
    return Progress(*(int(value) for value in rows[0])) if rows else None


def reprocess(
    store: Store,
    batch: int = RECORDS_PER_BATCH,
    progress: Callable[[Progress], None] | None = None,
) -> tuple[int, int]:
    """Rebuild, or carry on with the rebuild under way; return (records read, problems now).

    `progress` is called after each batch commits. Two processes running it
    at once share the batches.
    """
    _start(store)
    records = 0
    while True:
        with store.transaction() as session:
            session.lock_purge()
            state = under_way(session)
            if state is None:  # another process finished it
                return records, _problems(session)
            rows = session.fetch(
                "SELECT id, record_id, received_at, classification, machine_id, build, payload "
                "FROM records WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (state.done, state.mark, batch),
            )
            if not rows:
                session.execute("DELETE FROM problems WHERE occurrences = 0")
                session.execute("DELETE FROM reprocess_state")
                return records, _problems(session)
            stored = [rollups.Stored(*row) for row in rows]
            rollups.apply(session, rollups.fold(stored, skip_frames.load(session)))
            done = int(rows[-1][0])
            session.execute("UPDATE reprocess_state SET done = ?", (done,))
        records += len(rows)
        if progress is not None:
            progress(Progress(state.epoch, state.mark, done))


def _problems(session: Session) -> int:
    (problems,) = session.fetch("SELECT count(*) FROM problems")[0]
    return int(problems)


def _start(store: Store) -> Progress:
    """The reprocess under way, or a new one with every count emptied."""
    with store.transaction() as session:
        session.lock_purge()
        state = under_way(session)
        if state is not None:
            return state
        if store.engine.name == "postgresql":
            # Wait for every write under way to commit, and hold new ones
            # until this one has: a record at or below the mark is then
            # counted by this reprocess alone, one above it by its writer alone.
            session.execute("LOCK TABLE records IN SHARE MODE")
            # At once rather than row by row; readers wait the few ms to the commit.
            session.execute(f"TRUNCATE {', '.join(ROLLUP_TABLES)}")
        else:
            for table in ROLLUP_TABLES:
                session.execute(f"DELETE FROM {table}")
        session.execute("UPDATE rollup_epoch SET epoch = epoch + 1")
        session.execute(
            "UPDATE problems SET occurrences = 0, machines = 0, builds = 0, first_seen = ?, "
            "last_seen = 0, record_id = '', first_build = ''",
            (_NEVER,),
        )
        (epoch,) = session.fetch("SELECT epoch FROM rollup_epoch")[0]
        (mark,) = session.fetch("SELECT coalesce(max(id), 0) FROM records")[0]
        state = Progress(int(epoch), int(mark), 0)
        session.execute(
            "INSERT INTO reprocess_state (epoch, mark, done) VALUES (?, ?, ?)",
            (state.epoch, state.mark, state.done),
        )
        return state
