"""Build the Debian packages once per session, from a copy of the tree.

The `debs` fixtures of tests/packaging and tests/systemd skip, naming the
missing Debian package, where the build tools are absent (`make deps-packaging` installs
them as root).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
# The build must see Debian's Python and tools, not a venv's or pyenv's.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BUILD_TOOLS = {
    "dpkg-buildpackage": "dpkg-dev",
    "dh": "debhelper",
    "dh_python3": "dh-python",
}


def missing_tool(tools: dict[str, str]) -> str | None:
    for tool, package in tools.items():
        if shutil.which(tool, path=SYSTEM_PATH) is None:
            return f"{tool} not found (Debian package {package}; `make deps-packaging`)"
    return None


def system_python_lacks(*modules: str) -> str | None:
    """Why Debian's /usr/bin/python3 cannot import `modules`, or None."""
    for module in modules:
        probe = subprocess.run(
            ["/usr/bin/python3", "-c", f"import {module}"], capture_output=True, check=False
        )
        if probe.returncode != 0:
            return f"/usr/bin/python3 cannot import {module} (`make deps-packaging`)"
    return None


@dataclass
class Debs:
    outdir: Path
    telemd: Path
    collector: Path
    crashprobe: Path
    changes: Path


def build_debs(tmp_path_factory: pytest.TempPathFactory) -> Debs:
    reason = missing_tool(BUILD_TOOLS) or system_python_lacks(
        "setuptools", "wheel", "build", "installer", "docutils"
    )
    if reason:
        pytest.skip(reason)
    outdir = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        ["sh", str(TOP / "packaging" / "build-deb.sh"), str(outdir)],
        capture_output=True,
        text=True,
        env={"PATH": SYSTEM_PATH, "LC_ALL": "C.UTF-8", "TMPDIR": str(outdir.parent)},
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr

    def one(pattern: str) -> Path:
        (path,) = outdir.glob(pattern)
        return path

    return Debs(
        outdir=outdir,
        telemd=one("telemd_*_all.deb"),
        collector=one("telemd-collector_*_all.deb"),
        crashprobe=one("telemd-crashprobe_*_all.deb"),
        changes=one("telemd_*.changes"),
    )


def deb_files(deb: Path) -> set[str]:
    """The regular files and symlinks a .deb installs, as absolute paths."""
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    files = set()
    for line in listing.splitlines():
        fields = line.split(maxsplit=5)
        if fields[0].startswith("d"):
            continue
        files.add(fields[5].split(" -> ")[0].removeprefix("."))
    return files
