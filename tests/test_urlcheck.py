"""telemd.urlcheck: which server URLs and hosts the configuration accepts, and why not."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telemd.daemon.transport import environment_proxy
from telemd.urlcheck import host_problem, url_problem

GOOD = [
    "https://clr.telemetry.example.com/v2/collector",
    "http://localhost:8080/v1/records",
    "http://127.0.0.1/",
    "http://[::1]:8080/x",
    "http://[fe80::1%25eth0]/",
    "https://user:secret@collector.example/",
    "http://internal_host.lan:1/",
    "https://collector.example.:65535/",
    "http://bücher.example/",
    "http://xn--bcher-kva.example/",
]

BAD = [
    ("http://[::1", "invalid IPv6 URL"),
    ("http://[::1]zz/", "it must name a host, then optionally :PORT"),
    ("http://a[::1]/", "it must name a host, then optionally :PORT"),
    ("http://[::1]]/", "it must name a host, then optionally :PORT"),
    ("http://host:99999/", "the port must be from 1 to 65535, not 99999"),
    ("http://host:0/", "the port must be from 1 to 65535, not 0"),
    ("http://host:80a/", "it must name a host, then optionally :PORT"),
    ("http://:80/", "it must name a host, then optionally :PORT"),
    ("http://10.0.0.300/", "10.0.0.300 is not an IPv4 address"),
    ("http://1.2.3/", "1.2.3 is not an IPv4 address"),
    ("http://-dash-.example/", "-dash-.example is not a valid host name"),
    ("http://a..b/", "a..b is not a valid host name"),
    ("http://" + "a" * 64 + ".example/", "a" * 64 + ".example is not a valid host name"),
    ("ftp://example.com/", "the scheme must be http or https, not ftp"),
    # httpx would take it, then fail to read its host back at the first request.
    ("http://xn--e-ssa.example/", "xn--e-ssa.example is not a valid host name"),
]


@pytest.mark.parametrize("url", GOOD)
def test_good_urls_pass_and_httpx_takes_them(url: str) -> None:
    assert url_problem(url) is None
    assert httpx.URL(url).host


@pytest.mark.parametrize(("url", "reason"), BAD)
def test_bad_urls_say_why(url: str, reason: str) -> None:
    assert url_problem(url) == reason


def test_a_bad_bracketed_address_is_named() -> None:
    # urllib checks brackets itself in newer releases, with its own words.
    assert "::g" in (url_problem("http://[::g]/") or "")


def test_hosts() -> None:
    assert host_problem("collector.example") is None
    assert host_problem("::1") is None
    assert host_problem("256.1.1.1") == "256.1.1.1 is not an IPv4 address"
    assert host_problem("a b") == "a b is not a valid host name"


# Pieces that meet httpx's and idna's edges: brackets, ports, IDNA labels.
_PIECES = ["a", "b", "0", "9", "-", ".", "_", "[", "]", ":", "%", "xn--", "ü", "ǆ", "::1", "e-ssa"]
_HOST_CHARS = st.lists(st.sampled_from(_PIECES), max_size=8).map("".join)


@settings(max_examples=2000)
@given(
    scheme=st.sampled_from(["http", "https"]),
    host=_HOST_CHARS,
    port=st.one_of(st.just(""), st.integers(0, 10**6).map(lambda n: f":{n}"), _HOST_CHARS),
    path=st.sampled_from(["", "/", "/v2/collector", "?q=1"]),
)
def test_whatever_passes_httpx_can_post_to(scheme: str, host: str, port: str, path: str) -> None:
    """The check may refuse more than httpx, never less: an accepted server
    must never raise when the daemon builds its transport."""
    url = f"{scheme}://{host}{port}{path}"
    if url_problem(url) is None:
        parsed = httpx.URL(url)
        assert parsed.host
        assert parsed.port is None or 1 <= parsed.port <= 65535
        environment_proxy(url, {"https_proxy": "http://proxy:3128", "no_proxy": "x"})
