"""A real telemd process in a temporary directory, for whole-process tests.

The daemon runs as `python -m telemd.daemon -f CONFIG`; its stderr is read
by a thread so tests can await a log line (readiness, reload) instead of
sleeping.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from telemd.client import Client

BIN = Path(sys.executable).parent
# A second, unprivileged uid for the tests that need one: run a command as nobody.
NOBODY_UID = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY_UID}", f"--regid={NOBODY_UID}", "--clear-groups"]


@contextlib.contextmanager
def directory_for_nobody(tmp_path: Path, purpose: str) -> Iterator[Path]:
    """A directory nobody can reach (pytest's tmp_path is root's alone), removed
    afterwards; skips unless running as root with setpriv, which AS_NOBODY needs."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip(f"needs root and setpriv to {purpose}")
    public = Path("/tmp") / f"telemd-{os.getpid()}-{tmp_path.name}"
    public.mkdir(mode=0o755)
    try:
        yield public
    finally:
        shutil.rmtree(public, ignore_errors=True)


def command(name: str) -> str:
    """An installed console script of this environment."""
    return str(BIN / name)


class DaemonHarness:
    def __init__(self, root: Path, **settings: Any) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.socket = str(root / "run" / "telem-0")
        self.control_socket = str(root / "run" / "control")
        self.spool_dir = root / "spool"
        self.state_dir = root / "state"
        self.opt_in_file = root / "opt-in"
        self.config = root / "telemd.toml"
        self.settings: dict[str, Any] = {
            "socket_path": self.socket,
            "control_socket_path": str(root / "run" / "control"),
            "spool_dir": str(self.spool_dir),
            "state_dir": str(self.state_dir),
            "opt_in_file": str(self.opt_in_file),
            "static_machine_id_file": str(root / "static-machine-id"),
            "log_level": "debug",
        }
        self.write_config(**settings)
        self.opt_in()
        self.proc: subprocess.Popen[str] | None = None
        self._terminated = False
        self.log: list[str] = []
        self._log_changed = threading.Condition()

    @property
    def env(self) -> dict[str, str]:
        """An environment whose clients find this daemon through TELEMD_CONFIG."""
        return dict(os.environ, TELEMD_CONFIG=str(self.config))

    def write_config(self, **settings: Any) -> None:
        self.settings.update(settings)
        lines = []
        for key, value in self.settings.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f'{key} = "{value}"')
        self.config.write_text("\n".join(lines) + "\n")

    def opt_in(self) -> None:
        self.opt_in_file.touch()

    def opt_out(self) -> None:
        self.opt_in_file.unlink(missing_ok=True)

    # The process -------------------------------------------------------

    def start(
        self,
        timeout: float = 20.0,
        wrapper: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
        ready: str | None = " ready: ",
    ) -> None:
        """Start the daemon (under `wrapper`, such as strace) and await its `ready` line."""
        self._terminated = False
        mark = len(self.log)
        self.proc = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "telemd.daemon", "-f", str(self.config)],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        threading.Thread(target=self._read_log, args=(self.proc,), daemon=True).start()
        if ready is not None and not self.wait_for_log(ready, timeout, after=mark):
            raise RuntimeError("telemd did not become ready:\n" + "\n".join(self.log))

    def run_to_exit(self, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run the daemon where it is expected to refuse to start; its exit and output."""
        return subprocess.run(
            [sys.executable, "-m", "telemd.daemon", "-f", str(self.config)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._log_changed:
                self.log.append(line.rstrip("\n"))
                self._log_changed.notify_all()
        with self._log_changed:
            self._log_changed.notify_all()

    def wait_for_log(self, text: str, timeout: float = 10.0, after: int = 0) -> bool:
        """Wait until a log line at index >= `after` contains `text`."""
        deadline = time.monotonic() + timeout
        with self._log_changed:
            while True:
                if any(text in line for line in self.log[after:]):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc is not None and self.proc.poll() is not None):
                    return any(text in line for line in self.log[after:])
                self._log_changed.wait(remaining)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self._terminated = self._terminated or signum in (signal.SIGTERM, signal.SIGINT)
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM (unless the test sent one already) and wait for the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None and not self._terminated:
            self.signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    # What the daemon stored ---------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        """Every spooled record with its host row, oldest first."""
        path = self.spool_dir / "spool.sqlite"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute(
                "SELECT r.*, h.machine_id, h.arch, h.host_type, h.build, h.kernel_version,"
                " h.system_name, h.board_name, h.cpu_model, h.bios_version, h.boot_id"
                " FROM records r JOIN hosts h ON h.id = r.host_id ORDER BY r.seq"
            ).fetchall()
        finally:
            conn.close()
        return [dict(row) for row in rows]

    def record_ids(self) -> set[str]:
        return {row["record_id"] for row in self.records()}

    def client(self, timeout: float = 10.0) -> Client:
        return Client(socket_path=self.socket, timeout=timeout)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate`; only for what offers no event to await (legacy clients
    get no acknowledgement by design)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
