"""Bad configuration: every kind gives one line naming the file (and the key
where there is one) and exit status 78 (EX_CONFIG), never a traceback; a bad
reload keeps the running configuration and logs the same line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from daemon_harness import AS_NOBODY, DaemonHarness, command, directory_for_nobody

from telemd.client import Client
from telemd.record import Record

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


def assert_one_line_exit_78(
    result: subprocess.CompletedProcess[str], config: Path, key: str | None
) -> None:
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert str(config) in result.stderr
    if key is not None:
        assert key in result.stderr


@pytest.mark.parametrize(("name", "text", "key"), CASES, ids=[case[0] for case in CASES])
def test_bad_configuration_is_one_line_and_exit_78(
    tmp_path: Path, name: str, text: str, key: str | None
) -> None:
    config = tmp_path / "telemd.toml"
    config.write_bytes(text.encode("utf-8", "surrogateescape"))
    result = run(config)
    assert_one_line_exit_78(result, config, key)


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


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Real PEM files: a CA bundle, a client certificate and its key, another key, junk."""
    trustme = pytest.importorskip("trustme")
    folder = tmp_path_factory.mktemp("pem")
    ca = trustme.CA()
    client = ca.issue_cert("client.example")
    other = trustme.CA().issue_cert("other.example")
    files = {
        "ca": ca.cert_pem,
        "cert": client.cert_chain_pems[0],
        "key": client.private_key_pem,
        "other_key": other.private_key_pem,
    }
    paths = {}
    for name, blob in files.items():
        blob.write_to_path(str(folder / f"{name}.pem"))
        paths[name] = str(folder / f"{name}.pem")
    (folder / "junk.pem").write_text("not PEM at all\n")
    paths["junk"] = str(folder / "junk.pem")
    paths["missing"] = str(folder / "missing.pem")
    paths["directory"] = str(folder)
    return paths


# (name, the settings as TOML with {pem} names filled in, the key, the value).
VALUE_CASES = [
    ("unclosed ipv6", 'server = "http://[::1"', "server", "http://[::1"),
    ("port too high", 'server = "http://localhost:99999/"', "server", "99999"),
    ("port zero", 'server = "https://localhost:0/"', "server", ":0/"),
    ("port not a number", 'server = "http://localhost:80a/"', "server", "80a"),
    ("bad ipv4", 'server = "http://10.0.0.300/"', "server", "10.0.0.300"),
    ("bad scheme", 'server = "ftp://example.com/"', "server", "ftp://example.com/"),
    ("socket path too long", f'socket_path = "/run/{"s" * 103}"', "socket_path", "s" * 103),
    (
        "control socket path too long",
        f'control_socket_path = "/run/{"c" * 103}"',
        "control_socket_path",
        "c" * 103,
    ),
    ("missing cainfo", 'cainfo = "{missing}"', "cainfo", "{missing}"),
    ("cainfo a directory", 'cainfo = "{directory}"', "cainfo", "{directory}"),
    ("cainfo not pem", 'cainfo = "{junk}"', "cainfo", "{junk}"),
    ("missing client cert", 'tls_client_cert = "{missing}"', "tls_client_cert", "{missing}"),
    (
        "missing client key",
        'tls_client_cert = "{cert}"\ntls_client_key = "{missing}"',
        "tls_client_key",
        "{missing}",
    ),
    ("client key alone", 'tls_client_key = "{key}"', "tls_client_key", "{key}"),
    ("client cert without key", 'tls_client_cert = "{cert}"', "tls_client_cert", "{cert}"),
    (
        "client key of another cert",
        'tls_client_cert = "{cert}"\ntls_client_key = "{other_key}"',
        "tls_client_cert",
        "{cert}",
    ),
]


RELOAD_CASES = ["unclosed ipv6", "missing cainfo", "client key of another cert"]


@pytest.mark.parametrize(
    ("name", "text", "key", "value"), VALUE_CASES, ids=[case[0] for case in VALUE_CASES]
)
def test_a_bad_value_names_file_key_and_value_and_exits_78(
    tmp_path: Path, pem: dict[str, str], name: str, text: str, key: str, value: str
) -> None:
    config = tmp_path / "telemd.toml"
    config.write_text(text.format(**pem) + "\n")
    result = run(config)
    assert result.returncode == 78, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{config}: {key} must be " in result.stderr
    assert value.format(**pem) in result.stderr


def test_good_tls_files_are_accepted(harness: DaemonHarness, pem: dict[str, str]) -> None:
    harness.write_config(
        server="https://localhost:9/",
        cainfo=pem["ca"],
        tls_client_cert=pem["cert"],
        tls_client_key=pem["key"],
    )
    harness.start()
    assert harness.stop() == 0


def test_a_file_the_daemon_cannot_read_is_named(tmp_path: Path, pem: dict[str, str]) -> None:
    with directory_for_nobody(tmp_path, "run the daemon as an unprivileged user") as public:
        secret = public / "ca.pem"
        secret.write_text(Path(pem["ca"]).read_text())
        secret.chmod(0o600)  # root's alone
        config = public / "telemd.toml"
        config.write_text(f'cainfo = "{secret}"\n')
        config.chmod(0o644)
        result = run(config, wrapper=AS_NOBODY)
    assert result.returncode == 78, result.stderr
    assert f"{config}: cainfo must be a readable file, got '{secret}': Permission denied" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("name", "text", "key", "value"),
    [case for case in VALUE_CASES if case[0] in RELOAD_CASES],
    ids=RELOAD_CASES,
)
def test_a_bad_reload_names_file_key_and_value_and_keeps_serving(
    harness: DaemonHarness, pem: dict[str, str], name: str, text: str, key: str, value: str
) -> None:
    harness.start()
    good = harness.config.read_text()
    harness.config.write_text(good + text.format(**pem) + "\n")
    mark = len(harness.log)
    harness.signal(signal.SIGHUP)
    expected = f"reload failed, keeping the running configuration: {harness.config}: {key} must be"
    assert harness.wait_for_log(expected, after=mark), "\n".join(harness.log[mark:])
    [line] = [line for line in harness.log[mark:] if expected in line]
    assert value.format(**pem) in line
    with Client(socket_path=harness.socket, timeout=10) as client:
        assert client.send(Record("a/b/c", 1, "still served"))
    harness.config.write_text(good)
    mark = len(harness.log)
    harness.signal(signal.SIGHUP)
    assert harness.wait_for_log("configuration reloaded", after=mark)
    assert harness.stop() == 0


# (name, collector.toml with {pem} names filled in, the key, the value).
COLLECTOR_CASES = [
    ("port too high", "port = 99999", "port", "99999"),
    ("host not a name", 'host = "bad host!"', "host", "bad host!"),
    ("host bad ipv4", 'host = "10.0.0.300"', "host", "10.0.0.300"),
    ("db port too high", 'db = "postgresql://u:pw@db.example:99999/t"', "db", "99999"),
    (
        "missing certfile",
        'certfile = "{missing}"\nkeyfile = "{key}"',
        "certfile",
        "{missing}",
    ),
    ("certfile not pem", 'certfile = "{junk}"\nkeyfile = "{key}"', "certfile", "{junk}"),
    (
        "keyfile of another cert",
        'certfile = "{cert}"\nkeyfile = "{other_key}"',
        "certfile",
        "{cert}",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "key", "value"), COLLECTOR_CASES, ids=[case[0] for case in COLLECTOR_CASES]
)
def test_a_bad_collector_value_names_file_key_and_value_and_exits_78(
    tmp_path: Path, pem: dict[str, str], name: str, text: str, key: str, value: str
) -> None:
    config = tmp_path / "collector.toml"
    lines = [text.format(**pem)]
    if not text.startswith("db ="):
        lines.append(f'db = "sqlite:///{tmp_path}/collector.db"')
    config.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "telemd.collector", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert f"{key} in {config} must be " in result.stderr
    assert value.format(**pem) in result.stderr
    assert "pw" not in result.stderr  # a database password never reaches the terminal


def run(config: Path, wrapper: list[str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(wrapper or []), sys.executable, "-m", "telemd.daemon", "-f", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        env=dict(os.environ, PYTHONDONTWRITEBYTECODE="1"),
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


PROBES = ["hprobe", "klogscanner", "pstoreprobe", "journalprobe"]


@pytest.mark.parametrize(
    ("program", "args"),
    [
        *((name, []) for name in PROBES),
        ("crashprobe", ["-p", "victim", "-s", "11"]),
        ("telem-record-gen", ["-c", "a/b/c", "-p", "x"]),
    ],
)
@pytest.mark.parametrize(
    ("text", "key"),
    [("socket_path = 3\n", "socket_path"), ('socket_path = "/run/x\n', None)],
    ids=["bad value", "malformed toml"],
)
def test_a_probe_with_a_bad_configuration_says_so_and_exits_78(
    tmp_path: Path, program: str, args: list[str], text: str, key: str | None
) -> None:
    config = tmp_path / "probe.toml"
    config.write_text(text)
    result = subprocess.run(
        [command(program), "-f", str(config), *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert_one_line_exit_78(result, config, key)
