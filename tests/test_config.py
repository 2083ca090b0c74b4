"""Tests for telemd.config: real files in tmp_path, the search path pointed at them."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from telemd import config, paths
from telemd.config import Settings, load_settings, render_default_file, validate_file
from telemd.errors import ConfigError, ErrorCode

SHIPPED = Path(__file__).resolve().parent.parent / "etc" / "telemetrics.toml"

# Clear Linux's shipped telemetrics.conf, with values changed so that each one shows.
CLEAR_CONF = """\
[settings]
server=https://clr.telemetry.example.com/v2/collector
socket_path=/run/telem-1
spool_dir=/var/spool/telemetry2
record_expiry=60
spool_max_size=-1
spool_process_time=300
rate_limit_enabled=FALSE
record_burst_limit=10
record_window_length=1
byte_burst_limit=4096
byte_window_length=59
rate_limit_strategy=drop
record_retention_enabled=yes
record_server_delivery_enabled=0
daemon_recycling_enabled=no
cainfo=
tidheader=X-Telemetry-TID: 00000000-0000-0000-0000-000000000000
"""

# (key, lowest valid, highest valid or None, whether -1 switches it off), from the spec.
INT_RANGES = [
    ("record_expiry", 1, None, False),
    ("spool_max_size", 1, None, True),
    ("spool_process_time", 1, 3600, False),
    ("record_burst_limit", 1, None, True),
    ("record_window_length", 1, 59, False),
    ("byte_burst_limit", 1, None, True),
    ("byte_window_length", 1, 59, False),
    ("max_clients", 1, 65536, False),
    ("max_uid_connections", 1, 65536, False),
    ("max_payload_size", 1, 1048576, False),
    ("uid_records_per_minute", 1, None, True),
]
INT64 = 2**63


@pytest.fixture(autouse=True)
def search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point every standard location into tmp_path, where nothing exists yet."""
    monkeypatch.setattr(paths, "DEFAULTS_CONFIG", str(tmp_path / "defaults.toml"))
    monkeypatch.setattr(paths, "SYSTEM_CONFIG", str(tmp_path / "system.toml"))
    monkeypatch.setattr(paths, "LEGACY_SYSTEM_CONFIG", str(tmp_path / "telemetrics.conf"))
    return tmp_path


def write(path: Path | str, text: str) -> str:
    Path(path).write_text(text)
    return str(path)


def error_of(tmp_path: Path, text: str, name: str = "test.toml") -> tuple[str, str]:
    """(path, message) of the ConfigError that loading `text` raises."""
    path = write(tmp_path / name, text)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={})
    assert info.value.code == ErrorCode.CONFIG
    assert "\n" not in info.value.message
    return path, info.value.message


def test_defaults() -> None:
    s = load_settings(environ={})
    assert s.server == ""
    assert s.socket_path == "/run/telem-0"
    assert s.spool_dir == "/var/spool/telemetry"
    assert s.cainfo == ""
    assert s.tidheader == "X-Telemetry-TID: 6907c830-eed9-4ce9-81ae-76daf8d88f0f"
    assert s.record_expiry == 1200 * 60.0
    assert s.spool_max_size == 5120
    assert s.spool_process_time == 120.0
    assert s.rate_limit_enabled is True
    assert s.record_burst_limit == 1000
    assert s.record_window_length == 15 * 60.0
    assert s.byte_burst_limit == -1
    assert s.byte_window_length == 20 * 60.0
    assert s.rate_limit_strategy == "spool"
    assert s.record_retention_enabled is False
    assert s.record_server_delivery_enabled is True
    assert s.daemon_recycling_enabled is True
    assert s.opt_in_file == "/etc/telemetrics/opt-in"
    assert s.static_machine_id_file == "/etc/telemetrics/opt-in-static-machine-id"
    assert s.no_privacy_filters_file == "/etc/telemetrics/opt-in-no-privacy-filters"
    assert s.state_dir == "/var/lib/telemetry"
    assert s.socket_mode == 0o666
    assert s.max_clients == 512
    assert s.client_timeout == 5.0
    assert s.max_payload_size == 8192
    assert s.uid_records_per_minute == 1000
    assert s.log_level == "info"
    assert dict(s.sources) == dict.fromkeys(config.setting_names(), "default")


def test_settings_is_frozen_and_sources_stay_out_of_eq_and_repr(tmp_path: Path) -> None:
    s = load_settings(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.server = "https://example.com"  # type: ignore[misc]
    same = load_settings(write(tmp_path / "same.toml", 'server = ""\n'), environ={})
    assert same.sources["server"] != s.sources["server"]
    assert same == s
    assert hash(same) == hash(s)
    assert "sources" not in repr(s)


def test_setting_names_are_the_settings_attributes() -> None:
    fields = [f.name for f in dataclasses.fields(Settings) if f.name != "sources"]
    assert list(config.setting_names()) == fields
    assert len(fields) == len(config.KEYS) == 54


def test_precedence_defaults_then_system_then_explicit(search_path: Path) -> None:
    write(paths.DEFAULTS_CONFIG, "max_clients = 1\nmax_payload_size = 1\nrecord_expiry = 1\n")
    write(paths.SYSTEM_CONFIG, "max_payload_size = 2\nrecord_expiry = 2\n")
    explicit = write(search_path / "explicit.toml", "record_expiry = 3\n")
    s = load_settings(explicit, environ={})
    assert (s.max_clients, s.max_payload_size, s.record_expiry) == (1, 2, 180.0)
    assert s.sources["max_clients"] == paths.DEFAULTS_CONFIG
    assert s.sources["max_payload_size"] == paths.SYSTEM_CONFIG
    assert s.sources["record_expiry"] == explicit
    assert s.sources["log_level"] == "default"


def test_environment_names_the_top_file_unless_one_is_given(search_path: Path) -> None:
    from_env = write(search_path / "env.toml", 'log_level = "debug"\n')
    given_file = write(search_path / "given.toml", 'log_level = "error"\n')
    assert load_settings(environ={paths.CONFIG_ENV: from_env}).log_level == "debug"
    assert load_settings(given_file, environ={paths.CONFIG_ENV: from_env}).log_level == "error"


def test_legacy_ini_is_read_with_one_warning(
    search_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(paths.LEGACY_SYSTEM_CONFIG, CLEAR_CONF + "socket_mode=0600\nold_clear_key=1\n")
    caplog.set_level(logging.WARNING, logger="telemd.config")
    s = load_settings(environ={})
    assert s.server == "https://clr.telemetry.example.com/v2/collector"
    assert (s.socket_path, s.spool_dir, s.cainfo) == ("/run/telem-1", "/var/spool/telemetry2", "")
    assert s.tidheader == "X-Telemetry-TID: 00000000-0000-0000-0000-000000000000"
    assert (s.record_expiry, s.record_window_length, s.byte_window_length) == (3600, 60, 3540)
    assert (s.spool_max_size, s.spool_process_time) == (-1, 300.0)
    assert (s.record_burst_limit, s.byte_burst_limit, s.rate_limit_strategy) == (10, 4096, "drop")
    assert s.rate_limit_enabled is False
    assert s.record_retention_enabled is True
    assert s.record_server_delivery_enabled is False
    assert s.daemon_recycling_enabled is False
    # Only Clear's keys count in a legacy file; ours are ignored like unknown ones.
    assert s.socket_mode == 0o666
    assert s.sources["server"] == paths.LEGACY_SYSTEM_CONFIG
    warnings = [r for r in caplog.records if r.name == "telemd.config"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    message = warnings[0].getMessage()
    assert paths.LEGACY_SYSTEM_CONFIG in message
    assert "TOML" in message
    assert "old_clear_key" in message
    assert "socket_mode" in message


def test_legacy_ini_is_ignored_beside_a_toml_file(
    search_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(paths.LEGACY_SYSTEM_CONFIG, CLEAR_CONF)
    write(paths.SYSTEM_CONFIG, "max_clients = 7\n")
    caplog.set_level(logging.WARNING, logger="telemd.config")
    s = load_settings(environ={})
    assert (s.max_clients, s.socket_path) == (7, "/run/telem-0")
    assert caplog.records == []


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("rate_limit_enabled=maybe", "rate_limit_enabled must be true or false, got 'maybe'"),
        (
            "spool_max_size=5 MB",
            "spool_max_size must be an integer number of KiB >= 1, or -1 for no limit, got '5 MB'",
        ),
        (
            "record_window_length=0",
            "record_window_length must be an integer number of minutes from 1 to 59, got '0'",
        ),
    ],
)
def test_legacy_ini_values_are_checked(tmp_path: Path, line: str, expected: str) -> None:
    path, message = error_of(tmp_path, f"[settings]\n{line}\n", "bad.conf")
    assert message == f"{path}: {expected}"


def test_malformed_legacy_ini(tmp_path: Path) -> None:
    path, message = error_of(tmp_path, "server=https://example.com\n", "nosection.conf")
    assert message.startswith(f"{path}: invalid INI file: ")
    assert re.search(r"line:? 1\b", message)


def test_minutes_become_seconds(tmp_path: Path) -> None:
    text = "record_expiry = 2\nrecord_window_length = 3\nbyte_window_length = 59\n"
    s = load_settings(write(tmp_path / "m.toml", text), environ={})
    assert (s.record_expiry, s.record_window_length, s.byte_window_length) == (120, 180, 3540)
    assert all(
        isinstance(v, float) for v in (s.record_expiry, s.spool_process_time, s.client_timeout)
    )


@pytest.mark.parametrize(
    ("value", "mode"), [("0o640", 0o640), ('"0640"', 0o640), ('"640"', 0o640), ("0", 0)]
)
def test_socket_mode_forms(tmp_path: Path, value: str, mode: int) -> None:
    path = write(tmp_path / "mode.toml", f"socket_mode = {value}\n")
    assert load_settings(path, environ={}).socket_mode == mode


def test_floats_accept_integers(tmp_path: Path) -> None:
    s = load_settings(write(tmp_path / "f.toml", "client_timeout = 2\n"), environ={})
    assert s.client_timeout == 2.0
    assert isinstance(s.client_timeout, float)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('spol_dir = "/x"', "unknown key 'spol_dir' (did you mean 'spool_dir'?)"),
        ("zzzz = 1", "unknown key 'zzzz'"),
        (
            'spool_max_size = "5 MB"',
            "spool_max_size must be an integer number of KiB >= 1, or -1 for no limit, got '5 MB'",
        ),
        ("max_clients = true", "max_clients must be an integer from 1 to 65536, got true"),
        ("max_clients = 2.0", "max_clients must be an integer from 1 to 65536, got 2.0"),
        ('rate_limit_enabled = "true"', "rate_limit_enabled must be true or false, got 'true'"),
        ("rate_limit_enabled = 1", "rate_limit_enabled must be true or false, got 1"),
        (
            "record_window_length = 60",
            "record_window_length must be an integer number of minutes from 1 to 59, got 60",
        ),
        (
            "spool_max_size = 0",
            "spool_max_size must be an integer number of KiB >= 1, or -1 for no limit, got 0",
        ),
        (
            "max_payload_size = -1",
            "max_payload_size must be an integer number of bytes from 1 to 1048576, got -1",
        ),
        ("client_timeout = 0", "client_timeout must be a number of seconds > 0 and <= 3600, got 0"),
        (
            "client_timeout = nan",
            "client_timeout must be a number of seconds > 0 and <= 3600, got nan",
        ),
        (
            "client_timeout = 3600.5",
            "client_timeout must be a number of seconds > 0 and <= 3600, got 3600.5",
        ),
        (
            'rate_limit_strategy = "Drop"',
            "rate_limit_strategy must be one of 'spool', 'drop', got 'Drop'",
        ),
        (
            'log_level = "trace"',
            "log_level must be one of 'debug', 'info', 'warning', 'error', got 'trace'",
        ),
        (
            'server = "ftp://example.com"',
            "server must be empty or an http:// or https:// URL, got 'ftp://example.com'",
        ),
        (
            'server = "https://"',
            "server must be empty or an http:// or https:// URL, got 'https://'",
        ),
        (
            'server = "http://[::1"',
            "server must be empty or an http:// or https:// URL, got 'http://[::1':"
            " invalid IPv6 URL",
        ),
        (
            'server = "http://[::1]:99999/"',
            "server must be empty or an http:// or https:// URL, got 'http://[::1]:99999/':"
            " the port must be from 1 to 65535, not 99999",
        ),
        (
            'tidheader = "no colon"',
            "tidheader must be an HTTP header 'Name: value', got 'no colon'",
        ),
        (
            'tidheader = "X-Empty: "',
            "tidheader must be an HTTP header 'Name: value', got 'X-Empty: '",
        ),
        (
            'tidheader = "X-A: b\\r\\nX-B: c"',
            "tidheader must be an HTTP header 'Name: value', got 'X-A: b\\r\\nX-B: c'",
        ),
        ('spool_dir = "spool"', "spool_dir must be an absolute path, got 'spool'"),
        ('cainfo = "ca.pem"', "cainfo must be empty or an absolute path, got 'ca.pem'"),
        (
            "socket_mode = 0o1000",
            "socket_mode must be a file mode from 0o000 to 0o777, written 0o640 or '0640', got 512",
        ),
        (
            'socket_mode = "0x1ff"',
            "socket_mode must be a file mode from 0o000 to 0o777, "
            "written 0o640 or '0640', got '0x1ff'",
        ),
        (
            'socket_mode = "680"',
            "socket_mode must be a file mode from 0o000 to 0o777, "
            "written 0o640 or '0640', got '680'",
        ),
        (
            'socket_mode = "1000"',
            "socket_mode must be a file mode from 0o000 to 0o777, "
            "written 0o640 or '0640', got '1000'",
        ),
        ('spool_dir = "/a\\u0000b"', "spool_dir must be an absolute path, got '/a\\x00b'"),
        (
            '[settings]\nserver = ""',
            "key 'settings' is a table; only key = value lines are allowed",
        ),
        ("server = { url = 'x' }", "key 'server' is a table; only key = value lines are allowed"),
    ],
)
def test_errors_name_file_key_value_and_expectation(
    tmp_path: Path, text: str, expected: str
) -> None:
    path, message = error_of(tmp_path, text + "\n")
    assert message == f"{path}: {expected}"


def test_malformed_toml_names_line_and_column(tmp_path: Path) -> None:
    path, message = error_of(tmp_path, 'server = ""\nspool_dir = "/unterminated\n')
    assert message.startswith(f"{path}: invalid TOML: ")
    assert re.search(r"line 2, column \d+", message)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'server = "caf\xe9"\n')
    assert validate_file(str(path)) == [f"{path}: not UTF-8 text (byte 13)"]


def test_missing_explicit_file_is_reported(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=f"^cannot read {re.escape(missing)}: No such file"):
        load_settings(missing, environ={})


def test_directory_given_as_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(str(tmp_path), environ={})
    assert info.value.message == f"cannot read {tmp_path}: Is a directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write(tmp_path / "secret.toml", "max_clients = 2\n")
    os.chmod(path, 0)
    try:
        assert validate_file(path) == [f"cannot read {path}: Permission denied"]
    finally:
        os.chmod(path, 0o600)


def test_validate_file_reports_every_error(tmp_path: Path) -> None:
    path = write(
        tmp_path / "bad.toml",
        'spol_dir = "/x"\nmax_clients = 0\nlog_level = "loud"\nserver = "https://ok.example"\n',
    )
    errors = validate_file(path)
    assert len(errors) == 3
    assert errors[0].startswith(f"{path}: unknown key 'spol_dir'")
    assert errors[1].startswith(f"{path}: max_clients must be")
    assert errors[2].startswith(f"{path}: log_level must be")


def test_tls_files_are_opened_only_when_asked(tmp_path: Path) -> None:
    """telemctl, run by any user, loads without opening them; the daemon opens them."""
    missing = tmp_path / "ca.pem"
    path = write(tmp_path / "tls.toml", f'cainfo = "{missing}"\n')
    assert load_settings(path, environ={}).cainfo == str(missing)
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={}, open_files=True)
    assert info.value.message == (
        f"{path}: cainfo must be a readable file, got '{missing}': No such file or directory"
    )
    assert validate_file(path) == [info.value.message]


def test_a_tls_file_error_names_the_file_that_set_the_key(search_path: Path) -> None:
    write(search_path / "system.toml", f'tls_client_cert = "{search_path / "c.pem"}"\n')
    (search_path / "c.pem").write_text("not PEM\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, open_files=True)
    assert info.value.message.startswith(f"{search_path / 'system.toml'}: tls_client_cert must be")


def test_validate_file_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path / "good.toml", 'server = "https://telemetry.example/v2"\n')
    assert validate_file(path) == []


def test_shipped_file_is_the_rendered_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()  # the file's header names the real standard locations
    assert SHIPPED.read_text() == render_default_file()


def test_shipped_file_loads_to_the_defaults() -> None:
    s = load_settings(str(SHIPPED), environ={})
    assert s == load_settings(environ={})
    assert set(s.sources.values()) == {"default"}


def test_uncommenting_every_setting_gives_the_defaults(tmp_path: Path) -> None:
    text = render_default_file()
    uncommented, count = re.subn(r"^#(?=[a-z0-9_]+ = )", "", text, flags=re.MULTILINE)
    assert count == len(config.setting_names())
    path = write(tmp_path / "uncommented.toml", uncommented)
    s = load_settings(path, environ={})
    assert s == load_settings(environ={})
    assert dict(s.sources) == dict.fromkeys(config.setting_names(), path)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=200)
@given(data=st.data())
def test_out_of_range_integers_name_their_key(tmp_path: Path, data: st.DataObject) -> None:
    name, low, high, off = data.draw(st.sampled_from(INT_RANGES))
    below = st.integers(min_value=-INT64, max_value=low - 1)
    above = st.integers(min_value=high + 1, max_value=INT64 - 1) if high else st.nothing()
    value = data.draw((below | above).filter(lambda v: not (off and v == -1)))
    path = write(tmp_path / "range.toml", f"{name} = {value}\n")
    [message] = validate_file(path)
    assert message.startswith(f"{path}: {name} must be ")
    assert message.endswith(f", got {value}")


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o601])
def test_a_collector_token_file_open_to_others_is_refused(tmp_path: Path, mode: int) -> None:
    token_file = tmp_path / "collector.token"
    token_file.write_text("telemd_secret\n")
    token_file.chmod(mode)
    conf = tmp_path / "telemd.toml"
    conf.write_text(f'collector_token_file = "{token_file}"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(str(conf), environ={})
    assert str(token_file) in caught.value.message
    assert "other users" in caught.value.message
    assert "telemd_secret" not in caught.value.message


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400])
def test_a_collector_token_file_for_owner_and_group_is_taken(tmp_path: Path, mode: int) -> None:
    token_file = tmp_path / "collector.token"
    token_file.write_text("telemd_secret\n")
    token_file.chmod(mode)
    conf = tmp_path / "telemd.toml"
    conf.write_text(f'collector_token_file = "{token_file}"\n')
    assert load_settings(str(conf), environ={}).collector_token_file == str(token_file)


def test_a_missing_collector_token_file_is_named(tmp_path: Path) -> None:
    conf = tmp_path / "telemd.toml"
    conf.write_text(f'collector_token_file = "{tmp_path}/none"\n')
    with pytest.raises(ConfigError, match=f"{tmp_path}/none"):
        load_settings(str(conf), environ={})
