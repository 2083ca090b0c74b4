"""crashprobe as the kernel's core handler: real crashes, real cores, a real daemon."""

from __future__ import annotations

import os
import re
import resource
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from daemon_harness import DaemonHarness
from probe_support import ProbeConfig, need, probe

CRASHME = Path(__file__).resolve().parent.parent / "data" / "crash" / "crashme.c"


@pytest.fixture(scope="module")
def crashme(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = need("cc", "gcc")
    binary = tmp_path_factory.mktemp("crashme") / "crashme"
    subprocess.run([cc, "-g", "-O0", "-pthread", "-o", str(binary), str(CRASHME)], check=True)
    return binary


def make_core(crashme: Path, directory: Path, mode: str = "main") -> Path:
    """Crash `crashme` for real, in `directory`, and return the core the kernel wrote."""
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"kernel.core_pattern is {pattern!r}; the test needs cores written to the cwd")
    directory.mkdir(exist_ok=True)

    def raise_core_limit() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    result = subprocess.run(
        [str(crashme), mode], cwd=directory, preexec_fn=raise_core_limit, timeout=30, check=False
    )
    assert result.returncode == -signal.SIGSEGV
    cores = list(directory.glob("core*"))
    if not cores:
        pytest.skip("the kernel wrote no core (RLIMIT_CORE capped, or cores disabled)")
    [core] = cores
    return core


@pytest.fixture(scope="module")
def main_core(crashme: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_core(crashme, tmp_path_factory.mktemp("main-core"))


def as_kernel(
    config: Path, core: Path, executable: Path, *extra: str, pid: int = 4242, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Pipe `core` into crashprobe with the arguments core_pattern gives it."""
    need("eu-stack", "elfutils")
    path = str(executable).replace("/", "!")
    args = ["-f", str(config), "-p", executable.name, "-E", path, "-s", "11"]
    args += ["-P", str(pid), "-u", str(os.getuid()), "-t", "1700000000", *extra]
    # Through `cat`, so that stdin is a pipe as the kernel gives, not a regular file.
    with subprocess.Popen(["cat", str(core)], stdout=subprocess.PIPE) as cat:
        try:
            return probe("crashprobe", *args, stdin=cat.stdout, **kwargs)
        finally:
            assert cat.stdout is not None
            cat.stdout.close()


def frames_of_first_thread(payload: str) -> list[str]:
    section = payload.split("\n\nBacktrace (TID ", 2)[1]
    return [line for line in section.splitlines()[1:] if line.startswith("#")]


def test_a_real_crash_is_reported_with_its_function(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    private_tmp: Path,
) -> None:
    result = as_kernel(probe_config(), main_core, crashme)
    assert result.returncode == 0, result.stderr
    [row] = daemon.records()
    assert (row["classification"], row["severity"]) == ("org.clearlinux/crash/clr", 3)
    assert row["creation_timestamp"] == 1700000000
    payload = row["payload"]
    assert payload.startswith(f"Process: {crashme}\nPID: 4242\nSignal: 11\nName: crashme\n")
    assert "Crashes: 1\n" in payload
    top = frames_of_first_thread(payload)
    assert re.fullmatch(
        rf"#0 crash_here\(\) - \[{crashme}\] \+0x[0-9a-f]+ - .*crashme\.c:\d+", top[0]
    )
    assert top[1].startswith("#1 main() - ")
    assert "Cmdline:" not in payload


def test_a_crash_on_another_thread_comes_first_with_every_thread(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    tmp_path: Path,
    private_tmp: Path,
) -> None:
    core = make_core(crashme, tmp_path / "thread-core", "thread")
    assert as_kernel(probe_config(), core, crashme).returncode == 0
    [row] = daemon.records()
    payload = row["payload"]
    assert payload.count("Backtrace (TID ") == 3
    top = frames_of_first_thread(payload)
    assert top[0].startswith("#0 crash_here() - ")
    assert top[1].startswith("#1 crash_in_worker() - ")
    assert "idle_worker() - " in payload and "#1 main() - " in payload


def test_a_program_outside_usr_sends_one_line_under_the_privacy_filter(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    private_tmp: Path,
) -> None:
    assert as_kernel(probe_config(filters=True), main_core, crashme).returncode == 0
    [row] = daemon.records()
    assert (row["classification"], row["severity"]) == ("org.clearlinux/crash/unknown", 2)
    assert row["payload"] == "Crash from third party\n"


def test_a_core_larger_than_the_limit_is_cut_and_says_so(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    tmp_path: Path,
    private_tmp: Path,
) -> None:
    core = tmp_path / "big-core"
    core.write_bytes(main_core_bytes(crashme, tmp_path) + b"\0" * (3 << 20))
    assert as_kernel(probe_config(crash_max_core_size=1), core, crashme).returncode == 0
    [row] = daemon.records()
    assert "Core: cut at 1048576 bytes\n" in row["payload"]


def main_core_bytes(crashme: Path, tmp_path: Path) -> bytes:
    return make_core(crashme, tmp_path / "core-for-bytes").read_bytes()


def test_the_command_line_is_sent_only_on_request(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    private_tmp: Path,
) -> None:
    # A live process stands in for the one the kernel is dumping.
    stand_in = [sys.executable, "-c", "import time; time.sleep(60)", "--token=s3cret"]
    with subprocess.Popen(stand_in) as sleeper:
        try:
            as_kernel(probe_config(), main_core, crashme, pid=sleeper.pid)
            config = probe_config(crash_include_cmdline=True, crash_dedup_window=0)
            as_kernel(config, main_core, crashme, pid=sleeper.pid)
        finally:
            sleeper.kill()
    first, second = (row["payload"] for row in daemon.records())
    assert "s3cret" not in first and "Cmdline:" not in first
    [cmdline] = re.findall(r"^Cmdline: (.*)$", second, re.M)
    assert cmdline.endswith("time.sleep(60) --token=s3cret")


def test_a_hanging_unwinder_is_cut_off_and_reported_as_an_error(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    tmp_path: Path,
    private_tmp: Path,
) -> None:
    # A stand-in eu-stack that never answers: the deadline is what is under test.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    hanging = bin_dir / "eu-stack"
    hanging.write_text("#!/bin/sh\nexec sleep 60\n")
    hanging.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}")
    start = time.monotonic()
    result = as_kernel(probe_config(crash_unwind_timeout=1), main_core, crashme, env=env)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 10
    [row] = daemon.records()
    assert (row["classification"], row["severity"]) == ("org.clearlinux/crash/error", 4)
    assert "Error: eu-stack did not finish within 1 s\n" in row["payload"]


def test_without_a_daemon_it_says_so_in_one_line_and_leaves_no_core(
    harness: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    private_tmp: Path,
) -> None:
    harness.state_dir.mkdir()
    result = as_kernel(probe_config(), main_core, crashme)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"crashprobe: {crashme}: not recorded: telemd is not running")


def test_opted_out_it_reads_nothing_and_sends_nothing(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    private_tmp: Path,
) -> None:
    daemon.opt_out()
    result = as_kernel(probe_config(), main_core, crashme)
    assert (result.returncode, result.stderr) == (0, "")
    assert daemon.records() == []


def test_a_storm_of_fifty_crashes_becomes_a_handful_of_records_with_counts(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    private_tmp: Path,
) -> None:
    config = probe_config()
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(lambda _: as_kernel(config, main_core, crashme), range(50)))
    assert all(result.returncode == 0 for result in results)
    counts = [re.findall(r"^Crashes: (\d+)$", row["payload"], re.M) for row in daemon.records()]
    # Concurrent probes may send in another order than they counted.
    assert sorted(int(count) for [count] in counts) == [1, 1, 2, 4, 8, 16]
    assert sum("counted, not sent" in result.stderr for result in results) == 50 - 6


def test_usage_errors_exit_2() -> None:
    assert probe("crashprobe").returncode == 2
    assert probe("crashprobe", "-p", "x", "-s", "eleven").returncode == 2
    assert probe("crashprobe", "--bogus").returncode == 2
    assert probe("crashprobe", "--help").stdout.startswith("Usage: crashprobe")


def test_started_like_the_kernel_with_only_stdin_open_it_still_reports(
    daemon: DaemonHarness,
    probe_config: ProbeConfig,
    crashme: Path,
    main_core: Path,
    private_tmp: Path,
) -> None:
    def close_stdout_and_stderr() -> None:
        os.close(1)
        os.close(2)

    result = as_kernel(
        probe_config(), main_core, crashme, preexec_fn=close_stdout_and_stderr, capture_output=False
    )
    assert result.returncode == 0
    [row] = daemon.records()
    assert "#0 crash_here() - " in row["payload"]
