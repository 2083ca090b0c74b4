"""The Debian package, the RPM spec and the PKGBUILD install the same files
at the same paths (Python modules aside, which each builds from the wheel)."""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
from debbuild import Debs, deb_files

from telemd.units import OWN_UNITS, UNITS

TOP = Path(__file__).resolve().parents[2]
RPM_MACROS = {
    "%{_bindir}": "/usr/bin",
    "%{_unitdir}": "/usr/lib/systemd/system",
    "%{_tmpfilesdir}": "/usr/lib/tmpfiles.d",
    "%{_sysusersdir}": "/usr/lib/sysusers.d",
    "%{_sysctldir}": "/usr/lib/sysctl.d",
    "%{_datadir}": "/usr/share",
    "%{_mandir}": "/usr/share/man",
}


def normal(path: str) -> str:
    # Debian 12 keeps units in /lib/systemd/system (its moratorium on moving
    # files to /usr); on its merged /usr that is /usr/lib/systemd/system.
    # Man pages are compressed by each package manager in its own way.
    if path.startswith("/lib/"):
        path = "/usr" + path
    return path.removesuffix(".gz").removesuffix("*")


def spec_files() -> set[str]:
    spec = (TOP / "packaging/rpm/telemd.spec").read_text()
    files: set[str] = set()
    in_files = False
    for line in spec.splitlines():
        if line.startswith("%"):
            section = line.split()[0]
            if section in ("%files", "%changelog") or section.startswith("%files"):
                in_files = section == "%files"
                continue
            if section in (
                "%package",
                "%description",
                "%prep",
                "%build",
                "%install",
                "%check",
                "%pre",
                "%post",
                "%preun",
                "%postun",
            ):
                in_files = False
        if not in_files or not line.strip() or line.startswith(("%exclude", "%dir", "%license")):
            continue
        if "python3_sitelib" in line:
            continue
        path = line.strip()
        for macro, value in RPM_MACROS.items():
            path = path.replace(macro, value)
        assert path.startswith("/"), f"unexpanded macro in %files: {line}"
        files.add(normal(path))
    return files


def pkgbuild_files() -> set[str]:
    text = (TOP / "packaging/arch/PKGBUILD").read_text()
    explicit = {normal(m) for m in re.findall(r'"\$pkgdir(/[^"$]+)"', text)}
    # Console scripts come from the wheel (python -m installer).
    pyproject = tomllib.loads((TOP / "pyproject.toml").read_text())
    scripts = {f"/usr/bin/{name}" for name in pyproject["project"]["scripts"]}
    return explicit | scripts


def debian_files(debs: Debs) -> set[str]:
    files = set()
    for deb in (debs.telemd, debs.crashprobe, debs.collector):
        for path in deb_files(deb):
            if path.startswith(("/usr/lib/python3/", "/usr/share/doc/", "/usr/share/lintian/")):
                continue
            files.add(normal(path))
    return files


def test_rpm_spec_installs_the_debian_packages_files(debs: Debs) -> None:
    assert spec_files() == debian_files(debs)


def test_pkgbuild_installs_the_debian_packages_files(debs: Debs) -> None:
    assert pkgbuild_files() == debian_files(debs)


def test_every_console_script_is_packaged(debs: Debs) -> None:
    pyproject = tomllib.loads((TOP / "pyproject.toml").read_text())
    scripts = {f"/usr/bin/{name}" for name in pyproject["project"]["scripts"]}
    assert scripts <= debian_files(debs)
    assert scripts <= spec_files()


def test_every_man_page_source_is_packaged(debs: Debs) -> None:
    sources = {p.name.removesuffix(".rst") for p in (TOP / "docs/man").glob("*.[1-8].rst")}
    shipped = {Path(p).name for p in debian_files(debs) if p.startswith("/usr/share/man/")}
    assert sources == shipped


def test_rpm_and_pkgbuild_scripts_name_the_units_of_telemd_units() -> None:
    spec = (TOP / "packaging/rpm/telemd.spec").read_text()
    assert f"%global telemd_units {' '.join(UNITS)}\n" in spec
    assert "%global telemd_own_units %{telemd_units} hprobe.service\n" in spec
    restart = [unit for unit in UNITS if not unit.endswith(".socket")]
    assert f"%global telemd_restart_units {' '.join(restart)}\n" in spec
    install = (TOP / "packaging/arch/telemd.install").read_text()
    assert f'_units="{" ".join(OWN_UNITS)}"' in install
    assert f"systemctl try-restart {' '.join(restart)}\n" in install
