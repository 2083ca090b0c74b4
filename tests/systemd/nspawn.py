"""A Debian 12 machine booted with systemd as PID 1, in systemd-nspawn.

The root is made once per machine with debootstrap and kept under
$TELEMD_NSPAWN_CACHE (default /var/cache/telemd-nspawn), in a directory
named by a hash of what goes in it (suite, mirror, packages), so a change
of the list makes a new root and an unchanged one is reused. It holds
systemd, D-Bus, systemd-coredump and the Debian packages the .debs depend
on, so installing them needs no network; nothing else (no procps).

Each `Machine` boots an ephemeral copy (`-x`: the cached root is never
changed) with its own network namespace (loopback only), as PID 1 of this
host is not systemd: `--register=no --keep-unit`. Commands run inside with
`nsenter` into the namespaces of the container's systemd.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

SUITE = "bookworm"
MIRROR = os.environ.get("TELEMD_NSPAWN_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("TELEMD_NSPAWN_CACHE", "/var/cache/telemd-nspawn"))
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "systemd-coredump",
    "dbus",
    "python3",
    # telemd's Depends
    "python3-httpx",
    "python3-sniffio",
    "python3-sdnotify",
    "python3-dbus-fast",
    # telemd-collector's Depends
    "python3-anyio",
    "python3-jinja2",
    "python3-psycopg",
    "python3-starlette",
    "python3-uvicorn",
)
TOOLS = {
    "debootstrap": "debootstrap",
    "systemd-nspawn": "systemd-container",
    "nsenter": "util-linux",
}
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BOOT_DEADLINE = 120.0
CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")
DEBOOTSTRAP_TIMEOUT = 900


def missing() -> str | None:
    """Why no machine can be booted here, or None."""
    if os.geteuid() != 0:
        return "systemd-nspawn and debootstrap need root"
    for tool, package in TOOLS.items():
        if shutil.which(tool, path=PATH) is None:
            return f"{tool} not found (Debian package {package}; `make deps-packaging`)"
    return None


def root_dir() -> Path:
    key = hashlib.sha256("\n".join((SUITE, MIRROR, *PACKAGES)).encode()).hexdigest()[:16]
    return CACHE / f"{SUITE}-{key}"


def ensure_root() -> Path:
    """The cached root, made first if missing (about a minute); raise
    RuntimeError with debootstrap's last lines if it cannot be made."""
    root = root_dir()
    if (root / "usr/lib/systemd/systemd").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    # Made aside, then renamed: an interrupted run leaves no half root.
    work = CACHE / f".{root.name}.{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    # debootstrap runs the packages' scripts in a chroot that sees the host's
    # /proc: systemd-coredump's would point this machine's (not namespaced)
    # kernel.core_pattern at a handler the host lacks. Put it back after.
    core_pattern = CORE_PATTERN.read_text()
    try:
        result = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE,
             str(work), MIRROR],
            capture_output=True, text=True, env={"PATH": PATH}, timeout=DEBOOTSTRAP_TIMEOUT,
            check=False,
        )  # fmt: skip
    finally:
        if CORE_PATTERN.read_text() != core_pattern:
            CORE_PATTERN.write_text(core_pattern)
    if result.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        lines = (result.stdout + result.stderr).splitlines()[-15:]
        raise RuntimeError("debootstrap failed:\n" + "\n".join(lines))
    try:
        work.rename(root)
    except OSError:  # another run made it meanwhile
        shutil.rmtree(work, ignore_errors=True)
    return root


class Machine:
    """A booted container; `run` executes a shell command inside it."""

    def __init__(self, root: Path, shared: Path, console: Path) -> None:
        """`shared` appears read-only at /mnt/shared inside; the console's
        output goes to the file `console`."""
        self.console = console
        with open(console, "wb") as log:
            self.proc = subprocess.Popen(
                ["systemd-nspawn", "--quiet", "-D", str(root), "--ephemeral", "--boot",
                 "--register=no", "--keep-unit", "--private-network", "--console=pipe",
                 f"--bind-ro={shared}:/mnt/shared"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={"PATH": PATH},
            )  # fmt: skip
        try:
            self.leader = self._leader()
            self._wait_for_boot()
        except BaseException:
            self.stop()
            raise

    def _leader(self) -> int:
        """The container's PID 1 as this host numbers it: nspawn's child, once
        it is systemd (before, it is nspawn setting up the namespaces)."""
        deadline = time.monotonic() + BOOT_DEADLINE
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: {self.output()}")
            for pid in children.read_text().split():
                try:
                    if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                        return int(pid)
                except OSError:
                    continue
            time.sleep(0.05)  # bounded by the deadline; /proc offers nothing to wait on
        raise RuntimeError("the container's systemd did not start")

    def _wait_for_boot(self) -> None:
        deadline = time.monotonic() + BOOT_DEADLINE
        while True:
            # --wait returns once the boot is done; it fails at once while
            # systemd's own socket does not exist yet.
            state = self.run(
                "systemctl is-system-running --wait", check=False, timeout=BOOT_DEADLINE
            )
            if state.stdout.strip() in ("running", "degraded"):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"boot did not finish: {state.stdout}{state.stderr}")
            time.sleep(0.1)  # bounded by the deadline

    def run(
        self, command: str, *, check: bool = True, timeout: float = 120.0, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a",
             "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "HOME=/root", "sh", "-c", command],
            input=stdin, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise AssertionError(
                f"`{command}` exited {result.returncode}:\n{result.stdout}{result.stderr}"
            )
        return result

    def output(self) -> str:
        return self.console.read_text(errors="replace")

    def stop(self) -> None:
        """Power off (nspawn turns SIGTERM into an orderly shutdown)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
