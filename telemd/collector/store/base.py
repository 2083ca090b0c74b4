"""The collector's storage: one schema on SQLite or PostgreSQL, one interface.

`Store` holds the SQL that both engines share (schema, migrations, queries,
retention); an engine module (`sqlite`, `postgres`) supplies a
`Session` per connection, which knows its driver's placeholders, transactions
and fastest bulk insert. All methods are blocking: the ASGI app calls them
from worker threads, and every write goes through one writer thread
(`telemd.collector.ingest.writer`), so ids grow in commit order, which keyset
pagination relies on.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from telemd.collector.events.schema import EVENTS_MIGRATION, Statement, statement_text
from telemd.collector.events.store import purge_events
from telemd.collector.ingest.records import RECORD_COLUMNS, Row
from telemd.collector.problems import retention as problem_retention
from telemd.collector.problems import rollups
from telemd.collector.problems.signature import Problem, reader_of
from telemd.collector.problems.skip_frames import FIRST_SKIP_FRAMES, SkipFrames
from telemd.collector.store import fulltext
from telemd.collector.store import rollups as record_rollups
from telemd.collector.store.query import SELECT_COLUMNS, RecordQuery, summary_json
from telemd.collector.store.search import (
    SEARCH_TIMEOUT_MS,
    STORED_WORDS_MIGRATION,
    search_migration,
    select_records,
)
from telemd.errors import ConfigError, TelemetryError

SCHEMA_TABLE = "telemd_collector_schema"

# Versioned migrations, applied in order at start; never edit a released one,
# append a new one. `{id_column}`, `{json_column}` and `{blob_column}` are
# the per-engine words; a statement that differs more maps engine names to
# texts, and a migration that differs more still is a function of the
# engine's name.
Migration = tuple[Statement, ...] | Callable[[str], tuple[Statement, ...]]
MIGRATIONS: tuple[Migration, ...] = (
    (
        """CREATE TABLE records (
            id {id_column},
            received_at DOUBLE PRECISION NOT NULL,
            record_id TEXT NOT NULL UNIQUE,
            tid TEXT NOT NULL,
            record_format_version INTEGER NOT NULL,
            classification TEXT NOT NULL,
            severity INTEGER NOT NULL,
            machine_id TEXT NOT NULL,
            creation_timestamp BIGINT NOT NULL,
            arch TEXT NOT NULL,
            host_type TEXT NOT NULL,
            build TEXT NOT NULL,
            kernel_version TEXT NOT NULL,
            payload_format_version BIGINT NOT NULL,
            system_name TEXT NOT NULL,
            board_name TEXT NOT NULL,
            cpu_model TEXT NOT NULL,
            bios_version TEXT NOT NULL,
            event_id TEXT NOT NULL,
            payload TEXT NOT NULL
        )""",
        # One index per query filter, each ending in id for newest-first pages.
        "CREATE INDEX records_classification ON records (classification, id)",
        "CREATE INDEX records_severity ON records (severity, id)",
        "CREATE INDEX records_machine ON records (machine_id, id)",
        "CREATE INDEX records_build ON records (build, id)",
        "CREATE INDEX records_received ON records (received_at)",
    ),
    (
        # Tokens of telemd.collector.access: the hash only, never the token.
        """CREATE TABLE api_tokens (
            name TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL UNIQUE,
            scopes TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            last_used_at DOUBLE PRECISION
        )""",
    ),
    EVENTS_MIGRATION,
    (
        # Problems (telemd.collector.problems) and the counts kept at ingest.
        """CREATE TABLE problems (
            id {id_column},
            kind TEXT NOT NULL,
            signature TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL,
            first_seen DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL,
            occurrences BIGINT NOT NULL,
            machines BIGINT NOT NULL,
            builds BIGINT NOT NULL,
            first_build TEXT NOT NULL,
            record_id TEXT NOT NULL
        )""",
        "CREATE INDEX problems_occurrences ON problems (occurrences, id)",
        "CREATE INDEX problems_machines ON problems (machines, id)",
        "CREATE INDEX problems_last_seen ON problems (last_seen, id)",
        "CREATE INDEX problems_first_build ON problems (first_build)",
        """CREATE TABLE problem_records (
            problem_id BIGINT NOT NULL, record BIGINT NOT NULL, PRIMARY KEY (problem_id, record)
        )""",
        """CREATE TABLE problem_days (
            problem_id BIGINT NOT NULL, day INTEGER NOT NULL, n BIGINT NOT NULL,
            PRIMARY KEY (problem_id, day)
        )""",
        "CREATE INDEX problem_days_day ON problem_days (day, problem_id)",
        """CREATE TABLE problem_builds (
            problem_id BIGINT NOT NULL, build TEXT NOT NULL, n BIGINT NOT NULL,
            PRIMARY KEY (problem_id, build)
        )""",
        "CREATE INDEX problem_builds_build ON problem_builds (build, problem_id)",
        """CREATE TABLE problem_machines (
            problem_id BIGINT NOT NULL, machine_id TEXT NOT NULL, n BIGINT NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL, PRIMARY KEY (problem_id, machine_id)
        )""",
        """CREATE TABLE builds (
            build TEXT PRIMARY KEY, first_seen DOUBLE PRECISION NOT NULL,
            last_seen DOUBLE PRECISION NOT NULL, machines BIGINT NOT NULL,
            records BIGINT NOT NULL, problems BIGINT NOT NULL, crashes BIGINT NOT NULL
        )""",
        "CREATE INDEX builds_first_seen ON builds (first_seen)",
        """CREATE TABLE build_machines (
            build TEXT NOT NULL, machine_id TEXT NOT NULL, PRIMARY KEY (build, machine_id)
        )""",
        """CREATE TABLE build_days (
            build TEXT NOT NULL, day INTEGER NOT NULL, machines BIGINT NOT NULL,
            records BIGINT NOT NULL, PRIMARY KEY (build, day)
        )""",
        """CREATE TABLE build_day_machines (
            build TEXT NOT NULL, day INTEGER NOT NULL, machine_id TEXT NOT NULL,
            PRIMARY KEY (build, day, machine_id)
        )""",
        """CREATE TABLE days (
            day INTEGER PRIMARY KEY, machines BIGINT NOT NULL, records BIGINT NOT NULL
        )""",
        """CREATE TABLE day_machines (
            day INTEGER NOT NULL, machine_id TEXT NOT NULL, PRIMARY KEY (day, machine_id)
        )""",
        """CREATE TABLE kind_days (
            kind TEXT NOT NULL, day INTEGER NOT NULL, records BIGINT NOT NULL,
            PRIMARY KEY (kind, day)
        )""",
        # Moved on by `reprocess`, so that writers forget the keys they knew.
        "CREATE TABLE rollup_epoch (epoch BIGINT NOT NULL)",
        "INSERT INTO rollup_epoch (epoch) VALUES (0)",
        "CREATE TABLE skip_frames (pattern TEXT PRIMARY KEY)",
        "INSERT INTO skip_frames (pattern) VALUES "
        + ", ".join(f"('{pattern}')" for pattern in FIRST_SKIP_FRAMES),
    ),
    search_migration,
    record_rollups.migration,
    (
        # The console's logins (telemd.collector.console.sessions): the
        # session's hash and the hash of the token it was made from, so that
        # revoking the token ends its sessions.
        """CREATE TABLE console_sessions (
            session_hash TEXT PRIMARY KEY,
            token_hash TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL
        )""",
        "CREATE INDEX console_sessions_expiry ON console_sessions (expires_at)",
        # The console's machine page: the problems of one machine.
        "CREATE INDEX problem_machines_machine ON problem_machines (machine_id)",
    ),
    (
        # The overview's top problems read each day's largest counts in order
        # (telemd.collector.problems.top); the index serves lookups by day too.
        "DROP INDEX problem_days_day",
        "CREATE INDEX problem_days_top ON problem_days (day, n, problem_id)",
        # A `reprocess` under way (telemd.collector.problems.reprocess): one
        # row, its epoch, the last record it recounts and the last it has.
        """CREATE TABLE reprocess_state (
            epoch BIGINT NOT NULL, mark BIGINT NOT NULL, done BIGINT NOT NULL
        )""",
    ),
    (
        # problem_records keyed by record, so that the retention purge finds
        # the problems of the records it deletes (telemd.collector.problems.retention).
        {
            "sqlite": "CREATE TABLE problem_records_by_record "
            "(record INTEGER PRIMARY KEY, problem_id BIGINT NOT NULL)",
            "postgresql": "ALTER TABLE problem_records DROP CONSTRAINT problem_records_pkey",
        },
        {
            "sqlite": "INSERT INTO problem_records_by_record (record, problem_id) "
            "SELECT record, min(problem_id) FROM problem_records GROUP BY record",
            "postgresql": "ALTER TABLE problem_records ADD PRIMARY KEY (record)",
        },
        {"sqlite": "DROP TABLE problem_records"},
        {"sqlite": "ALTER TABLE problem_records_by_record RENAME TO problem_records"},
        "CREATE INDEX problem_records_problem ON problem_records (problem_id, record)",
    ),
    STORED_WORDS_MIGRATION,
    fulltext.MIGRATION,
    (
        # A summary since a moment counts part of a day's records per machine
        # (store.rollups.machine_counts): from this index alone, without
        # reading each record's row.
        "DROP INDEX records_received",
        "CREATE INDEX records_received ON records (received_at, machine_id)",
    ),
    record_rollups.CLASS_TOTALS_MIGRATION,
)
SCHEMA_VERSION = len(MIGRATIONS)


class StorageError(TelemetryError):
    """The database failed or cannot be reached."""


class SearchTimeout(TelemetryError):
    """A search ran past its time limit (SEARCH_TIMEOUT_MS) and was cancelled."""


class Session(Protocol):
    """One connection, used by one thread at a time. SQL uses `?` placeholders."""

    def fetch(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]: ...

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run a statement; return the number of rows it changed."""

    def many(
        self, head: str, rows: Sequence[Sequence[object]], tail: str
    ) -> list[tuple[str, Sequence[object]]]:
        """`head` (INSERT INTO t (columns)) of `rows`, then `tail`, as the engine takes it best.

        Values are str, int or float, one type per column.
        """

    def run_all(self, statements: Sequence[tuple[str, Sequence[object]]]) -> None:
        """Run statements in order whose results nobody reads.

        PostgreSQL takes them in one round trip (pipeline mode), not one each.
        """

    def begin(self) -> None:
        """Open a write transaction (taking the database's write lock where it has one).

        Outside begin/commit a session is in autocommit mode.
        """

    def commit(self) -> None: ...

    def rollback(self) -> None: ...

    def lock_schema(self) -> None:
        """Inside a transaction: keep other processes from migrating at the same time."""

    def lock_purge(self) -> None:
        """Inside a transaction: keep other processes from purging at the same time.

        A purge counts what it deletes before deleting it; two at once would
        both count the same records out of the rollups.
        """

    def insert(self, rows: Sequence[Row], received_at: float) -> dict[str, int]:
        """Insert the rows whose record_id is new; map each one stored to its id."""

    def close(self) -> None: ...


class Engine(Protocol):
    name: str
    id_column: str
    # The driver's exception classes, turned into StorageError by the Store.
    errors: tuple[type[Exception], ...]
    # Those of a statement cancelled at its time limit: SearchTimeout.
    timeouts: tuple[type[Exception], ...]

    def connect(self) -> Session: ...


@dataclass(frozen=True, slots=True)
class Retention:
    """Days to keep records (0 = forever), with per-classification overrides."""

    days: int = 0
    overrides: Mapping[str, int] = field(default_factory=dict)


def open_engine(url: str) -> Engine:
    """Pick the engine from the URL scheme; driver modules load only when used."""
    if url.startswith("sqlite:///"):
        from telemd.collector.store.sqlite import SqliteEngine

        return SqliteEngine(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        try:
            from telemd.collector.store.postgres import PostgresEngine
        except ImportError as exc:
            raise ConfigError(f"db {url.split('://')[0]}:// needs psycopg 3: {exc}") from None
        return PostgresEngine(url)
    raise ConfigError(
        f"db must be sqlite:///PATH or postgresql://..., got {url.split('://')[0]!r}:// URL"
    )


class Store:
    def __init__(self, engine: Engine, readers: int = 4, with_rollups: bool = True) -> None:
        self.engine = engine
        self.readers = readers
        # Problems and their counts, kept in the transaction that stores the records.
        self.with_rollups = with_rollups
        self.skip_frames = SkipFrames()
        self.known_keys = rollups.KnownKeys()
        self._pool: queue.LifoQueue[Session] = queue.LifoQueue()
        self._free_slots = threading.BoundedSemaphore(readers)
        self._writer: Session | None = None

    @contextmanager
    def _reader(self) -> Iterator[Session]:
        with self._free_slots:
            try:
                session = self._pool.get_nowait()
            except queue.Empty:
                with self._translated():
                    session = self.engine.connect()
            try:
                with self._translated():
                    yield session
            except BaseException:
                session.close()
                raise
            self._pool.put(session)

    @contextmanager
    def _translated(self) -> Iterator[None]:
        """Driver errors become StorageError, which the app answers with 503."""
        try:
            yield
        except self.engine.timeouts as exc:
            raise SearchTimeout(
                f"the search took longer than {SEARCH_TIMEOUT_MS / 1000:g} s and was stopped;"
                " narrow it with since, until or other filters, or more words"
            ) from exc
        except self.engine.errors as exc:
            raise StorageError(f"{self.engine.name}: {exc}".strip()) from exc

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A write transaction on the writer's session; a broken session is dropped."""
        session = self._write_session()
        try:
            with self._translated():
                session.begin()
                try:
                    yield session
                    session.commit()
                except BaseException:
                    session.rollback()
                    raise
        except StorageError:
            session.close()
            self._writer = None
            raise

    def _write_session(self) -> Session:
        if self._writer is None:
            with self._translated():
                self._writer = self.engine.connect()
        return self._writer

    def reading(self) -> AbstractContextManager[Session]:
        """A session for reads, from the pool (any thread)."""
        return self._reader()

    def transaction(self) -> AbstractContextManager[Session]:
        """A write transaction (the writer thread only, in a running collector)."""
        return self._transaction()

    def close(self) -> None:
        while not self._pool.empty():
            self._pool.get_nowait().close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -- schema --------------------------------------------------------------

    def migrate(self, target: int = SCHEMA_VERSION) -> int:
        """Apply the migrations this database lacks, up to `target`; return the version."""
        with self._transaction() as session:
            session.lock_schema()
            session.execute(f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE} (version INTEGER NOT NULL)")
            rows = session.fetch(f"SELECT max(version) FROM {SCHEMA_TABLE}")
            current = rows[0][0] or 0
            if current > SCHEMA_VERSION:
                raise StorageError(
                    f"database schema version {current} is newer than this collector's "
                    f"{SCHEMA_VERSION}; upgrade telemd"
                )
            for version in range(current + 1, target + 1):
                migration = MIGRATIONS[version - 1]
                if callable(migration):
                    migration = migration(self.engine.name)
                for statement in migration:
                    text = statement_text(statement, self.engine.name, self.engine.id_column)
                    if text is not None:
                        session.execute(text)
                session.execute(f"INSERT INTO {SCHEMA_TABLE} (version) VALUES (?)", (version,))
        return max(current, target)

    # -- writes (the writer thread only) -------------------------------------

    def sign(self, rows: Sequence[Row]) -> rollups.Signed | None:
        """The problems of rows about to be written, read in the caller's thread.

        Any thread may call it, so that the one writer thread does not spend
        its time on signatures; None until the writer has read the skip list.
        """
        skip = self.skip_frames.latest
        if skip is None or not self.with_rollups:
            return None
        problems: dict[str, Problem | None] = {}
        for row in rows:
            read = reader_of(str(row[_CLASSIFICATION]))
            if read is not None:
                problems[str(row[_RECORD_ID])] = read(str(row[_PAYLOAD]), skip)
        return rollups.Signed(skip, problems)

    def write(
        self,
        batches: Sequence[Sequence[Row]],
        received_at: float,
        signed: Sequence[rollups.Signed | None] = (),
    ) -> list[dict[str, int]]:
        """Store several batches in one transaction; per batch, {record_id: id} of the new.

        `signed`, per batch, holds what `sign` read of it; the rest is read here.
        """
        try:
            with self._transaction() as session:
                stored = [session.insert(rows, received_at) if rows else {} for rows in batches]
                new_rows: list[Row] = []
                for rows, ids in zip(batches, stored, strict=True):
                    # Record ids are unique within a batch: all stored, all new.
                    new_rows += rows if len(ids) == len(rows) else [r for r in rows if r[0] in ids]
                if new_rows:
                    self._index_and_count(session, batches, stored, new_rows, signed, received_at)
        except BaseException:
            self.known_keys.discard()
            raise
        self.known_keys.settle()
        return stored

    def _index_and_count(
        self,
        session: Session,
        batches: Sequence[Sequence[Row]],
        stored: list[dict[str, int]],
        new_rows: list[Row],
        signed: Sequence[rollups.Signed | None],
        received_at: float,
    ) -> None:
        index_new = fulltext.INDEX_NEW_RECORDS.get(self.engine.name)
        if index_new is not None:
            session.execute(index_new, (min(min(ids.values()) for ids in stored if ids),))
        # Counted in C, once: the rollups below cost per distinct value, not per record.
        tally: Counter[tuple[str, int, str, str]] = Counter(map(_TALLY_KEY, new_rows))
        later = record_rollups.additions(self.engine.name, tally, received_at)
        if self.with_rollups:
            hosts: Counter[tuple[str, str, float, str]] = Counter()
            for (classification, _, machine, build), n in tally.items():
                hosts[build, machine, received_at, classification] += n
            problems = self._problems(session, batches, stored, signed, received_at)
            rollups.apply(session, rollups.fold_counted(hosts, problems), self.known_keys, later)
        session.run_all(later)

    def _problems(
        self,
        session: Session,
        batches: Sequence[Sequence[Row]],
        stored: list[dict[str, int]],
        signed: Sequence[rollups.Signed | None],
        received_at: float,
    ) -> list[tuple[rollups.Stored, Problem | None]]:
        """The new records that may report a problem, each with the one it reports."""
        skip = self.skip_frames.current(session)
        found: list[tuple[rollups.Stored, Problem | None]] = []
        for i, (rows, ids) in enumerate(zip(batches, stored, strict=True)):
            pre = signed[i] if i < len(signed) else None
            # Read with another skip list: `reprocess` or an edit came between.
            known = pre.problems if pre is not None and pre.skip is skip else {}
            for row in rows:
                read, record_id = reader_of(str(row[_CLASSIFICATION])), str(row[_RECORD_ID])
                if read is None or record_id not in ids:
                    continue
                record = _stored(ids[record_id], received_at, row)
                if record_id in known:
                    found.append((record, known[record_id]))
                else:
                    found.append((record, read(record.payload, skip)))
        return found

    def purge(self, retention: Retention, now: float) -> int:
        """Delete records and events past their retention; return how many went."""
        with self._transaction() as session:
            session.lock_purge()
            deleted = 0
            doomed: list[tuple[str, tuple[object, ...]]] = []
            for classification, days in retention.overrides.items():
                if days > 0:
                    doomed.append(
                        (
                            "classification = ? AND received_at < ?",
                            (classification, now - days * 86400),
                        )
                    )
            if retention.days > 0:
                exempt = list(retention.overrides)
                marks = ", ".join("?" * len(exempt))
                doomed.append(
                    (
                        "received_at < ?"
                        + (f" AND classification NOT IN ({marks})" if exempt else ""),
                        (now - retention.days * 86400, *exempt),
                    )
                )
                deleted += purge_events(session, now - retention.days * 86400)
            for where, params in doomed:
                record_rollups.forget(session, self.engine.name, where, params)
                problem_retention.forget(session, self.engine.name, where, params)
                deleted += session.execute(f"DELETE FROM records WHERE {where}", params)
        return deleted

    # -- reads (any thread) --------------------------------------------------

    def ping(self) -> None:
        with self._reader() as session:
            session.fetch(f"SELECT max(version) FROM {SCHEMA_TABLE}")

    def record(self, record_id: str) -> tuple[Any, ...] | None:
        """The SELECT_COLUMNS row of one record, by record_id."""
        with self._reader() as session:
            rows = session.fetch(
                f"SELECT {', '.join(SELECT_COLUMNS)} FROM records WHERE record_id = ?", (record_id,)
            )
        return rows[0] if rows else None

    def records(self, query: RecordQuery) -> list[tuple[Any, ...]]:
        """SELECT_COLUMNS rows matching `query`, newest first."""
        with self._reader() as session:
            return select_records(session, query, self.engine.name)

    def stored_by_severity(self) -> dict[int, int]:
        """Records in the database per severity, from the rollups."""
        with self._reader() as session:
            return {int(s): int(n) for s, n in record_rollups.severity_counts(session)}

    def summary(self, since: float | None = None) -> dict[str, Any]:
        """Counts per classification and machine, from the rollups."""
        with self._reader() as session:
            counts = record_rollups.class_counts(session, since)
            recent = record_rollups.recent_severe(session, counts, since)
            machines = record_rollups.machine_counts(session, since)
        return summary_json(counts, recent, machines, since)


_COLUMN = {name: i for i, name in enumerate(RECORD_COLUMNS)}
_RECORD_ID, _CLASSIFICATION, _SEVERITY, _MACHINE_ID, _BUILD, _PAYLOAD = (
    _COLUMN[name]
    for name in ("record_id", "classification", "severity", "machine_id", "build", "payload")
)
_TALLY_KEY = itemgetter(_CLASSIFICATION, _SEVERITY, _MACHINE_ID, _BUILD)


def _stored(record: int, received_at: float, row: Row) -> rollups.Stored:
    """What the counts need of a row in RECORD_COLUMNS order."""
    return rollups.Stored(
        record,
        str(row[_RECORD_ID]),
        received_at,
        str(row[_CLASSIFICATION]),
        str(row[_MACHINE_ID]),
        str(row[_BUILD]),
        str(row[_PAYLOAD]),
    )


def insert_sql(placeholder: str) -> str:
    """The plain INSERT of one row, columns in store order (received_at first)."""
    columns = ("received_at", *RECORD_COLUMNS)
    return (
        f"INSERT INTO records ({', '.join(columns)}) "
        f"VALUES ({', '.join([placeholder] * len(columns))})"
    )
