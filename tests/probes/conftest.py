"""Fixtures for whole-process probe tests: a real telemd, and a probe configuration.

The probes read their own keys and the shared paths from the file given with
`-f`; the daemon gets its own file, since its loader does not know the
probe keys yet.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonHarness, command
from integration.conftest import daemon, harness  # noqa: F401  (fixtures)

ProbeConfig = Callable[..., Path]


@pytest.fixture
def probe_config(harness: DaemonHarness) -> ProbeConfig:  # noqa: F811
    """Write a probe configuration for `harness`'s daemon; keyword arguments add probe keys.

    Privacy filters are lifted unless `filters=True`: test programs live outside /usr.
    """

    def write(filters: bool = False, **keys: Any) -> Path:
        no_filters = harness.root / "no-privacy-filters"
        if filters:
            no_filters.unlink(missing_ok=True)
        else:
            no_filters.touch()
        settings: dict[str, Any] = {
            "socket_path": harness.socket,
            "opt_in_file": str(harness.opt_in_file),
            "no_privacy_filters_file": str(no_filters),
            "state_dir": str(harness.state_dir),
            **keys,
        }
        path = harness.root / "probes.toml"
        path.write_text("".join(f"{key} = {toml(value)}\n" for key, value in settings.items()))
        return path

    return write


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def probe(name: str, *args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run an installed probe command to its end."""
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", 60)
    return subprocess.run([command(name), *args], check=False, **kwargs)


def need(tool: str, package: str) -> str:
    """The path of `tool`, or skip the test naming the Debian package that has it."""
    path = shutil.which(tool) or next(
        (p for p in (f"/lib/systemd/{tool}", f"/usr/lib/systemd/{tool}") if os.access(p, os.X_OK)),
        None,
    )
    if path is None:
        pytest.skip(f"needs {tool} (Debian package {package})")
    return path


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TMPDIR for the probes, checked to be empty afterwards (no core left behind)."""
    directory = tmp_path / "tmpdir"
    directory.mkdir()
    monkeypatch.setenv("TMPDIR", str(directory))
    yield directory
    assert list(directory.iterdir()) == []


class Running:
    """A long-running process (a probe, by default) whose stderr lines can be awaited."""

    def __init__(self, name: str, *args: str, **kwargs: Any) -> None:
        argv = [name if "/" in name else command(name), *args]
        self.proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, **kwargs)
        self.lines: list[str] = []
        self.ended = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def wait_for(self, text: str, count: int = 1, timeout: float = 20.0) -> list[str]:
        """Wait until `count` lines contain `text`; return them (fewer on timeout)."""
        with self._changed:
            self._changed.wait_for(
                lambda: len(self.matching(text)) >= count or self.ended,
                timeout,
            )
            return self.matching(text)

    def matching(self, text: str) -> list[str]:
        return [line for line in self.lines if text in line]

    def stop(self, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)
