"""Helpers for whole-process probe tests: run a probe, wait on its output, find a tool.

Kept out of conftest.py so that test modules import them by a name no other
directory's conftest shares.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import command

ProbeConfig = Callable[..., Path]


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


def block_with_a_directory(path: Path) -> None:
    """Make `path` unsavable by a running probe: it may put the file back
    between our unlink and mkdir, so retake it until a directory holds it."""
    while not path.is_dir():
        path.unlink(missing_ok=True)
        with contextlib.suppress(FileExistsError):
            path.mkdir()


def need(tool: str, package: str) -> str:
    """The path of `tool`, or skip the test naming the Debian package that has it."""
    path = shutil.which(tool) or next(
        (p for p in (f"/lib/systemd/{tool}", f"/usr/lib/systemd/{tool}") if os.access(p, os.X_OK)),
        None,
    )
    if path is None:
        pytest.skip(f"needs {tool} (Debian package {package})")
    return path


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
