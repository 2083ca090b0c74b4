"""Probe settings: defaults, overrides, errors, and agreement with the daemon's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from telemd_probes.settings import KEYS, SHARED_KEYS, load_probe_settings

from telemd.config import load_settings
from telemd.errors import ConfigError


@pytest.fixture(autouse=True)
def no_environment_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELEMD_CONFIG", raising=False)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "probes.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    settings = load_probe_settings()
    assert settings.crash_max_core_size == 512 << 20
    assert settings.crash_include_cmdline is False
    assert settings.crash_dedup_window == 600.0
    assert settings.journal_lines == 10
    assert settings.journal_ignore_units == ()
    assert (settings.pstore_dir, settings.pstore_keep) == ("/sys/fs/pstore", False)
    assert settings.client_socket is None


def test_shared_defaults_are_the_daemons() -> None:
    daemon = load_settings()
    assert {name: getattr(daemon, name) for name in SHARED_KEYS} == SHARED_KEYS


def test_probe_defaults_are_the_daemons() -> None:
    """telemd.config accepts the probe keys too; both must agree on the defaults."""
    daemon = load_settings()
    probes = load_probe_settings()
    for name in KEYS:
        theirs = getattr(daemon, name)
        if name == "crash_max_core_size":
            theirs <<= 20  # MiB in the file and in Settings, bytes in ProbeSettings
        assert getattr(probes, name) == theirs, name


def test_one_file_configures_the_daemon_and_its_probes(tmp_path: Path) -> None:
    path = write(tmp_path, 'journal_ignore_units = ["user@*.service"]\nspool_dir = "/x"\n')
    assert load_settings(path).journal_ignore_units == ("user@*.service",)
    assert load_probe_settings(path).journal_ignore_units == ("user@*.service",)


def test_a_file_overrides_probe_and_shared_keys_and_ignores_the_daemons(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'crash_max_core_size = 2\njournal_ignore_units = ["user@*.service"]\n'
        'socket_path = "/tmp/sock"\nspool_dir = "/ignored"\nlog_level = "debug"\n'
        "crash_dedup_window = 1.5\n",
    )
    settings = load_probe_settings(path)
    assert settings.crash_max_core_size == 2 << 20
    assert settings.journal_ignore_units == ("user@*.service",)
    assert settings.crash_dedup_window == 1.5
    assert settings.client_socket == "/tmp/sock"
    assert settings.explicit == {
        "crash_max_core_size",
        "journal_ignore_units",
        "socket_path",
        "crash_dedup_window",
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("journal_lines = -1", "journal_lines must be an integer of at least 0, got -1"),
        ("journal_lines = 2.5", "journal_lines must be an integer of at least 0, got 2.5"),
        ("pstore_keep = 1", "pstore_keep must be true or false, got 1"),
        ("crash_dedup_window = true", "crash_dedup_window must be a number of seconds"),
        ("journal_ignore_units = [1]", "journal_ignore_units must be a list of strings"),
        ("state_dir = 3", "state_dir must be a path, got 3"),
        ("crash_max_core_size = ", "invalid TOML"),
    ],
)
def test_errors_name_the_file_key_and_value(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text + "\n")
    with pytest.raises(ConfigError) as caught:
        load_probe_settings(path)
    assert caught.value.message.startswith(f"{path}: ")
    assert message in caught.value.message


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_probe_settings(str(tmp_path / "missing.toml"))


def test_every_key_is_documented() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "probes.md").read_text()
    for name in (*KEYS, *SHARED_KEYS):
        assert f"`{name}`" in doc
