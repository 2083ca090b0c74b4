"""telemd_probes.python: real Python programs that die of an uncaught exception."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import DaemonHarness
from probe_support import ProbeConfig
from telemd_probes.python import payload, shorten

PTH = Path(__file__).resolve().parents[2] / "probes" / "python" / "telemd_python_exceptions.pth"
# The same code runs with and without the probe, so tracebacks match line for line.
PROGRAM = """\
import sys, threading
if sys.argv[1] == "on":
    import telemd_probes.python
    telemd_probes.python.install(config_file=sys.argv[2])

def load(path):
    raise ValueError(f"bad value in {path}")

def worker():
    load("/home/alice/worker.csv")

print("working")
if sys.argv[3] == "thread":
    thread = threading.Thread(target=worker, name="loader")
    thread.start()
    thread.join()
    print("main thread goes on")
else:
    load("/home/alice/data.csv")
"""


@pytest.fixture
def program(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """The program, in a home directory of its own, and an environment with that HOME."""
    home = tmp_path / "home" / "carol"
    home.mkdir(parents=True)
    path = home / "tool.py"
    path.write_text(PROGRAM)
    return path, dict(os.environ, HOME=str(home))


def run(program: tuple[Path, dict[str, str]], *args: str) -> subprocess.CompletedProcess[str]:
    path, env = program
    return subprocess.run(
        [sys.executable, str(path), *args], capture_output=True, text=True, env=env, timeout=30
    )


def test_output_and_status_are_unchanged_and_a_record_arrives(
    daemon: DaemonHarness, probe_config: ProbeConfig, program: tuple[Path, dict[str, str]]
) -> None:
    config = str(probe_config())
    plain = run(program, "off", config, "main")
    probed = run(program, "on", config, "main")
    assert (probed.returncode, probed.stdout, probed.stderr) == (
        plain.returncode,
        plain.stdout,
        plain.stderr,
    )
    assert probed.returncode == 1 and "ValueError: bad value" in probed.stderr
    [row] = daemon.records()
    assert (row["classification"], row["severity"]) == ("org.clearlinux/python/exception", 3)
    head, trace = row["payload"].split("\n\nTraceback (most recent call last):\n")
    assert head.splitlines()[:3] == [
        "Exception: ValueError",
        "Message: bad value in ~/data.csv",
        "Program: ~/tool.py",
    ]
    assert trace.splitlines() == [
        '  File "~/tool.py", line 19, in <module>',
        '  File "~/tool.py", line 7, in load',
        "ValueError: bad value in ~/data.csv",
    ]


def test_an_exception_in_a_thread_is_reported_with_the_thread(
    daemon: DaemonHarness, probe_config: ProbeConfig, program: tuple[Path, dict[str, str]]
) -> None:
    result = run(program, "on", str(probe_config()), "thread")
    assert result.returncode == 0
    assert result.stdout == "working\nmain thread goes on\n"
    assert "Exception in thread loader" in result.stderr
    [row] = daemon.records()
    assert "\nThread: loader\n" in row["payload"]
    assert '  File "~/tool.py", line 10, in worker\n' in row["payload"]


def test_without_a_daemon_nothing_changes(
    harness: DaemonHarness, probe_config: ProbeConfig, program: tuple[Path, dict[str, str]]
) -> None:
    config = str(probe_config())
    plain = run(program, "off", config, "main")
    probed = run(program, "on", config, "main")
    assert (probed.returncode, probed.stderr) == (plain.returncode, plain.stderr)


def test_the_pth_file_enables_it_for_every_program(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PTH, site)
    code = f"import site; site.addsitedir({str(site)!r}); raise KeyError('k')"
    env = dict(os.environ, TELEMD_CONFIG=str(probe_config()))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "KeyError: 'k'"
    [row] = daemon.records()
    assert row["payload"].startswith("Exception: KeyError\nMessage: 'k'\n")


def test_the_pth_file_is_silent_without_the_package(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PTH, site)
    code = f"import site; site.addsitedir({str(site)!r}); print('ok')"
    argv = [sys.executable, "-I", "-S", "-c", code]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert (result.returncode, result.stdout, result.stderr) == (0, "ok\n", "")


SECRET = "my_secret_password"
# ABRT's example of a message that carries data: int() repeats what it was given.
SECRET_PROGRAM = f"""\
import sys, threading
import telemd_probes.python
telemd_probes.python.install(config_file=sys.argv[1])

def parse():
    return int("{SECRET}")

if sys.argv[2] == "thread":
    thread = threading.Thread(target=parse, name="login {SECRET}")
    thread.start()
    thread.join()
else:
    parse()
"""


def run_secret(tmp_path: Path, config: Path, where: str) -> subprocess.CompletedProcess[str]:
    program = tmp_path / "secret.py"
    program.write_text(SECRET_PROGRAM)
    return subprocess.run(
        [sys.executable, str(program), str(config), where],
        capture_output=True,
        text=True,
        timeout=30,
    )


def spool_bytes(daemon: DaemonHarness) -> bytes:
    """Every byte the daemon keeps about its records: the spool and its write-ahead log."""
    return b"".join(path.read_bytes() for path in daemon.spool_dir.glob("spool.sqlite*"))


@pytest.mark.parametrize("where", ["main", "thread"])
def test_the_message_never_reaches_the_record(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path, where: str
) -> None:
    result = run_secret(tmp_path, probe_config(filters=True), where)
    assert SECRET in result.stderr  # the program's own output is untouched
    [row] = daemon.records()
    assert all(SECRET not in str(value) for value in row.values())
    assert SECRET.encode() not in spool_bytes(daemon)
    assert "\nMessage:" not in row["payload"]
    assert row["payload"].startswith("Exception: ValueError\nProgram: ")
    assert row["payload"].endswith("in parse\nValueError\n")
    if where == "thread":
        assert "\nThread: (named by the program)\n" in row["payload"]


@pytest.mark.parametrize("where", ["main", "thread"])
def test_the_message_is_sent_once_the_privacy_filters_are_lifted(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path, where: str
) -> None:
    run_secret(tmp_path, probe_config(filters=False), where)
    [row] = daemon.records()
    closing = f"ValueError: invalid literal for int() with base 10: '{SECRET}'"
    assert f"\nMessage: invalid literal for int() with base 10: '{SECRET}'\n" in row["payload"]
    assert row["payload"].endswith(f"in parse\n{closing}\n")
    if where == "thread":
        assert f"\nThread: login {SECRET}\n" in row["payload"]


def test_the_pth_file_filters_the_message_too(
    daemon: DaemonHarness, probe_config: ProbeConfig, tmp_path: Path
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(PTH, site)
    code = f"import site; site.addsitedir({str(site)!r}); raise KeyError({SECRET!r})"
    env = dict(os.environ, TELEMD_CONFIG=str(probe_config(filters=True)))
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert result.stderr.splitlines()[-1] == f"KeyError: '{SECRET}'"
    [row] = daemon.records()
    assert row["payload"].startswith("Exception: KeyError\nProgram: -c\n")
    assert row["payload"].endswith("\nKeyError\n")
    assert SECRET.encode() not in spool_bytes(daemon)


def test_python_made_thread_names_stay() -> None:
    def fail() -> None:
        raise RuntimeError(SECRET)

    try:
        fail()
    except RuntimeError as exc:
        for name in ("MainThread", "Thread-7", "Thread-7 (worker)"):
            assert f"\nThread: {name}\n" in payload(RuntimeError, exc, exc.__traceback__, name)


def test_home_directories_are_shortened() -> None:
    assert shorten("/home/alice/x.py and '/home/bob/y' /root/z /rootfs/a /mnt/home/c/d") == (
        "~/x.py and '~/y' ~/z /rootfs/a /mnt/home/c/d"
    )


def test_a_deep_traceback_keeps_its_innermost_frames() -> None:
    def recurse(depth: int) -> None:
        if depth == 0:
            raise RuntimeError("deep")
        recurse(depth - 1)

    try:
        recurse(500)
    except RuntimeError as exc:
        text = payload(RuntimeError, exc, exc.__traceback__, None, filtered=False)
    assert len(text.encode()) <= 8192
    assert text.endswith("in recurse\nRuntimeError: deep\n")
    assert "test_a_deep_traceback" not in text  # the outermost frame went first
