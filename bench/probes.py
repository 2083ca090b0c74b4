#!/usr/bin/env python3
"""bench/probes: what each probe costs to handle one event, against `python -I -c pass`.

For every probe, against a running telemd (every event ends as a record on
disk, counted at the end): the median wall time of the whole process, from
start to exit (journalprobe: to the record's log line), and its peak RSS,
children included (eu-stack, journalctl), as wait4(2) reports it. The
baseline is `python -I -c pass` of the same run. Probes run from a venv with
telemd installed from a wheel, as users get it (bench/intake.py's).

  - hprobe: one heartbeat
  - crashprobe: a real core of a small program, piped as the kernel does,
    and a real 100 MiB core
  - crashprobe --from-journal --once: a journal file with one coredump entry
  - klogscanner --once: one kernel oops
  - pstoreprobe: one dump in three parts
  - journalprobe: a failed unit on a private bus (stand-in systemd)
  - Python: a program dying of ValueError, with and without the hook

Needs gcc, elfutils, systemd-journal-remote and dbus-daemon; rows whose tool
is missing are skipped.

usage: python bench/probes.py [--quick]
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from intake import Telemd, installed_venv

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "probes")]
RUNS = 5 if "--quick" in sys.argv else 15
BIG_RUNS = 2 if "--quick" in sys.argv else 5
BIG_CORE_MIB = 100
# Peak RSS comes from wait4(2) in this small launcher: a child forked from
# the (much larger) benchmark itself would count the benchmark's RSS too,
# since exec keeps the largest RSS the process had before it.
LAUNCHER = r"""
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
static pid_t child;
static void forward(int sig) { kill(child, sig); }
int main(int argc, char **argv) {
        int status;
        struct rusage usage;
        FILE *out;
        if ((child = fork()) == 0) {
                execvp(argv[2], argv + 2);
                _exit(127);
        }
        signal(SIGTERM, forward);
        while (wait4(child, &status, 0, &usage) < 0)
                ;
        out = fopen(argv[1], "w");
        fprintf(out, "%ld\n", usage.ru_maxrss);
        fclose(out);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
"""
BIG_PROGRAM = r"""
#include <stdlib.h>
#include <string.h>
int main(void) {
        char *big = malloc(%d << 20);
        memset(big, 1, %d << 20);   /* touched, so that the core holds it */
        *(volatile int *)0 = big[7];
        return 0;
}
"""


class Measured:
    def __init__(self) -> None:
        self.walls: list[float] = []
        self.peak_kib = 0

    def add(self, wall: float, peak_kib: int) -> None:
        self.walls.append(wall)
        self.peak_kib = max(self.peak_kib, peak_kib)


class Launcher:
    """Runs a command under LAUNCHER and reads back its peak RSS."""

    def __init__(self, directory: Path) -> None:
        source = directory / "launcher.c"
        source.write_text(LAUNCHER)
        self.path = str(directory / "launcher")
        self.report = directory / "launcher.maxrss"
        subprocess.run(["cc", "-O2", "-o", self.path, str(source)], check=True)

    def argv(self, argv: list[str]) -> list[str]:
        return [self.path, str(self.report), *argv]

    def peak_kib(self) -> int:
        return int(self.report.read_text())


LAUNCH: Launcher


def run_once(
    argv: list[str],
    measured: Measured,
    *,
    env: dict[str, str] | None = None,
    stdin_file: Path | None = None,
    until: str | None = None,
) -> None:
    """Run `argv` to its end (or to a stderr line containing `until`, then SIGTERM)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        LAUNCH.argv(argv),
        env=env,
        stdin=subprocess.PIPE if stdin_file else subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if until else subprocess.DEVNULL,
        text=bool(until),
    )
    if stdin_file is not None:
        threading.Thread(target=_feed, args=(proc, stdin_file), daemon=True).start()
    wall = None
    if until is not None:
        assert proc.stderr is not None
        for line in proc.stderr:
            if until in line:
                wall = time.perf_counter() - start
                proc.terminate()
                break
    status = proc.wait()
    if wall is None:
        wall = time.perf_counter() - start
        if status != 0:
            raise SystemExit(f"{argv[0]} exited with status {status}")
    measured.add(wall, LAUNCH.peak_kib())


def _feed(proc: subprocess.Popen[bytes], path: Path) -> None:
    """Write a core into the probe's stdin as the kernel does: a pipe, then EOF."""
    assert proc.stdin is not None
    try:
        with path.open("rb") as data:
            shutil.copyfileobj(data, proc.stdin, 1 << 20)
        proc.stdin.close()
    except BrokenPipeError:
        pass


def make_core(directory: Path, source: str, name: str) -> Path | None:
    """Compile `source`, crash it with cores on, return the core (None if no core)."""
    if shutil.which("cc") is None:
        return None
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        return None
    work = directory / name
    work.mkdir()
    (work / "prog.c").write_text(source)
    subprocess.run(["cc", "-O0", "-g", "-o", str(work / name), str(work / "prog.c")], check=True)

    def cores_on() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    subprocess.run([str(work / name)], cwd=work, preexec_fn=cores_on, check=False)
    cores = list(work.glob("core*"))
    return cores[0] if cores else None


def main() -> None:
    directory = Path(tempfile.mkdtemp(prefix="telemd-probes-bench-"))
    try:
        run(directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def run(directory: Path) -> None:
    global LAUNCH
    if shutil.which("cc") is None:
        raise SystemExit("bench/probes.py needs a C compiler (Debian package gcc)")
    LAUNCH = Launcher(directory)
    venv = installed_venv(str(directory))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "python"),
            "install",
            "-q",
            "dbus-fast",
        ],
        check=False,
    )
    daemon = Telemd(str(directory))
    try:
        state = directory / "probe-state"
        state.mkdir()
        (directory / "no-privacy-filters").touch()
        config = directory / "probes.toml"
        config.write_text(
            f'socket_path = "{daemon.socket}"\nopt_in_file = "{directory}/opt-in"\n'
            f'no_privacy_filters_file = "{directory}/no-privacy-filters"\n'
            f'state_dir = "{state}"\ncrash_dedup_window = 0\nklog_quiet_period = 0.2\n'
        )
        env = dict(os.environ, TELEMD_CONFIG=str(config))
        cmd = {
            name: str(venv / name)
            for name in (
                "hprobe",
                "crashprobe",
                "klogscanner",
                "pstoreprobe",
                "journalprobe",
                "python",
            )
        }
        rows: list[tuple[str, Measured]] = []
        expected = 0

        def bench(label: str, runs: int, once: Callable[[Measured], None]) -> None:
            nonlocal expected
            measured = Measured()
            for _ in range(runs):
                once(measured)
            rows.append((label, measured))
            expected += runs

        baseline = Measured()
        for _ in range(RUNS):
            run_once([cmd["python"], "-I", "-c", "pass"], baseline)

        # hprobe reads only the daemon's keys, and its loader rejects the probe keys.
        bench(
            "hprobe: one heartbeat",
            RUNS,
            lambda m: run_once([cmd["hprobe"], "-f", daemon.config], m),
        )

        crashme = (ROOT / "tests" / "data" / "crash" / "crashme.c").read_text()
        small = make_core(directory, crashme, "crashme")
        big = make_core(directory, BIG_PROGRAM % (BIG_CORE_MIB, BIG_CORE_MIB), "bigcrash")
        if small is None or big is None or shutil.which("eu-stack") is None:
            print("crashprobe: skipped (needs gcc, elfutils and cores written to files)")
        else:
            for label, core, runs in (
                (f"crashprobe: {small.stat().st_size >> 10} KiB core, 2 threads", small, RUNS),
                (f"crashprobe: {big.stat().st_size >> 20} MiB core", big, BIG_RUNS),
            ):
                program = core.parent / core.parent.name
                args = [
                    cmd["crashprobe"],
                    "-f",
                    str(config),
                    "-p",
                    program.name,
                    "-E",
                    str(program).replace("/", "!"),
                    "-s",
                    "11",
                    "-P",
                    "1",
                    "-u",
                    str(os.getuid()),
                    "-t",
                    str(int(time.time())),
                ]
                bench(label, runs, lambda m, a=args, c=core: run_once(a, m, stdin_file=c))

        if shutil.which("journalctl") and _journal_remote():
            from journal_files import coredump_entry, write_journal

            journal = directory / "journal"
            write_journal(journal, [coredump_entry(4242)])

            def from_journal(measured: Measured) -> None:
                cursor_dir = Path(tempfile.mkdtemp(dir=directory))
                run_once(
                    [
                        cmd["crashprobe"],
                        "--from-journal",
                        "--once",
                        "-D",
                        str(journal),
                        "-S",
                        str(cursor_dir),
                        "-f",
                        str(config),
                    ],
                    measured,
                )

            bench("crashprobe --from-journal: one coredump entry", RUNS, from_journal)
        else:
            print("crashprobe --from-journal: skipped (needs systemd-journal-remote)")

        oops = ROOT / "tests" / "data" / "klog" / "bug_x86_nullderef.kmsg"
        bench(
            "klogscanner --once: one oops",
            RUNS,
            lambda m: run_once(
                [cmd["klogscanner"], "--once", "-s", str(oops), "-f", str(config)], m
            ),
        )

        from test_pstoreprobe import write_split_dump

        def pstore(measured: Measured) -> None:
            dump = Path(tempfile.mkdtemp(dir=directory))
            write_split_dump(dump, "bug_x86_nullderef", "Oops", 1, 3)
            run_once([cmd["pstoreprobe"], "-d", str(dump), "-f", str(config)], measured)

        bench("pstoreprobe: one dump in 3 parts", RUNS, pstore)

        has_dbus_fast = subprocess.run([cmd["python"], "-c", "import dbus_fast"], check=False)
        if shutil.which("dbus-daemon") and has_dbus_fast.returncode == 0:
            bench(
                "journalprobe: start, one failed unit, record sent",
                RUNS,
                lambda m: _journalprobe(directory, cmd["journalprobe"], env, state, m),
            )
        else:
            print("journalprobe: skipped (needs dbus-daemon and dbus-fast)")

        crash = "raise ValueError('bench')"
        hooked = f"import telemd_probes.python as p; p.install({str(config)!r}); {crash}"
        plain = Measured()
        for _ in range(RUNS):
            _python(cmd["python"], crash, plain)
        rows.append(("Python, uncaught exception, no hook", plain))
        bench(
            "Python, uncaught exception, hook sends a record",
            RUNS,
            lambda m: _python(cmd["python"], hooked, m),
        )

        deadline = time.monotonic() + 30
        while daemon.stored() < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        stored = daemon.stored()
    finally:
        # Also on failure: a daemon left running would hold run-all's pipe open.
        daemon.stop()

    base = statistics.median(baseline.walls)
    print(f"python -I -c pass: {base * 1000:.1f} ms, peak RSS {baseline.peak_kib / 1024:.1f} MiB")
    print(f"records stored: {stored} of {expected} events")
    print()
    print("| probe, one event | wall (median) | x python -I -c pass | peak RSS |")
    print("|---|---:|---:|---:|")
    for label, measured in rows:
        wall = statistics.median(measured.walls)
        print(
            f"| {label} | {wall * 1000:.1f} ms | {wall / base:.1f}x "
            f"| {measured.peak_kib / 1024:.1f} MiB |"
        )


def _journal_remote() -> bool:
    return any(
        os.access(p, os.X_OK)
        for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
    )


def _python(python: str, code: str, measured: Measured) -> None:
    start = time.perf_counter()
    subprocess.run(LAUNCH.argv([python, "-c", code]), stderr=subprocess.DEVNULL, check=False)
    measured.add(time.perf_counter() - start, LAUNCH.peak_kib())


def _journalprobe(
    directory: Path, journalprobe: str, env: dict[str, str], state: Path, measured: Measured
) -> None:
    """A private bus, a stand-in systemd with one failed unit, and journalprobe to its record."""
    from private_bus import BUS_CONFIG

    run_dir = Path(tempfile.mkdtemp(dir=directory))
    (run_dir / "bus.conf").write_text(BUS_CONFIG.format(socket=run_dir / "bus.socket"))
    bus = subprocess.Popen(
        ["dbus-daemon", f"--config-file={run_dir / 'bus.conf'}", "--nofork", "--print-address"],
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
    )
    assert bus.stdout is not None
    bus_env = dict(env, DBUS_SYSTEM_BUS_ADDRESS=bus.stdout.readline().strip())
    standin = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "probes" / "systemd_standin.py"), "bench.service"],
        env=bus_env,
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert standin.stderr is not None
    standin.stderr.readline()  # ready
    try:
        run_once([journalprobe, "-S", str(run_dir)], measured, env=bus_env, until=" sent ")
    finally:
        standin.kill()
        standin.wait()
        bus.terminate()
        bus.wait()


if __name__ == "__main__":
    main()
