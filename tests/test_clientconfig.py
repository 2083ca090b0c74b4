"""The client's cheap settings reader agrees with the full loader, always."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemd import clientconfig, paths
from telemd.config import load_settings
from telemd.errors import ConfigError


@pytest.fixture(autouse=True)
def no_system_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEFAULTS_CONFIG", "SYSTEM_CONFIG", "LEGACY_SYSTEM_CONFIG"):
        monkeypatch.setattr(paths, name, str(tmp_path / "absent" / name))
    monkeypatch.delenv(paths.CONFIG_ENV, raising=False)


def both(path: Path) -> tuple[tuple[str, str, int], tuple[str, str, int]]:
    cheap = clientconfig.client_settings(str(path))
    full = load_settings(str(path))
    return (
        (cheap.socket_path, cheap.opt_in_file, cheap.max_payload_size),
        (full.socket_path, full.opt_in_file, full.max_payload_size),
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "# socket_path = '/commented/out'\n",
        'socket_path = "/run/x/telem-0"\n',
        "socket_path = '/run/literal'  # comment\nmax_payload_size = 100\n",
        '"socket_path" = "/quoted/key"\n',
        'opt_in_file = "/etc/x/opt-in"\nmax_payload_size = 4_096\n',
        'socket_path = "/with\\\\escape"\n',
        "socket_path = '''/multi'''\n",
        'spool_dir = "/elsewhere"\nsocket_path = "/run/y"\n',
    ],
)
def test_the_cheap_reader_matches_the_full_loader(tmp_path: Path, text: str) -> None:
    config = tmp_path / "telemd.toml"
    config.write_text(text)
    cheap, full = both(config)
    assert cheap == full


def test_plain_files_do_not_load_the_full_loader(tmp_path: Path) -> None:
    config = tmp_path / "telemd.toml"
    config.write_text('socket_path = "/run/plain"\nspool_dir = "/x"\n')
    probe = (
        "import sys; from telemd.clientconfig import client_settings;"
        "print(client_settings(sys.argv[1]).socket_path, 'tomllib' in sys.modules,"
        " 'telemd.config' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(config)], capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == ["/run/plain", "False", "False"]


def test_errors_in_client_keys_come_from_the_full_loader(tmp_path: Path) -> None:
    config = tmp_path / "telemd.toml"
    config.write_text("max_payload_size = 0\n")
    with pytest.raises(ConfigError, match="max_payload_size"):
        clientconfig.client_settings(str(config))
    config.write_text("[settings]\nsocket_path = '/x'\n")
    with pytest.raises(ConfigError):
        clientconfig.client_settings(str(config))


def test_a_missing_explicit_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        clientconfig.client_settings(str(tmp_path / "missing.toml"))


def test_a_legacy_file_is_read_by_the_full_loader(tmp_path: Path) -> None:
    config = tmp_path / "telemetrics.conf"
    config.write_text("[settings]\nsocket_path=/run/legacy-telem\n")
    assert clientconfig.client_settings(str(config)).socket_path == "/run/legacy-telem"


later_values = st.sampled_from(['"/run/a"', "'/run/b'", '"/run/c"  # note', '"/x\\\\y"'])


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(first=later_values, second=st.none() | later_values, size=st.integers(1, 100000))
def test_later_files_win_as_in_the_full_loader(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: str, second: str | None, size: int
) -> None:
    system = tmp_path / "system.toml"
    system.write_text(f"socket_path = {first}\nmax_payload_size = {size}\n")
    monkeypatch.setattr(paths, "SYSTEM_CONFIG", str(system))
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("" if second is None else f"socket_path = {second}\n")
    cheap, full = both(explicit)
    assert cheap == full
