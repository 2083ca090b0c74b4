"""Counts kept at ingest, in the transaction that stores the records they count.

Every count is an upsert that adds (`n = n + excluded.n`) and every set of
machines is an insert that keeps only the keys that were new (`ON CONFLICT
DO NOTHING RETURNING`), so several collectors writing into one PostgreSQL
database count exactly: a row another transaction is inserting is waited
for, never counted twice. Keys are written in one order (table by table,
sorted within each), so two transactions never wait for each other in a
circle. A batch is folded in memory first: one statement per table, not
one per record. The statements whose results are not read come after the
ones whose are, and go to PostgreSQL in one round trip (`Session.run_all`).
Signatures may be read before the writer takes the batch (`Signed`, made in
the request's thread), so that the one writer thread spends its time on SQL.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from telemd.collector.problems.signature import (
    PROBLEM_PREFIX,
    Problem,
    ProblemKind,
    SkipList,
    problem_of,
    record_kind,
)
from telemd.collector.store.rollups import DAY

if TYPE_CHECKING:
    from telemd.collector.store.base import Session

# Statements whose results nobody reads, to run in one round trip.
Later = list[tuple[str, Sequence[object]]]


class Signed(NamedTuple):
    """A batch's problems, read before the writer takes it (in the request's thread).

    By record id, for the records whose classification reports problems;
    valid while `skip` is the writer's current skip list.
    """

    skip: SkipList
    problems: dict[str, Problem | None]


class Stored(NamedTuple):
    """What the counts need of one newly stored record."""

    id: int
    record_id: str
    received_at: float
    classification: str
    machine_id: str
    build: str
    payload: str


def day_of(moment: float) -> int:
    """Days since 1970-01-01 UTC."""
    return int(moment // DAY)


@dataclass
class _NewProblem:
    problem: Problem
    first_seen: float
    last_seen: float
    record_id: str
    first_build: str
    first_id: int
    occurrences: int = 0


@dataclass
class Fold:
    """One batch's counts, before they meet the database."""

    problems: dict[str, _NewProblem] = field(default_factory=dict)
    problem_records: list[tuple[str, int]] = field(default_factory=list)
    problem_days: Counter[tuple[str, int]] = field(default_factory=Counter)
    problem_builds: Counter[tuple[str, str]] = field(default_factory=Counter)
    problem_machines: Counter[tuple[str, str]] = field(default_factory=Counter)
    problem_machine_seen: dict[tuple[str, str], float] = field(default_factory=dict)
    builds: Counter[str] = field(default_factory=Counter)
    build_crashes: Counter[str] = field(default_factory=Counter)
    build_seen: dict[str, tuple[float, float]] = field(default_factory=dict)
    build_machines: set[tuple[str, str]] = field(default_factory=set)
    build_days: Counter[tuple[str, int]] = field(default_factory=Counter)
    build_day_machines: set[tuple[str, int, str]] = field(default_factory=set)
    days: Counter[int] = field(default_factory=Counter)
    day_machines: set[tuple[int, str]] = field(default_factory=set)
    kind_days: Counter[tuple[str, int]] = field(default_factory=Counter)


# Records per (build, machine_id, received_at, classification).
HostCounts = Mapping[tuple[str, str, float, str], int]


def fold(records: Iterable[Stored], skip: SkipList) -> Fold:
    """The counts of `records`, signatures made here."""
    records = list(records)
    return fold_counted(
        Counter((r.build, r.machine_id, r.received_at, r.classification) for r in records),
        (
            (r, problem_of(r.classification, r.payload, skip))
            for r in records
            if r.classification.startswith(PROBLEM_PREFIX)
        ),
    )


def fold_counted(hosts: HostCounts, problems: Iterable[tuple[Stored, Problem | None]]) -> Fold:
    """The counts of records already counted per host and signed where they may report one.

    Records of one batch share few (build, machine, time, classification)
    values: the sets and counters below cost per value, not per record.
    """
    f = Fold()
    for r, problem in problems:
        if problem is not None:
            _fold_problem(f, problem, r, day_of(r.received_at))
    machines: dict[tuple[str, str, float], int] = {}
    kinds: dict[str, str] = {}
    for (build, machine, moment, classification), n in hosts.items():
        host = (build, machine, moment)
        machines[host] = machines.get(host, 0) + n
        kind = kinds.get(classification)
        if kind is None:
            kind = kinds[classification] = record_kind(classification)
        f.kind_days[kind, day_of(moment)] += n
    for (build, machine, moment), n in machines.items():
        day = day_of(moment)
        span = f.build_seen.get(build)
        if span is None:
            f.build_seen[build] = (moment, moment)
        elif not span[0] <= moment <= span[1]:
            f.build_seen[build] = (min(span[0], moment), max(span[1], moment))
        f.builds[build] += n
        f.build_machines.add((build, machine))
        f.build_days[build, day] += n
        f.build_day_machines.add((build, day, machine))
        f.days[day] += n
        f.day_machines.add((day, machine))
    return f


def _fold_problem(f: Fold, problem: Problem, r: Stored, day: int) -> None:
    sig = problem.signature
    seen = f.problems.get(sig)
    if seen is None:
        seen = f.problems[sig] = _NewProblem(
            problem, r.received_at, r.received_at, r.record_id, r.build, r.id
        )
    else:
        if r.id < seen.first_id:
            seen.first_id, seen.record_id, seen.first_build = r.id, r.record_id, r.build
        seen.first_seen = min(seen.first_seen, r.received_at)
        seen.last_seen = max(seen.last_seen, r.received_at)
    n = problem.occurrences
    seen.occurrences += n
    f.problem_records.append((sig, r.id))
    f.problem_days[sig, day] += n
    f.problem_builds[sig, r.build] += n
    key = (sig, r.machine_id)
    f.problem_machines[key] += n
    if f.problem_machine_seen.get(key, 0.0) < r.received_at:
        f.problem_machine_seen[key] = r.received_at
    if problem.kind is ProblemKind.CRASH:
        f.build_crashes[r.build] += n


def _fetch_all(
    session: Session, head: str, rows: Sequence[Sequence[object]], tail: str
) -> list[tuple[object, ...]]:
    out: list[tuple[object, ...]] = []
    for sql, params in session.many(head, rows, tail):
        out += session.fetch(sql, params)
    return out


def _later(
    session: Session, later: Later, head: str, rows: Sequence[Sequence[object]], tail: str
) -> None:
    later += session.many(head, rows, tail)


class KnownKeys:
    """Keys of the set tables this process knows to be stored, so as not to send them again.

    A machine reports many times a day; after its first record the inserts of
    its (day, machine) keys would only conflict. Keys become known once their
    transaction commits (`settle`), and all are forgotten when `reprocess`
    has rebuilt the tables (it moves `rollup_epoch` on), so a key is known
    only while its row exists. Used by the writer thread alone.
    """

    MAX_KEYS = 200_000

    def __init__(self) -> None:
        self.epoch: int | None = None
        self._known: dict[str, set[tuple[object, ...]]] = defaultdict(set)
        self._pending: list[tuple[str, list[tuple[object, ...]]]] = []

    def check_epoch(self, session: Session) -> None:
        (epoch,) = session.fetch("SELECT epoch FROM rollup_epoch")[0]
        if epoch != self.epoch:
            self._known.clear()
            self.epoch = int(str(epoch))

    def unknown(self, table: str, keys: Iterable[tuple[object, ...]]) -> list[tuple[object, ...]]:
        known = self._known[table]
        fresh = [key for key in keys if key not in known]
        self._pending.append((table, fresh))
        return fresh

    def settle(self) -> None:
        """The transaction committed: its keys are stored."""
        if sum(len(keys) for keys in self._known.values()) > self.MAX_KEYS:
            self._known.clear()
        for table, keys in self._pending:
            self._known[table].update(keys)
        self._pending.clear()

    def discard(self) -> None:
        """The transaction rolled back: its keys may not be stored."""
        self._pending.clear()


def _new_keys(
    session: Session,
    table: str,
    columns: Sequence[str],
    keys: Iterable[tuple[object, ...]],
    known: KnownKeys | None,
) -> list[tuple[object, ...]]:
    """Insert the keys of a set table; return those that were not there."""
    cols = ", ".join(columns)
    fresh = known.unknown(table, keys) if known is not None else list(keys)
    return _fetch_all(
        session,
        f"INSERT INTO {table} ({cols})",
        sorted(fresh),
        f"ON CONFLICT ({cols}) DO NOTHING RETURNING {cols}",
    )


def apply(
    session: Session, f: Fold, known: KnownKeys | None = None, later: Later | None = None
) -> None:
    """Write one fold's counts, in the fixed table order.

    The statements whose results are not read come last; given `later`,
    they are left there for the caller to run with its own, in one round
    trip; else they run before this returns.
    """
    deferred: Later = [] if later is None else later
    if known is not None:
        known.check_epoch(session)
    _apply_builds(session, f, known, deferred)
    _apply_days(session, f, known, deferred)
    if f.problems:
        _apply_problems(session, f, deferred)
    if later is None:
        session.run_all(deferred)


def _apply_builds(session: Session, f: Fold, known: KnownKeys | None, later: Later) -> None:
    if not f.builds:
        return
    new_machines = Counter(
        str(build)
        for build, _ in _new_keys(
            session, "build_machines", ("build", "machine_id"), f.build_machines, known
        )
    )
    _later(
        session,
        later,
        "INSERT INTO builds (build, first_seen, last_seen, machines, records, problems, crashes)",
        [
            (b, f.build_seen[b][0], f.build_seen[b][1], new_machines[b], n, 0, f.build_crashes[b])
            for b, n in sorted(f.builds.items())
        ],
        "ON CONFLICT (build) DO UPDATE SET "
        "first_seen = CASE WHEN excluded.first_seen < builds.first_seen "
        "THEN excluded.first_seen ELSE builds.first_seen END, "
        "last_seen = CASE WHEN excluded.last_seen > builds.last_seen "
        "THEN excluded.last_seen ELSE builds.last_seen END, "
        "machines = builds.machines + excluded.machines, "
        "records = builds.records + excluded.records, "
        "crashes = builds.crashes + excluded.crashes",
    )
    new_day_machines = Counter(
        (str(b), int(str(d)))
        for b, d, _ in _new_keys(
            session,
            "build_day_machines",
            ("build", "day", "machine_id"),
            f.build_day_machines,
            known,
        )
    )
    _later(
        session,
        later,
        "INSERT INTO build_days (build, day, machines, records)",
        [(b, d, new_day_machines[b, d], n) for (b, d), n in sorted(f.build_days.items())],
        "ON CONFLICT (build, day) DO UPDATE SET "
        "machines = build_days.machines + excluded.machines, "
        "records = build_days.records + excluded.records",
    )


def _apply_days(session: Session, f: Fold, known: KnownKeys | None, later: Later) -> None:
    new_machines = Counter(
        int(str(d))
        for d, _ in _new_keys(session, "day_machines", ("day", "machine_id"), f.day_machines, known)
    )
    _later(
        session,
        later,
        "INSERT INTO days (day, machines, records)",
        [(d, new_machines[d], n) for d, n in sorted(f.days.items())],
        "ON CONFLICT (day) DO UPDATE SET machines = days.machines + excluded.machines, "
        "records = days.records + excluded.records",
    )
    _later(
        session,
        later,
        "INSERT INTO kind_days (kind, day, records)",
        [(k, d, n) for (k, d), n in sorted(f.kind_days.items())],
        "ON CONFLICT (kind, day) DO UPDATE SET records = kind_days.records + excluded.records",
    )


def _apply_problems(session: Session, f: Fold, later: Later) -> None:
    ids: dict[str, int] = {}
    returned = _fetch_all(
        session,
        "INSERT INTO problems (kind, signature, title, first_seen, last_seen, occurrences, "
        "machines, builds, first_build, record_id)",
        [
            (
                p.problem.kind.value,
                sig,
                p.problem.title,
                p.first_seen,
                p.last_seen,
                p.occurrences,
                0,
                0,
                p.first_build,
                p.record_id,
            )
            for sig, p in sorted(f.problems.items())
        ],
        "ON CONFLICT (signature) DO UPDATE SET "
        "first_seen = CASE WHEN excluded.first_seen < problems.first_seen "
        "THEN excluded.first_seen ELSE problems.first_seen END, "
        "last_seen = CASE WHEN excluded.last_seen > problems.last_seen "
        "THEN excluded.last_seen ELSE problems.last_seen END, "
        "occurrences = problems.occurrences + excluded.occurrences, "
        "title = excluded.title, "
        # The earliest record: `reprocess` counts old records while writers
        # count new ones, in either order.
        "record_id = CASE WHEN excluded.first_seen < problems.first_seen "
        "THEN excluded.record_id ELSE problems.record_id END, "
        "first_build = CASE WHEN excluded.first_seen < problems.first_seen "
        "THEN excluded.first_build ELSE problems.first_build END "
        "RETURNING signature, id",
    )
    for sig, problem_id in returned:
        ids[str(sig)] = int(str(problem_id))
    _later(
        session,
        later,
        "INSERT INTO problem_records (problem_id, record)",
        sorted((ids[sig], record) for sig, record in f.problem_records),
        "ON CONFLICT (record) DO NOTHING",
    )
    _later(
        session,
        later,
        "INSERT INTO problem_days (problem_id, day, n)",
        sorted((ids[sig], day, n) for (sig, day), n in f.problem_days.items()),
        "ON CONFLICT (problem_id, day) DO UPDATE SET n = problem_days.n + excluded.n",
    )
    new_builds = _fetch_all(
        session,
        "INSERT INTO problem_builds (problem_id, build, n)",
        sorted((ids[sig], build, n) for (sig, build), n in f.problem_builds.items()),
        "ON CONFLICT (problem_id, build) DO UPDATE SET n = problem_builds.n + excluded.n "
        "RETURNING problem_id, build, n",
    )
    new_machines = _fetch_all(
        session,
        "INSERT INTO problem_machines (problem_id, machine_id, n, last_seen)",
        sorted(
            (ids[sig], machine, n, f.problem_machine_seen[sig, machine])
            for (sig, machine), n in f.problem_machines.items()
        ),
        "ON CONFLICT (problem_id, machine_id) DO UPDATE SET "
        "n = problem_machines.n + excluded.n, "
        "last_seen = CASE WHEN excluded.last_seen > problem_machines.last_seen "
        "THEN excluded.last_seen ELSE problem_machines.last_seen END "
        "RETURNING problem_id, machine_id, n",
    )
    added_builds = _was_new(new_builds, {(ids[s], b): n for (s, b), n in f.problem_builds.items()})
    added_machines = _was_new(
        new_machines, {(ids[s], m): n for (s, m), n in f.problem_machines.items()}
    )
    per_problem: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for problem_id, _ in added_builds:
        per_problem[problem_id][0] += 1
    for problem_id, _ in added_machines:
        per_problem[problem_id][1] += 1
    for problem_id, (builds, machines) in sorted(per_problem.items()):
        later.append(
            (
                "UPDATE problems SET builds = builds + ?, machines = machines + ? WHERE id = ?",
                (builds, machines, problem_id),
            )
        )
    problems_per_build = Counter(build for _, build in added_builds)
    for build, n in sorted(problems_per_build.items()):
        later.append(("UPDATE builds SET problems = problems + ? WHERE build = ?", (n, build)))


def _was_new(
    returned: Sequence[tuple[object, ...]], added: dict[tuple[int, str], int]
) -> list[tuple[int, str]]:
    """Keys whose row now holds exactly what this batch added: the row is new.

    The upsert hands back each row after the change; a row that existed
    already holds more than this batch's share (every count is at least 1).
    """
    return sorted(
        (int(str(pid)), str(key))
        for pid, key, n in returned
        if int(str(n)) == added[int(str(pid)), str(key)]
    )
