"""Payloads made by the project's own probes, for the problem-grouping tests.

A real crashing C program's core unwound by crashprobe's eu-stack code and
laid out by its report module; the klog samples through klogscanner's
parser; a real uncaught exception through the Python probe's payload; a
failed unit through journalprobe's. Whatever cannot be made here (no C
compiler, no eu-stack, cores not written to the working directory) skips
the test and says why.
"""

from __future__ import annotations

import json
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from telemd_probes.crash.eu_stack import unwind
from telemd_probes.crash.report import Crash, CrashKind
from telemd_probes.crash.report import payload as crash_payload
from telemd_probes.journal.unit_failure import UnitFailure
from telemd_probes.journal.unit_failure import payload as unit_payload
from telemd_probes.klog.event import KernelEvent
from telemd_probes.klog.kmsg import parse_lines
from telemd_probes.klog.parser import OopsScanner

DATA = Path(__file__).resolve().parent.parent / "data"


def crash(workdir: Path, mode: str = "main", count: int = 1) -> tuple[str, str]:
    """(classification, payload) of a real crash of crashme in `mode`."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("a real crash needs a C compiler (gcc)")
    if shutil.which("eu-stack") is None:
        pytest.skip("crashprobe unwinds with eu-stack (elfutils), which is missing")
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip(f"kernel.core_pattern is {pattern!r}; the test needs cores written to the cwd")
    binary = workdir / "crashme"
    if not binary.exists():
        source = DATA / "crash" / "crashme.c"
        subprocess.run([cc, "-g", "-O0", "-pthread", "-o", str(binary), str(source)], check=True)
    directory = workdir / f"core-{mode}"
    directory.mkdir(exist_ok=True)

    def raise_core_limit() -> None:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    result = subprocess.run(
        [str(binary), mode], cwd=directory, preexec_fn=raise_core_limit, timeout=30, check=False
    )
    assert result.returncode == -signal.SIGSEGV
    cores = list(directory.glob("core*"))
    if not cores:
        pytest.skip("the kernel wrote no core (RLIMIT_CORE capped, or cores disabled)")
    unwound = unwind(str(cores[0]), timeout=30)
    assert unwound.error is None, unwound.error
    report = Crash(str(binary), "crashme", unwound.pid, signal.SIGSEGV, unwound.threads)
    return CrashKind.CLR.classification, crash_payload(report, CrashKind.CLR, count)


def kernel_events(sample: str) -> list[KernelEvent]:
    scanner = OopsScanner()
    events: list[KernelEvent] = []
    for record in parse_lines((DATA / "klog" / f"{sample}.kmsg").read_bytes().splitlines()):
        events += scanner.feed(record.message)
    return events + scanner.flush()


def kernel(sample: str) -> tuple[str, str]:
    [event] = kernel_events(sample)
    return event.classification, event.payload()


PROGRAM = """
import json, sys
from telemd_probes.python import payload

def parse(text):
    return int(text)

def main():
    parse("not a number")

def hook(kind, value, tb):
    print(json.dumps(payload(kind, value, tb, None)))

sys.excepthook = hook
main()
"""


def python_exception(workdir: Path) -> tuple[str, str]:
    """A real uncaught ValueError in a program's own `parse`, through the probe's hook."""
    script = workdir / "app.py"
    script.write_text(PROGRAM)
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=30, check=False
    )
    assert out.returncode == 1, out.stderr
    return "org.clearlinux/python/exception", str(json.loads(out.stdout))


def failed_unit(unit: str = "demo.service", result: str = "exit-code") -> tuple[str, str]:
    failure = UnitFailure(unit, result, "0123abcd", exit_code=1, exit_status=3)
    return "org.clearlinux/journal/error", unit_payload(failure, ["demo: cannot open /x"])
