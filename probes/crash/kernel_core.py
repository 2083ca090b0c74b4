"""The core handler's work on one core: save it, unwind it as the crashed user, remove it.

elfutils parses the core, which the crashed program wrote and may have
shaped: when the handler runs as root, eu-stack runs as the crashed
process's user instead, who could read that process's memory anyway. The
core is removed whatever happens; the command line is read only on request,
from /proc while the kernel still holds the dumping process.
"""

from __future__ import annotations

import dataclasses
import os

from ..common.settings import ProbeSettings
from .core_file import save_core
from .eu_stack import unwind
from .report import Crash

_NOGROUP = 65534
_MAX_CMDLINE = 4096


def unwind_core(
    crash: Crash, core_file: str | None, settings: ProbeSettings, uid: int | None
) -> Crash:
    """`crash` with the threads of the core on stdin (or in `core_file`), or an error."""
    cmdline = _cmdline(crash.pid) if settings.crash_include_cmdline else None
    crash = dataclasses.replace(crash, cmdline=cmdline)
    source = 0 if core_file is None else os.open(core_file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        saved = save_core(source, settings.crash_max_core_size)
    except OSError as exc:
        return dataclasses.replace(crash, error=f"cannot save the core: {exc.strerror}")
    finally:
        if source == 0:  # closing the pipe lets the kernel finish the dump now
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.close(null)
        else:
            os.close(source)
    try:
        user, group = _unwinder(uid)
        if user is not None and group is not None:
            saved.give_to(user, group)
        unwound = unwind(saved.path, settings.crash_unwind_timeout, user, group)
    finally:
        saved.remove()
    return dataclasses.replace(
        crash,
        pid=crash.pid if crash.pid is not None else unwound.pid,
        threads=unwound.threads,
        error=unwound.error,
        core_cut_at=saved.size if saved.cut else None,
    )


def _unwinder(uid: int | None) -> tuple[int | None, int | None]:
    """The user and group eu-stack runs as: the crashed user's, when we are root."""
    if uid is None or uid == 0 or os.geteuid() != 0:
        return None, None
    import pwd

    try:
        return uid, pwd.getpwuid(uid).pw_gid
    except KeyError:  # a uid without an account, as in a container
        return uid, _NOGROUP


def _cmdline(pid: int | None) -> str | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read(_MAX_CMDLINE)
    except OSError:
        return None
    return raw.rstrip(b"\0").replace(b"\0", b" ").decode("utf-8", "replace")
