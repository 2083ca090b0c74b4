"""telemd.collector.config and the CLI's exit status 78: every bad value is named."""

from __future__ import annotations

from pathlib import Path

import pytest

from telemd.collector import config
from telemd.collector.cli import EXIT_CONFIG, main
from telemd.collector.ingest.records import CLEAR_LINUX_TID
from telemd.errors import ConfigError

OTHER_TID = "11111111-2222-4333-8444-555555555555"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "collector.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    loaded = config.load({}, environ={})
    assert loaded.tids == frozenset({CLEAR_LINUX_TID})
    assert loaded.db.startswith("sqlite:///")
    assert (loaded.host, loaded.port, loaded.tls) == ("127.0.0.1", 8080, False)
    assert loaded.max_payload_size == 32768 and loaded.retention_days == 0


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        'port = 9000\nhost = "0.0.0.0"\nretention_days = 30\n'
        f'tid = ["{OTHER_TID}"]\n[retention]\n"org.clearlinux/hello/world" = 7\n',
    )
    env = {
        "TELEMD_COLLECTOR_PORT": "9001",
        "TELEMD_COLLECTOR_TID": f"{CLEAR_LINUX_TID},{OTHER_TID}",
    }
    loaded = config.load({"port": ("9002", "option --port")}, path, env)
    assert loaded.port == 9002
    assert loaded.host == "0.0.0.0"
    assert loaded.tids == frozenset({CLEAR_LINUX_TID, OTHER_TID})
    assert loaded.retention == {"org.clearlinux/hello/world": 7}
    assert loaded.retention_days == 30


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "port = 9100\n")
    assert config.load({}, environ={"TELEMD_COLLECTOR_CONFIG": path}).port == 9100


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("port = 70000\n", "port in {path} must be an integer in 1..65535, got 70000"),
        ('port = "http"\n', "port in {path} must be an integer"),
        ("colour = 1\n", "unknown key 'colour' in {path}"),
        ("port = \n", "{path}: invalid TOML"),
        ('tid = ["not-a-uuid"]\n', "tid in {path} must be a telemetry id"),
        ("tid = []\n", "tid in {path} must be one or more telemetry ids"),
        ('db = "mysql://x/y"\n', "db in {path} must be a URL"),
        ('certfile = "/nonexistent.pem"\n', "certfile in {path} must be a readable file"),
        ("max_payload_size = 0\n", "max_payload_size in {path} must be an integer"),
        ("retention_days = -1\n", "retention_days in {path}"),
        ('[retention]\n"a/b" = 3\n', "retention in {path}: classification must have exactly 3"),
        ('[retention]\n"a/b/c" = "x"\n', "retention in {path} 'a/b/c' must be an integer"),
        ("purge_interval = 0\n", "purge_interval in {path} must be a number of seconds"),
        ('log_level = "loud"\n', "log_level in {path} must be one of"),
        ('host = ""\n', "host in {path} must be a non-empty string"),
        ('host = "a b"\n', "host in {path} must be an IP address or a host name, got 'a b'"),
        (
            'db = "postgresql://me:secret@db.example:0/t"\n',
            "db in {path} must be a URL postgresql://USER@HOST[:PORT]/DB,"
            " got 'postgresql://db.example:0/t': port 0 cannot be connected to",
        ),
        ('allow_insecure_http = "maybe"\n', "allow_insecure_http in {path} must be true or false"),
        ("header_timeout = 0\n", "header_timeout in {path} must be a number of seconds"),
        ('body_timeout = "inf"\n', "body_timeout in {path} must be a number of seconds"),
        ("keep_alive_timeout = 0\n", "keep_alive_timeout in {path} must be an integer in 1.."),
        ("max_connections = 0\n", "max_connections in {path} must be an integer in 1.."),
        ('ingest_auth = "password"\n', "ingest_auth in {path} must be one of none, token, mtls"),
        ("ingest_rate_limit = -1\n", "ingest_rate_limit in {path} must be requests a second"),
        ('ingest_rate_limit = "fast"\n', "ingest_rate_limit in {path} must be requests a second"),
        ('client_ca = "/nonexistent.pem"\n', "client_ca in {path} must be a readable file"),
        ('ingest_auth = "mtls"\n', "ingest_auth = mtls needs client_ca"),
    ],
)
def test_bad_file_values_name_file_and_key(tmp_path: Path, text: str, words: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        config.load({}, path, {})
    assert words.format(path=path) in caught.value.message


def test_connection_limits_from_file_and_flags(tmp_path: Path) -> None:
    path = write(tmp_path, "header_timeout = 2.5\nbody_timeout = 30\nmax_connections = 100\n")
    loaded = config.load({"keep_alive_timeout": ("7", "option --keep-alive-timeout")}, path, {})
    assert (loaded.header_timeout, loaded.body_timeout) == (2.5, 30.0)
    assert (loaded.keep_alive_timeout, loaded.max_connections) == (7, 100)
    defaults = config.load({}, environ={})
    assert (defaults.header_timeout, defaults.body_timeout) == (10.0, 60.0)
    assert (defaults.keep_alive_timeout, defaults.max_connections) == (5, 4096)


def test_a_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "collector.toml"
    path.write_bytes(b"port = 9100\n# caf\xe9\n")
    with pytest.raises(ConfigError, match=f"{path}: not UTF-8 text"):
        config.load({}, str(path), {})


def test_bad_environment_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="environment variable TELEMD_COLLECTOR_PORT"):
        config.load({}, environ={"TELEMD_COLLECTOR_PORT": "x"})


def test_missing_config_file_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"cannot read /nonexistent/collector\.toml"):
        config.load({}, "/nonexistent/collector.toml", {})


def test_certfile_needs_keyfile(tmp_path: Path) -> None:
    cert = tmp_path / "cert.pem"
    cert.write_text("x")
    with pytest.raises(ConfigError, match="together"):
        config.load({"certfile": (str(cert), "option --certfile")}, environ={})


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--port", "0"], "option --port must be an integer in 1..65535, got 0"),
        (["--tid", "nope"], "option --tid must be a telemetry id"),
        (["--retention", "a/b/c"], "option --retention must be CLASS=DAYS"),
        (["--retention", "a/b/c=x"], "option --retention 'a/b/c' must be an integer"),
        (["query", "--db", "oracle://x"], "option --db must be a URL"),
        (["--config", "/nonexistent.toml"], "cannot read /nonexistent.toml"),
        (["--ingest-rate-limit", "lots"], "option --ingest-rate-limit must be requests a second"),
    ],
)
def test_cli_exits_78_with_one_line(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TELEMD_COLLECTOR_CONFIG", raising=False)
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "collector.example"])
def test_plain_http_beyond_loopback_needs_consent(host: str) -> None:
    loaded = config.load({"host": (host, "option --host")}, environ={})
    with pytest.raises(ConfigError, match=f"host {host} is not a loopback address"):
        config.check_listening(loaded)
    allowed = config.load(
        {"host": (host, "option --host"), "allow_insecure_http": (True, "option")}, environ={}
    )
    config.check_listening(allowed)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_plain_http_on_loopback_is_fine(host: str) -> None:
    config.check_listening(config.load({"host": (host, "option --host")}, environ={}))


def test_serve_refuses_plain_http_on_all_interfaces(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["serve", "--host", "0.0.0.0", "--db", "sqlite:////nonexistent/x.db"]) == EXIT_CONFIG
    )
    assert "not a loopback address" in capsys.readouterr().err


def test_access_settings_from_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, 'ingest_auth = "token"\ningest_rate_limit = 0\n')
    loaded = config.load({}, path, {})
    assert (loaded.ingest_auth, loaded.ingest_rate_limit) == ("token", 0.0)
    assert config.load({}, environ={}).ingest_auth == "none"
