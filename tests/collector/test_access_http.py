"""Access control against a running collector: revocation, limits, logs, URL tokens, mTLS.

Real collectors over real HTTPS (trustme certificates, client certificates
included), on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import trustme
from access_tokens import make_token
from collector_proc import BATCH_HEADERS, CollectorProcess, headers_request, ndjson, new_id, record

from telemd.collector.access.guard import CACHE_SECONDS, FAILURE_BURST
from telemd.collector.access.tokens import new_token

Start = Callable[..., CollectorProcess]


def post_one(client: httpx.Client, path: str = "/v2/collector") -> httpx.Response:
    headers, body = headers_request(record(machine_id=new_id()))
    return client.post(path, headers=headers, content=body)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "telemd.collector", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_revoke_from_another_process_takes_effect_within_a_second(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files)
    token = make_token(proc.db_url, "grafana", ["read"])
    with proc.client(token=token) as client:
        assert client.get("/api/records").status_code == 200
        done = cli("token", "revoke", "grafana", "--db", proc.db_url)
        assert done.returncode == 0, done.stderr
        revoked_at = time.monotonic()
        # The cache may answer from a lookup made before the revoke, for
        # CACHE_SECONDS at most: a request sent later than that is refused.
        while True:
            sent = time.monotonic()
            if client.get("/api/records").status_code != 200:
                break
            assert sent - revoked_at < CACHE_SECONDS
        assert client.get("/api/records").status_code == 401


def test_use_is_noted_and_the_token_list_shows_no_secret(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files)
    token = make_token(proc.db_url, "grafana", ["read"])
    with proc.client(token=token) as client:
        assert client.get("/api/v1/summary").status_code == 200
    listed = cli("token", "list", "--json", "--db", proc.db_url)
    assert listed.returncode == 0, listed.stderr
    tokens = {t["name"]: t for t in json.loads(listed.stdout)["tokens"]}
    assert tokens["grafana"]["scopes"] == ["read"]
    assert tokens["grafana"]["last_used_at"] is not None
    assert tokens["grafana"]["created_at"] <= tokens["grafana"]["last_used_at"]
    with proc.client() as admin:
        over_http = admin.get("/api/v1/tokens").json()["tokens"]
    assert {t["name"] for t in over_http} == set(tokens)
    for text in (listed.stdout, json.dumps(over_http)):
        assert token not in text and proc.token not in text
        assert token[len("telemd_") :][:16] not in text


def test_ingest_is_open_by_default_but_a_bad_token_is_refused(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files)
    with proc.client(token=None) as anyone:
        assert post_one(anyone).status_code == 201
    with proc.client(token=new_token()) as forger:
        assert post_one(forger).status_code == 401
    with proc.client(token=make_token(proc.db_url, "reader", ["read"])) as reader:
        assert post_one(reader).status_code == 403
    # A proxy's own Basic credentials are not a token, good or bad.
    with proc.client(token=None, headers={"Authorization": "Basic dXNlcjpwYXNz"}) as proxied:
        assert post_one(proxied).status_code == 201
        assert proxied.get("/api/records").status_code == 401


def test_the_token_as_the_last_segment_of_an_ingest_url(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files, args=["--ingest-auth", "token"])
    ingest = make_token(proc.db_url, "app", ["ingest"])
    read = make_token(proc.db_url, "reader", ["read"])
    with proc.client(token=None) as client:
        assert post_one(client, "/v2/collector").status_code == 401
        assert post_one(client, f"/v2/collector/{ingest}").status_code == 201
        assert post_one(client, f"/v2/collector/{read}").status_code == 403
        batch = client.post(
            f"/api/v1/records/{ingest}", headers=BATCH_HEADERS, content=ndjson([record()])
        )
        assert batch.status_code == 200 and batch.json()["accepted"] == 1
    assert ingest not in proc.log()


def test_ingest_rate_limit_per_client_answers_429_with_retry_after(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    # One request every 2 s, a burst of one: slow enough that no refill
    # comes between the requests below, however loaded the machine.
    proc = start_collector(tls=tls_files, args=["--ingest-rate-limit", "0.5"])
    with proc.client(token=None, source="127.0.0.2") as first:
        answers = [post_one(first) for _ in range(2)]
        assert [a.status_code for a in answers] == [201, 429]
        assert answers[1].headers["retry-after"] in ("1", "2")
        assert "retry later" in answers[1].json()["message"]
    # Another address, and a token (its own bucket) from the same address, go on.
    with proc.client(token=None, source="127.0.0.3") as second:
        assert post_one(second).status_code == 201
    with proc.client(source="127.0.0.2") as with_token:
        assert post_one(with_token).status_code == 201


def test_failed_authentications_are_limited_per_address_and_logged_without_tokens(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files, args=["--log-level", "info"])
    guesses = [new_token() for _ in range(FAILURE_BURST)]
    with proc.client(token=None, source="127.0.0.4") as client:
        for guess in guesses:
            answer = client.get("/api/records", headers={"Authorization": f"Bearer {guess}"})
            assert answer.status_code == 401
        # Past the burst, even the right token is not looked at from this address.
        refused = client.get("/api/records", headers={"Authorization": f"Bearer {proc.token}"})
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["retry-after"]) >= 1
        malformed = client.get("/api/records", headers={"Authorization": "Bearer x"})
        assert malformed.status_code == 429
    with proc.client(source="127.0.0.5") as other:
        assert other.get("/api/records").status_code == 200
    log = proc.log()
    assert log.count("authentication failed on /api/records from 127.0.0.4") == FAILURE_BURST
    assert "127.0.0.4 failed authentication" in log
    for token in (*guesses, proc.token):
        assert token not in log


def test_bodies_are_limited_on_every_route(
    start_collector: Start, tls_files: tuple[str, str, str]
) -> None:
    proc = start_collector(tls=tls_files)
    with proc.client() as client:
        for path in ("/api/records", "/api/v1/summary", "/metrics", "/healthz"):
            sized = client.request("GET", path, content=b"x" * 10)
            assert sized.status_code == 413, path
            assert sized.json()["message"] == "this route takes no request body"
            chunked = client.request("GET", path, content=iter([b"x" * 10]))
            assert chunked.status_code == 413, path
        huge = client.post("/api/v1/records", headers=BATCH_HEADERS, content=b"x" * (9 << 20))
        assert huge.status_code == 413 and "larger than" in huge.json()["message"]


@pytest.fixture
def client_certs(tmp_path: Path) -> tuple[trustme.CA, str]:
    """A CA for client certificates, and its PEM file."""
    ca = trustme.CA()
    path = tmp_path / "client-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ca, str(path)


def mtls_context(server_ca: str, ca: trustme.CA | None, name: str = "machine-1") -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=server_ca)
    if ca is not None:
        ca.issue_cert(name).configure_cert(context)
    return context


def test_mtls_ingest_needs_a_certificate_of_the_client_ca(
    start_collector: Start,
    tls_files: tuple[str, str, str],
    client_certs: tuple[trustme.CA, str],
) -> None:
    ca, ca_file = client_certs
    proc = start_collector(tls=tls_files, args=["--client-ca", ca_file, "--ingest-auth", "mtls"])
    with proc.client(token=None, verify=mtls_context(tls_files[2], ca)) as machine:
        assert post_one(machine).status_code == 201
        assert post_one(machine, "/api/v1/records").status_code == 415  # past the guard
    with proc.client(token=None, verify=mtls_context(tls_files[2], None)) as no_cert:
        answer = post_one(no_cert)
        assert answer.status_code == 401
        assert "client certificate" in answer.json()["message"]
    stranger = mtls_context(tls_files[2], trustme.CA())
    with proc.client(token=None, verify=stranger) as forged, pytest.raises(httpx.TransportError):
        post_one(forged)
    # Readers need no certificate, only their token.
    with proc.client(verify=mtls_context(tls_files[2], None)) as reader:
        assert reader.get("/api/records").status_code == 200


def test_mtls_settings_are_checked(
    start_collector: Start, tls_files: tuple[str, str, str], client_certs: tuple[trustme.CA, str]
) -> None:
    for args, words in (
        (["--ingest-auth", "mtls"], "needs client_ca"),
        (["--client-ca", client_certs[1]], "needs certfile"),
    ):
        done = cli("serve", "--db", "sqlite:////nonexistent/x.db", *args)
        assert done.returncode == 78, done.stderr
        assert words in done.stderr
