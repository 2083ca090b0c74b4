"""Host metadata the daemon stamps on every record, read the way libtelemetry does.

Read once at start (and again on SIGHUP), never per record. Every reader takes
a `root` so tests can point it at a tree of their own. Values match Clear's
byte for byte: DMI files missing read as `no_<key>_file`, empty ones as
`blank`. os-release is read as os-release(5) says, quotes and escapes
undone (Clear's C kept the quotes: `"12"` on Debian 12).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass

# libtelemetry's line buffer: longer values are cut to this length.
_VALUE_LIMIT = 80
_OS_RELEASE_FILES = ("etc/os-release", "usr/lib/os-release")
_DMI_DIR = "sys/class/dmi/id"


@dataclass(frozen=True, slots=True)
class HostInfo:
    arch: str
    host_type: str
    build: str
    kernel_version: str
    system_name: str
    board_name: str
    cpu_model: str
    bios_version: str
    boot_id: str

    def headers(self) -> dict[str, str]:
        """The host headers of a record, keyed by header name."""
        return {
            "arch": self.arch,
            "host_type": self.host_type,
            "build": self.build,
            "kernel_version": self.kernel_version,
            "system_name": self.system_name,
            "board_name": self.board_name,
            "cpu_model": self.cpu_model,
            "bios_version": self.bios_version,
        }


def _read_first_line(path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            line = handle.readline(4096)
    except OSError:
        return None
    return line.decode(errors="replace").rstrip("\n")


def dmi_value(root: str, name: str, key: str) -> str:
    value = _read_first_line(os.path.join(root, _DMI_DIR, name))
    if value is None:
        return f"no_{key}_file"
    if not value.strip(" "):
        return "blank"
    return value[:_VALUE_LIMIT]


def _os_release(root: str) -> dict[str, str] | None:
    for name in _OS_RELEASE_FILES:
        try:
            with open(os.path.join(root, name), encoding="utf-8", errors="replace") as handle:
                return parse_os_release(handle.read(65536))
        except OSError:
            continue
    return None


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=VALUE lines, values shell-quoted and escaped; # comments."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, equals, value = line.partition("=")
        if not equals or not key.isidentifier():
            continue
        try:
            words = shlex.split(value)
        except ValueError:  # an unbalanced quote: keep what is there
            words = [value.strip("\"'")]
        fields[key] = " ".join(words)
    return fields


def system_name_and_build(root: str) -> tuple[str, str]:
    """os-release ID (with _VARIANT_ID) and VERSION_ID, else BUILD_ID, else "0".

    Clear's C reads the build from VERSION_ID, which on Clear is the build
    number; rolling distributions (Arch, Gentoo) have only a BUILD_ID.
    """
    fields = _os_release(root)
    if fields is None:
        return "unknown", "0"
    name = fields.get("ID") or "unknown"
    variant = fields.get("VARIANT_ID")
    if variant:
        name = f"{name}_{variant}"
    build = fields.get("VERSION_ID") or fields.get("BUILD_ID") or "0"
    return name[:_VALUE_LIMIT], build[:40]


def cpu_model(root: str) -> str:
    try:
        with open(os.path.join(root, "proc/cpuinfo"), encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if line.startswith("model name"):
                    _, _, value = line.partition(":")
                    value = value.strip()
                    return value[:_VALUE_LIMIT] if value else "blank"
    except OSError:
        pass
    return "blank"


def boot_id(root: str = "/") -> str:
    value = _read_first_line(os.path.join(root, "proc/sys/kernel/random/boot_id"))
    return value.strip() if value else "unknown"


def read_host_info(root: str = "/") -> HostInfo:
    uname = os.uname()
    system_name, build = system_name_and_build(root)
    return HostInfo(
        arch=uname.machine,
        host_type="|".join(
            (
                dmi_value(root, "sys_vendor", "sv"),
                dmi_value(root, "product_name", "pn"),
                dmi_value(root, "product_version", "pvr"),
            )
        ),
        build=build,
        kernel_version=uname.release,
        system_name=system_name,
        board_name="|".join(
            (dmi_value(root, "board_name", "bn"), dmi_value(root, "board_vendor", "bv"))
        ),
        cpu_model=cpu_model(root),
        bios_version=dmi_value(root, "bios_version", "bv"),
        boot_id=boot_id(root),
    )
