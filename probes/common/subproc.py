"""Run a helper program (eu-stack, journalctl) with a deadline and bounded output.

Probes run as root on machines in trouble; a helper that hangs or floods its
output must cost them neither their life nor their memory. `run_bounded`
keeps at most `limit` bytes of each stream, kills the helper at the deadline
or once stdout overflows, and never raises for what the helper does.
"""

from __future__ import annotations

import os
import selectors
import subprocess
import time
from collections.abc import Sequence


class Outcome:
    """What a helper did: its status (None if killed), its output, and why it stopped early."""

    __slots__ = ("cut", "returncode", "stderr", "stdout", "timed_out")

    def __init__(
        self, returncode: int | None, stdout: bytes, stderr: bytes, timed_out: bool, cut: bool
    ) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.timed_out = timed_out
        self.cut = cut


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    limit: int = 1 << 20,
    user: int | None = None,
    group: int | None = None,
) -> Outcome:
    """Run `argv` with stdin from /dev/null; raise OSError only if it cannot start."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        user=user,
        group=group,
        extra_groups=[] if user is not None else None,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    sizes = dict.fromkeys(chunks, 0)
    deadline = time.monotonic() + timeout
    cut = False
    with selectors.DefaultSelector() as selector:
        for fd in chunks:
            selector.register(fd, selectors.EVENT_READ)
        while selector.get_map() and not cut and time.monotonic() < deadline:
            for key, _ in selector.select(deadline - time.monotonic()):
                data = os.read(key.fd, 65536)
                if not data:
                    selector.unregister(key.fd)
                    continue
                keep = data[: max(0, limit - sizes[key.fd])]
                chunks[key.fd].append(keep)
                sizes[key.fd] += len(keep)
                # Past the limit stderr is drained and dropped; stdout ends the run.
                cut = cut or (key.fd == out_fd and len(keep) < len(data))
    returncode: int | None
    try:
        returncode = None if cut else proc.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        returncode = None
    if returncode is None:
        proc.kill()
        proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    timed_out = returncode is None and not cut
    return Outcome(returncode, b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), timed_out, cut)
