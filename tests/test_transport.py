"""Request formats and answers, without a network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from telemd.daemon.transport import (
    HTTP_HEADER_NAMES,
    RECORD_ID_HEADER,
    Outgoing,
    Reply,
    batch_verdicts,
    build_request,
    environment_proxy,
    error_message,
    read_token,
    request_size,
    retry_after,
    tid_header,
    verdict,
)
from telemd.errors import ConfigError
from telemd.record import HEADER_NAMES


def outgoing(number: int, payload: str = "hello\n", cpu: str = "AMD EPYC") -> Outgoing:
    headers = dict.fromkeys(HEADER_NAMES, "x")
    headers |= {"classification": "a/b/c", "severity": "2", "cpu_model": cpu}
    return Outgoing(number, f"{number:032x}", headers, payload, 0.0, 0, 100, "boot")


def test_headers_format_names_match_telemetrics_backend() -> None:
    assert HTTP_HEADER_NAMES["record_format_version"] == "Record-Format-Version"
    assert HTTP_HEADER_NAMES["cpu_model"] == "Cpu-Model"
    assert HTTP_HEADER_NAMES["event_id"] == "Event-Id"
    request = build_request("headers", [outgoing(1, cpu="Xeon\r\nInjected: yes")])
    assert request.content == b"hello\n"
    assert request.headers["Classification"] == "a/b/c"
    assert request.headers[RECORD_ID_HEADER] == f"{1:032x}"
    assert "\r" not in request.headers["Cpu-Model"] and "\n" not in request.headers["Cpu-Model"]


@pytest.mark.parametrize(
    ("cpu", "sent"),
    [
        ("AMD Ryzen™ 7 PRO", "AMD RyzenTM 7 PRO"),
        ("Intel® Xeon® CPU", "Intel(R) Xeon(R) CPU"),
        ("Çore Élan", "Core Elan"),
        ("主板 v2", "?? v2"),
        ("plain ASCII", "plain ASCII"),
    ],
)
def test_headers_format_sends_ascii_values(cpu: str, sent: str) -> None:
    request = build_request("headers", [outgoing(1, cpu=cpu)])
    assert request.headers["Cpu-Model"] == sent
    assert all(value.isascii() for value in request.headers.values())


def test_json_format_is_strings_only() -> None:
    request = build_request("json", [outgoing(2, payload="é\n")])
    body = json.loads(request.content)
    assert body["payload"] == "é\n" and body["severity"] == "2"
    assert all(isinstance(value, str) for value in body.values())


def test_ndjson_is_one_line_per_record_with_its_id() -> None:
    request = build_request("ndjson", [outgoing(1), outgoing(2, payload="two\nlines\n")])
    lines = request.content.decode().splitlines()
    assert [json.loads(line)["record_id"] for line in lines] == [f"{1:032x}", f"{2:032x}"]
    assert request.headers["Content-Type"] == "application/x-ndjson"
    assert request_size(request) > len(request.content)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, "delivered"),
        (201, "delivered"),
        (400, "rejected"),
        (422, "rejected"),
        (413, "rejected"),
        *((status, "misconfigured") for status in (401, 403, 404, 405, 407, 411, 415, 421, 426)),
        (408, "retry"),
        (429, "retry"),
        (500, "retry"),
        (503, "retry"),
        (301, "retry"),
    ],
)
def test_what_each_status_means(status: int, expected: str) -> None:
    assert verdict(status) == expected


@pytest.mark.parametrize("status", [400, 413, 422])
def test_a_4xx_to_a_batch_is_about_the_request(status: int) -> None:
    assert verdict(status, batch=True) == "misconfigured"


def test_batch_answers_settle_each_record() -> None:
    records = [outgoing(1), outgoing(2), outgoing(3), outgoing(4)]
    body = json.dumps(
        {
            "results": [
                {"record_id": f"{1:032x}", "status": "stored"},
                {"record_id": f"{2:032x}", "status": "duplicate"},
                {"record_id": f"{3:032x}", "status": "rejected", "message": "bad arch"},
            ]
        }
    )
    outcome = batch_verdicts(Reply(200, body, None), records)
    assert outcome[f"{1:032x}"][0] == "delivered"
    assert outcome[f"{2:032x}"][0] == "delivered"
    assert outcome[f"{3:032x}"] == ("rejected", "bad arch")
    assert outcome[f"{4:032x}"][0] == "retry"  # not mentioned: not assumed stored
    not_mentioned = batch_verdicts(Reply(200, '{"results": []}', None), records)
    assert {value[0] for value in not_mentioned.values()} == {"retry"}


@pytest.mark.parametrize("body", ["", "OK", "not json", '{"accepted": 4}', "[]", "9" * 5000])
def test_a_batch_answer_without_results_accepts_the_whole_batch(body: str) -> None:
    records = [outgoing(1), outgoing(2)]
    outcome = batch_verdicts(Reply(200, body, None), records)
    assert {value[0] for value in outcome.values()} == {"delivered"}


def test_a_plain_count_accepts_the_first_n_records() -> None:
    records = [outgoing(1), outgoing(2), outgoing(3)]
    outcome = batch_verdicts(Reply(200, "2\n", None), records)
    assert [outcome[r.record_id][0] for r in records] == ["delivered", "delivered", "retry"]


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after("120", 0.0) == 120.0
    assert retry_after("99999999", 0.0) == 6 * 3600.0
    assert retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
    assert retry_after("whenever", 0.0) is None
    assert retry_after(None, 0.0) is None


def test_error_messages_quote_the_collector() -> None:
    assert error_message(Reply(400, '{"message": "severity out of range"}', None)) == (
        "HTTP 400: severity out of range"
    )
    assert error_message(Reply(502, "<html>bad\ngateway</html>", None)) == (
        "HTTP 502: <html>bad gateway</html>"
    )
    assert error_message(Reply(500, "", None)) == "HTTP 500"


def test_the_tid_header_setting_splits_into_name_and_value() -> None:
    assert tid_header("X-Telemetry-TID: 6907c830") == ("X-Telemetry-TID", "6907c830")


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"HTTPS_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"https_proxy": "http://proxy:3128"}, "http://proxy:3128"),
        ({"ALL_PROXY": "http://proxy:3128"}, "http://proxy:3128"),
        ({"http_proxy": "http://proxy:3128"}, None),  # for http:// servers only
        ({"https_proxy": "http://proxy:3128", "no_proxy": "collector.example"}, None),
        ({"https_proxy": "http://proxy:3128", "NO_PROXY": ".example"}, None),
        ({"https_proxy": "http://proxy:3128", "no_proxy": "other.example"}, "http://proxy:3128"),
        # Lower case wins over upper case, whichever the environment lists first.
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2"}, "http://lower:2"),
        ({"https_proxy": "http://lower:2", "HTTPS_PROXY": "http://upper:1"}, "http://lower:2"),
        ({"https_proxy": "http://p:3", "NO_PROXY": "*", "no_proxy": "other.example"}, "http://p:3"),
        # An empty variable counts as unset, as in curl.
        ({"HTTPS_PROXY": "http://upper:1", "https_proxy": ""}, "http://upper:1"),
    ],
)
def test_the_proxy_comes_from_the_environment(
    environ: dict[str, str], expected: str | None
) -> None:
    assert environment_proxy("https://collector.example:8443/v2/collector", environ) == expected


def test_upper_case_http_proxy_is_ignored() -> None:
    """Under CGI a request's Proxy: header becomes HTTP_PROXY (httpoxy)."""
    url = "http://collector.example/v2/collector"
    assert environment_proxy(url, {"HTTP_PROXY": "http://evil:1"}) is None
    assert environment_proxy(url, {"http_proxy": "http://proxy:3128"}) == "http://proxy:3128"


def test_no_proxy_matches_an_ipv6_collector() -> None:
    environ = {"https_proxy": "http://proxy:3128", "no_proxy": "::1"}
    assert environment_proxy("https://[::1]:8443/v2/collector", environ) is None


def test_the_token_file_holds_one_token_on_one_line(tmp_path: Path) -> None:
    token_file = tmp_path / "collector.token"
    token_file.write_text("telemd_abc\n")
    assert read_token(str(token_file)) == "telemd_abc"
    for bad in ("", "\n", "telemd_abc\ntelemd_def\n", "telemd abc\n"):
        token_file.write_text(bad)
        with pytest.raises(ConfigError) as caught:
            read_token(str(token_file))
        assert str(token_file) in caught.value.message and "one token" in caught.value.message
    with pytest.raises(ConfigError, match="cannot read it"):
        read_token(str(tmp_path / "missing"))
