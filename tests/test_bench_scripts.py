"""Every script in bench/ loads: its imports resolve as they do when it is run.

The benchmarks borrow helpers from tests/ (a PostgreSQL server, the probe
fixtures); moving one of those must not leave a benchmark that fails at its
first line. Each script is loaded the way `python bench/NAME` loads it (its
own directory first on sys.path), under a name other than __main__ so that
nothing is measured.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
SCRIPTS = sorted(path for path in BENCH.iterdir() if path.suffix == ".py" or path.name == "run-all")

LOAD = (
    "import runpy, sys\n"
    "sys.path.insert(0, sys.argv[1])\n"
    "runpy.run_path(sys.argv[2], run_name='bench_load_check')\n"
)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_bench_script_loads(script: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOAD, str(BENCH), str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_every_benchmark_is_checked() -> None:
    names = {path.name for path in SCRIPTS}
    assert {"intake.py", "delivery.py", "collector.py", "probes.py", "run-all"} <= names
