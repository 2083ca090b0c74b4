"""Probe settings: defaults, overrides, errors, and agreement with the daemon's defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
from telemd_probes.common.settings import KEYS, load_probe_settings

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


def test_defaults_are_the_daemons() -> None:
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
        ("journal_lines = -1", "journal_lines must be an integer from 0 to 1000, got -1"),
        ("journal_lines = 2.5", "journal_lines must be an integer from 0 to 1000, got 2.5"),
        ("pstore_keep = 1", "pstore_keep must be true or false, got 1"),
        ("crash_dedup_window = true", "crash_dedup_window must be a number of seconds"),
        ("journal_ignore_units = [1]", "journal_ignore_units must be a list of shell patterns"),
        ("state_dir = 3", "state_dir must be an absolute path, got 3"),
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
    for name in KEYS:
        assert f"`{name}`" in doc


@pytest.mark.parametrize(
    "text",
    [
        "journal_lines = 1000",
        "journal_lines = 1001",
        "klog_quiet_period = 0.005",
        "klog_quiet_period = 0",
        "crash_unwind_timeout = 600",
        "crash_unwind_timeout = 601",
        "crash_max_core_size = 2.0",
        'pstore_dir = "relative/dir"',
        'socket_path = "/run/elsewhere"',
        'socket_path = ""',
    ],
)
def test_probes_and_daemon_accept_and_reject_the_same_values(tmp_path: Path, text: str) -> None:
    """Each edge is checked once, in telemd.keys: a value the daemon refuses
    must not configure a probe, and the reverse."""
    path = write(tmp_path, text + "\n")
    daemon_error = probe_error = None
    try:
        load_settings(path)
    except ConfigError as exc:
        daemon_error = exc.message
    try:
        load_probe_settings(path)
    except ConfigError as exc:
        probe_error = exc.message
    assert (daemon_error is None) == (probe_error is None), (daemon_error, probe_error)
    if probe_error is not None:
        assert probe_error in str(daemon_error)
