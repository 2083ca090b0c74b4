"""Bad configuration: every kind gives one line naming the file (and the key
where there is one) and exit status 78 (EX_CONFIG), never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = [
    ("malformed toml", 'spool_dir = "/tmp\n', None),
    ("wrong type", "max_clients = 'many'\n", "max_clients"),
    ("wrong type list", "client_timeout = [1, 2]\n", "client_timeout"),
    ("out of range", "max_clients = 0\n", "max_clients"),
    ("out of range high", "retry_max = 1e9\n", "retry_max"),
    ("unknown key", "spool_dri = '/tmp/x'\n", "spool_dri"),
    ("relative path", "spool_dir = 'spool'\n", "spool_dir"),
    ("bad mode", "socket_mode = '999'\n", "socket_mode"),
    ("binary junk", "\udcff\x00\x01 = \x02\n", None),
]


@pytest.mark.parametrize(("name", "text", "key"), CASES, ids=[case[0] for case in CASES])
def test_bad_configuration_is_one_line_and_exit_78(
    tmp_path: Path, name: str, text: str, key: str | None
) -> None:
    config = tmp_path / "telemd.toml"
    config.write_bytes(text.encode("utf-8", "surrogateescape"))
    result = run(config)
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(config) in result.stderr
    if key is not None:
        assert key in result.stderr


@pytest.mark.parametrize("kind", ["a directory", "missing"])
def test_an_unreadable_configuration_is_one_line_and_exit_78(tmp_path: Path, kind: str) -> None:
    config = tmp_path / "telemd.toml"
    if kind == "a directory":
        config.mkdir()
    result = run(config)
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(config) in result.stderr


def run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemd.daemon", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_a_token_file_others_can_read_is_exit_78_naming_it(tmp_path: Path) -> None:
    token_file = tmp_path / "collector.token"
    token_file.write_text("telemd_" + "x" * 43 + "\n")
    token_file.chmod(0o644)
    config = tmp_path / "telemd.toml"
    config.write_text(f'collector_token_file = "{token_file}"\n')
    result = run(config)
    assert result.returncode == 78, result.stderr
    assert str(token_file) in result.stderr and "chmod o-rwx" in result.stderr
    assert "x" * 43 not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
