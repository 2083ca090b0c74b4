"""Clear Linux's own telempostd posting to the collector, byte for byte.

The requests below are what libcurl sends for telemetrics-client v2.3.5
(`post_record_http` in src/telempostd.c: the 15 spooled header lines as
they are, `name: value` with underscores, then the TID header and
`Content-Type: application/text`) and for v2.4.x (one JSON object of
strings built by json-c, `Content-Type: application/json`). They go over a
raw TLS socket, so no client library rewrites a header name.
"""

from __future__ import annotations

import json
import socket
import ssl

import pytest
from collector_proc import CLEAR_TID, CollectorProcess, new_id

CLEAR_HEADERS = (
    "record_format_version: 4",
    "classification: org.clearlinux/hello/world",
    "severity: 1",
    "machine_id: {machine_id}",
    "creation_timestamp: 1571866834",
    "arch: x86_64",
    "host_type: blank|blank|blank",
    "build: 31470",
    "kernel_version: 5.3.7-849.native",
    "payload_format_version: 1",
    "system_name: clear-linux-os",
    "board_name: NUC7i5BNB|Intel Corporation",
    "cpu_model: Intel(R) Core(TM) i5-7260U CPU @ 2.20GHz",
    "bios_version: BNKBL357.86A.0062.2018.0222.1644",
    "event_id: {event_id}",
)


def post_raw(server: CollectorProcess, head: list[str], body: bytes) -> tuple[int, bytes]:
    """Send one HTTP/1.1 request as these exact bytes; return (status, body)."""
    assert server.tls is not None
    context = ssl.create_default_context(cafile=server.tls[2])
    request = "\r\n".join([*head, f"Content-Length: {len(body)}", "", ""]).encode() + body
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=30) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, reply_body = rest.partition(b"\r\n\r\n")
    return int(status_line.split()[1]), reply_body


def stored(server: CollectorProcess, machine_id: str) -> list[dict[str, object]]:
    with server.client() as client:
        response = client.get("/api/records", params={"machine_id": machine_id})
    assert response.status_code == 200
    records: list[dict[str, object]] = response.json()["records"]
    return records


def curl_head(server: CollectorProcess, path: str) -> list[str]:
    return [
        f"POST {path} HTTP/1.1",
        f"Host: 127.0.0.1:{server.port}",
        "Accept: */*",
    ]


@pytest.mark.parametrize("path", ["/", "/v2/collector"])
def test_clear_2_3_5_underscore_headers_are_stored(server: CollectorProcess, path: str) -> None:
    machine_id, event_id = new_id(), new_id()
    lines = [line.format(machine_id=machine_id, event_id=event_id) for line in CLEAR_HEADERS]
    head = [
        *curl_head(server, path),
        *lines,
        f"X-Telemetry-TID: {CLEAR_TID}",
        "Content-Type: application/text",
    ]
    status, body = post_raw(server, head, b"hello\n")
    assert status == 201, body
    [row] = stored(server, machine_id)
    assert row["event_id"] == event_id
    assert row["build"] == "31470"
    assert row["cpu_model"] == "Intel(R) Core(TM) i5-7260U CPU @ 2.20GHz"
    assert row["payload"] == "hello\n"


def test_clear_2_3_5_record_missing_a_header_names_it(server: CollectorProcess) -> None:
    lines = [
        line.format(machine_id=new_id(), event_id=new_id())
        for line in CLEAR_HEADERS
        if not line.startswith("kernel_version")
    ]
    head = [
        *curl_head(server, "/"),
        *lines,
        f"X-Telemetry-TID: {CLEAR_TID}",
        "Content-Type: application/text",
    ]
    status, body = post_raw(server, head, b"hello\n")
    assert status == 400
    assert "kernel_version" in json.loads(body)["message"]


def test_clear_2_4_json_body_is_stored(server: CollectorProcess) -> None:
    machine_id, event_id = new_id(), new_id()
    # json-c with JSON_C_TO_STRING_PLAIN | NOSLASHESCAPE; each value is the
    # header's first word (strtok on " "), as create_json_message cuts it.
    fields = {}
    for line in CLEAR_HEADERS:
        name, _, value = line.format(machine_id=machine_id, event_id=event_id).partition(": ")
        fields[name] = value.split(" ")[0]
    fields["payload"] = "hello\n"
    body = json.dumps(fields, separators=(",", ":")).encode()
    head = [
        *curl_head(server, "/v2/collector"),
        f"X-Telemetry-TID: {CLEAR_TID}",
        "Content-Type: application/json",
    ]
    status, reply = post_raw(server, head, body)
    assert status == 201, reply
    [row] = stored(server, machine_id)
    assert row["event_id"] == event_id
    assert row["cpu_model"] == "Intel(R)"


def test_dashed_names_win_over_underscored_ones(server: CollectorProcess) -> None:
    """A request carrying both spellings is read by the dashed one, as before."""
    underscored, dashed = new_id(), new_id()
    lines = [line.format(machine_id=underscored, event_id=new_id()) for line in CLEAR_HEADERS]
    head = [
        *curl_head(server, "/"),
        *lines,
        f"Machine-Id: {dashed}",
        f"X-Telemetry-TID: {CLEAR_TID}",
        "Content-Type: application/text",
    ]
    status, body = post_raw(server, head, b"hello\n")
    assert status == 201, body
    assert len(stored(server, dashed)) == 1
    assert stored(server, underscored) == []


def test_underscored_names_still_refused_without_a_tid(server: CollectorProcess) -> None:
    lines = [line.format(machine_id=new_id(), event_id=new_id()) for line in CLEAR_HEADERS]
    head = [*curl_head(server, "/"), *lines, "Content-Type: application/text"]
    status, _ = post_raw(server, head, b"hello\n")
    assert status == 400
