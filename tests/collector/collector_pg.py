"""A throwaway PostgreSQL server in a temporary directory (initdb + pg_ctl).

Used by the collector tests and by bench/collector.py. As root, the server
runs as the `postgres` system user (postgres refuses to run as root), through
`runuser`. Every missing piece is reported by name, so callers can skip.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from ports import free_port

SERVER_USER = "postgres"


def find_tool(name: str) -> str | None:
    """`name` on PATH, else in Debian's /usr/lib/postgresql/<version>/bin."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
        key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0,
    )
    return candidates[-1] if candidates else None


def missing_reason() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    for tool in ("initdb", "pg_ctl"):
        if find_tool(tool) is None:
            return f"{tool} not found (apt-get install postgresql)"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root and runuser not found"
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run postgres"
    return None


@dataclass
class PostgresServer:
    datadir: str
    port: int
    user: str = "telemd"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    keep: bool = False  # a server on a directory of the caller's, left in place at stop

    def stop(self) -> None:
        mode = "fast" if self.keep else "immediate"
        _run(["pg_ctl", "-D", self.datadir, "-m", mode, "-w", "stop"], check=False)
        if not self.keep:
            shutil.rmtree(os.path.dirname(self.datadir), ignore_errors=True)


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    tool = find_tool(argv[0])
    assert tool is not None, argv[0]
    command = [tool, *argv[1:]]
    if os.geteuid() == 0:
        command = ["runuser", "-u", SERVER_USER, "--", *command]
    # cwd "/": the server user may not be allowed into the caller's directory.
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/")
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:2])} failed: {result.stderr.strip()[-2000:]}")
    return result


def start(*, durable: bool = False, top: str | None = None) -> PostgresServer:
    """initdb and start a server on a free loopback port; `durable=False` turns fsync off.

    With `top`, the cluster lives in that directory, is reused if it holds
    one already, and stays there when stopped (benchmarks' databases).
    """
    keep = top is not None
    if top is None:
        top = tempfile.mkdtemp(prefix="telemd-pg-")
    os.makedirs(top, exist_ok=True)
    os.chmod(top, 0o755)
    datadir = os.path.join(top, "data")
    if os.geteuid() == 0:
        record = pwd.getpwnam(SERVER_USER)
        os.chown(top, record.pw_uid, record.pw_gid)
    if not os.path.exists(os.path.join(datadir, "PG_VERSION")):
        _run(["initdb", "-D", datadir, "-A", "trust", "-U", "telemd", "-E", "UTF8", "--no-sync"])
    port = free_port()
    options = f"-p {port} -k {top} -c listen_addresses=127.0.0.1"
    if not durable:
        options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    log = os.path.join(top, "server.log")
    try:
        _run(["pg_ctl", "-D", datadir, "-o", options, "-l", log, "-w", "-t", "60", "start"])
    except RuntimeError as exc:
        with open(log, errors="replace") as f:
            raise RuntimeError(f"{exc}\n{f.read()[-2000:]}") from None
    return PostgresServer(datadir, port, keep=keep)


def each_engine(engines: Iterable[str], workdir: str) -> Iterator[tuple[str, Callable[[str], str]]]:
    """For benchmarks: each engine named with a function from a database name to a
    new database's URL; SQLite files in `workdir`, PostgreSQL on a server of its
    own, stopped once its turn ends. An engine that cannot run here is said and skipped."""
    for engine in engines:
        if engine == "sqlite":
            yield engine, lambda name: f"sqlite:///{workdir}/{name}.db"
        elif engine == "postgresql":
            reason = missing_reason()
            if reason:
                print(f"  postgresql skipped: {reason}")
                continue
            server = start(durable=True)
            try:
                yield engine, server.create_database
            finally:
                server.stop()
