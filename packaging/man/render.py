"""Render the man pages in docs/man/*.rst to troff in OUTDIR.

One source for the Debian, RPM and Arch packages: each recipe runs
`python3 packaging/man/render.py OUTDIR` and installs OUTDIR/NAME.SECTION.
Needs docutils only (Debian/Fedora python3-docutils, Arch python-docutils).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from docutils.core import publish_file

SOURCE = Path(__file__).resolve().parents[2] / "docs" / "man"


def pages(source: Path = SOURCE) -> list[Path]:
    """Every page source, named NAME.SECTION.rst."""
    return sorted(source.glob("*.[1-8].rst"))


def render(outdir: Path, source: Path = SOURCE) -> list[Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    for rst in pages(source):
        target = outdir / rst.name.removesuffix(".rst")
        publish_file(
            source_path=str(rst),
            destination_path=str(target),
            writer_name="manpage",
            settings_overrides={
                "report_level": 2,  # warnings and worse are printed
                "halt_level": 2,  # and stop the build
                "input_encoding": "utf-8",
                "output_encoding": "utf-8",
            },
        )
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    args = parser.parse_args(argv)
    for path in render(args.outdir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
