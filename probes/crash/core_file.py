"""Copy a core from the kernel's pipe into a private file, bounded, and remove it after.

The kernel pipes the core to the handler's stdin; elfutils needs a seekable
file. `save_core` writes it into a fresh 0700 directory (created with a
random name, never reused) through `O_EXCL | O_NOFOLLOW`, so nobody else can
read it or redirect the write, and stops at `limit` bytes: a larger core is
cut there, and the kernel gives up on the rest when the pipe closes.
"""

from __future__ import annotations

import contextlib
import os

_CHUNK = 1 << 20
_DEFAULT_PARENT = "/var/tmp"  # on disk: a core can be far larger than a tmpfs /tmp


class SavedCore:
    __slots__ = ("cut", "directory", "path", "size")

    def __init__(self, directory: str, path: str, size: int, cut: bool) -> None:
        self.directory = directory
        self.path = path
        self.size = size
        self.cut = cut  # the core was larger than the limit and was cut at `size`

    def give_to(self, uid: int, gid: int) -> None:
        """Let an unwinder running as `uid` read the core (and only that uid, and root)."""
        os.chown(self.directory, uid, gid)
        os.chown(self.path, uid, gid, follow_symlinks=False)

    def remove(self) -> None:
        # The directory may belong to the crashed uid by now: unlink never follows.
        for path, remove in ((self.path, os.unlink), (self.directory, os.rmdir)):
            with contextlib.suppress(FileNotFoundError):
                remove(path)


def private_directory() -> str:
    """A new directory under $TMPDIR (else /var/tmp) that only this user can enter."""
    parent = os.environ.get("TMPDIR") or _DEFAULT_PARENT
    while True:
        path = os.path.join(parent, f"crashprobe-{os.urandom(8).hex()}")
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        os.chmod(path, 0o700)  # whatever the umask
        return path


def save_core(source_fd: int, limit: int) -> SavedCore:
    """Copy at most `limit` bytes of `source_fd` into a private file; raise OSError on failure."""
    directory = private_directory()
    path = os.path.join(directory, "core")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        os.rmdir(directory)
        raise
    saved = SavedCore(directory, path, 0, False)
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            saved.size = _copy(source_fd, out.fileno(), limit)
            saved.cut = saved.size == limit and bool(os.read(source_fd, 1))
    except OSError:
        saved.remove()
        raise
    return saved


def _copy(source_fd: int, target_fd: int, limit: int) -> int:
    """Copy up to `limit` bytes; splice(2) from a pipe, read and write otherwise."""
    copied = 0
    use_splice = hasattr(os, "splice")
    while copied < limit:
        want = min(_CHUNK, limit - copied)
        if use_splice:
            try:
                moved = os.splice(source_fd, target_fd, want)
            except OSError:  # EINVAL: the source is not a pipe
                use_splice = False
                continue
        else:
            data = os.read(source_fd, want)
            moved = len(data)
            view = memoryview(data)
            while view:
                view = view[os.write(target_fd, view) :]
        if moved == 0:
            break
        copied += moved
    return copied
