"""Whether telemctl may read one of the daemon's files, said plainly when it may not.

The spool directory is the daemon user's alone and the state directory its
group's: a user outside them cannot even see whether a file exists there.
"Cannot look" must never read as "nothing there" (`0 records`, `no journal
yet`), so each reader asks here first, and a refusal names the path, the
directory or file that refuses, and who may read it.
"""

from __future__ import annotations

import grp
import os
import pwd
import stat

from telemd.errors import TelemetryError


class PermissionDenied(TelemetryError):
    """This user may not read a file telemctl needs."""


def exists_readable(path: str) -> bool:
    """True if `path` can be read, False if it does not exist; PermissionDenied otherwise."""
    blocker = _first_refusal(path)
    if blocker is not None:
        raise PermissionDenied(denied_message(path, blocker))
    return os.path.exists(path)


def denied_message(path: str, blocker: str) -> str:
    """`cannot read PATH: permission denied (...)` with who may read it."""
    info = os.stat(blocker)
    owner, group = _user_name(info.st_uid), _group_name(info.st_gid)
    mode = stat.S_IMODE(info.st_mode)
    need = stat.S_IRGRP | (stat.S_IXGRP if stat.S_ISDIR(info.st_mode) else 0)
    if mode & need == need:
        who = f"root, the user {owner} and members of the group {group} may read it"
    else:
        who = f"only root and the user {owner} may read it (no group may)"
    where = "" if blocker == path else f"{blocker} is "
    return f"cannot read {path}: permission denied ({where}{mode:04o} {owner}:{group}); {who}"


def _first_refusal(path: str) -> str | None:
    """The first directory on the way to `path` this user may not enter, or `path`
    itself if it exists and may not be read; None when nothing refuses."""
    path = os.path.abspath(path)
    directory = os.path.dirname(path)
    ancestors = []
    while True:
        ancestors.append(directory)
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    for directory in reversed(ancestors):
        if not os.path.isdir(directory):
            return None  # a missing directory: the file does not exist either
        if not os.access(directory, os.X_OK):
            return directory
    if os.path.exists(path) and not os.access(path, os.R_OK):
        return path
    return None


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
