"""Fixtures: a real PostgreSQL, fresh databases per engine, running collectors.

Every test that takes `db_url` or `server` runs twice, on SQLite and on
PostgreSQL; the PostgreSQL run skips, naming the missing tool, where initdb
or pg_ctl is absent.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

pytest.importorskip("starlette", reason="the collector extra is not installed")

import collector_pg
from collector_proc import SECOND_TID, CollectorProcess

ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres() -> Iterator[collector_pg.PostgresServer]:
    pytest.importorskip("psycopg", reason="PostgreSQL tests need psycopg 3")
    reason = collector_pg.missing_reason()
    if reason:
        pytest.skip(f"PostgreSQL tests need a server: {reason}")
    server = collector_pg.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def new_db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], str]:
    """Make an empty database of the engine named: a file, or a PostgreSQL database."""

    def make(engine: str) -> str:
        name = "t" + uuid.uuid4().hex[:12]
        if engine == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('db') / name}.db"
        server: collector_pg.PostgresServer = request.getfixturevalue("postgres")
        return server.create_database(name)

    return make


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(engine: str, new_db_url: Callable[[str], str]) -> str:
    return new_db_url(engine)


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(certificate, key, CA bundle) for 127.0.0.1 and localhost, from trustme."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    directory = tmp_path_factory.mktemp("tls")
    paths = [str(directory / n) for n in ("cert.pem", "key.pem", "ca.pem")]
    cert.cert_chain_pems[0].write_to_path(paths[0])
    cert.private_key_pem.write_to_path(paths[1])
    ca.cert_pem.write_to_path(paths[2])
    return paths[0], paths[1], paths[2]


@pytest.fixture
def start_collector(
    engine: str, new_db_url: Callable[[str], str], tmp_path: Any
) -> Iterator[Callable[..., CollectorProcess]]:
    """Start collectors with their own fresh database; all are stopped after the test."""
    started: list[CollectorProcess] = []

    def start(*, db_url: str | None = None, **kwargs: Any) -> CollectorProcess:
        proc = CollectorProcess(db_url or new_db_url(engine), str(tmp_path), **kwargs)
        started.append(proc)
        return proc.wait_ready()

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def server(
    engine: str,
    new_db_url: Callable[[str], str],
    tmp_path_factory: pytest.TempPathFactory,
    tls_files: tuple[str, str, str],
) -> Iterator[CollectorProcess]:
    """One HTTPS collector per engine, shared by a module's tests.

    Tests that share it keep to their own classification or machine id.
    """
    workdir = str(tmp_path_factory.mktemp("collector"))
    proc = CollectorProcess(
        new_db_url(engine),
        workdir,
        tls=tls_files,
        args=["--tid", "6907c830-eed9-4ce9-81ae-76daf8d88f0f", "--tid", SECOND_TID],
    )
    try:
        yield proc.wait_ready()
    finally:
        proc.stop()
        if os.environ.get("TELEMD_TEST_SHOW_LOGS"):
            print(proc.log())


@pytest.fixture
def store(db_url: str) -> Iterator[Any]:
    """A migrated store on a fresh database of each engine."""
    from telemd.collector.store.base import Store, open_engine

    opened = Store(open_engine(db_url))
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def stores(db_url: str) -> Iterator[Callable[[], Any]]:
    """Opens migrated stores on one fresh database of each engine, as several
    collector processes (or a collector and the CLI) would; closes them after."""
    from telemd.collector.store.base import Store, open_engine

    opened: list[Store] = []

    def make() -> Store:
        store = Store(open_engine(db_url))
        store.migrate()
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
