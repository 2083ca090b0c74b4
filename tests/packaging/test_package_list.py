"""pyproject.toml lists its packages by name: a new subpackage must be among them.

An editable install finds any directory, so every other test passes while a
wheel, .deb or .rpm would ship without the new code.
"""

from __future__ import annotations

from pathlib import Path

from telemd.tomlfile import read_toml

ROOT = Path(__file__).resolve().parents[2]


def test_every_python_package_is_listed() -> None:
    setuptools = read_toml(str(ROOT / "pyproject.toml"))["tool"]["setuptools"]
    directories = {"telemd": "telemd", **setuptools.get("package-dir", {})}
    found = {
        ".".join((name, *init.parent.relative_to(ROOT / directory).parts))
        for name, directory in directories.items()
        for init in (ROOT / directory).rglob("__init__.py")
    }
    missing = found - set(setuptools["packages"])
    assert not missing, f"add {sorted(missing)} to [tool.setuptools] packages in pyproject.toml"
