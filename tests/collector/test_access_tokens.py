"""Tokens: their shape and entropy, the Authorization header, names and scopes."""

from __future__ import annotations

import pytest

from telemd.collector.access.tokens import (
    PREFIX,
    Scope,
    bearer,
    check_name,
    new_token,
    parse_scopes,
    token_hash,
    well_formed,
)


def test_a_token_carries_256_random_bits_and_is_never_repeated() -> None:
    tokens = {new_token() for _ in range(1000)}
    assert len(tokens) == 1000
    for token in tokens:
        assert token.startswith(PREFIX) and well_formed(token)
        # token_urlsafe(32): 43 base64url characters, 6 bits each, 256 bits of entropy.
        assert len(token) - len(PREFIX) == 43


def test_the_hash_is_sha256_and_differs_per_token() -> None:
    a, b = new_token(), new_token()
    assert len(token_hash(a)) == 64 and token_hash(a) == token_hash(a)
    assert token_hash(a) != token_hash(b)
    assert a not in token_hash(a)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "telemd_",
        "telemd_" + "a" * 42,
        "telemd_" + "a" * 44,
        "x" * 50,
        "telemd_" + "a" * 42 + "!",
    ],
)
def test_anything_else_is_not_well_formed(text: str) -> None:
    assert not well_formed(text)


def test_bearer_header() -> None:
    assert bearer(None) is None
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc  ") == "abc"
    assert bearer("Basic dXNlcjpwYXNz") is None  # a proxy's own scheme: no token
    assert bearer("Bearer") == ""


def test_names() -> None:
    assert check_name("grafana-1.read_only") == "grafana-1.read_only"
    for bad in ("", "-x", "a b", "x" * 65, "é", "a/b"):
        with pytest.raises(ValueError, match="token name"):
            check_name(bad)


def test_scopes() -> None:
    assert parse_scopes(["read", "ingest", "read"]) == {Scope.READ, Scope.INGEST}
    with pytest.raises(ValueError, match="at least one scope"):
        parse_scopes([])
    with pytest.raises(ValueError, match="scope must be one of ingest, read, admin"):
        parse_scopes(["write"])
