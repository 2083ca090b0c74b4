"""Tokens: made from 256 random bits, known afterwards only by their SHA-256.

A token is shown once, when it is made; the database keeps its hash. The
hash of a high-entropy secret needs no salt or slow function: nobody can
guess 256 bits, and the hash hides nothing a salt would protect.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

PREFIX = "telemd_"
TOKEN_BYTES = 32
# The prefix, then token_urlsafe's alphabet: 43 characters for 32 bytes.
TOKEN_PATTERN = re.compile(r"telemd_[A-Za-z0-9_-]{43}")
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Scope(enum.Enum):
    INGEST = "ingest"  # post records
    READ = "read"  # the query API and /metrics
    ADMIN = "admin"  # manage tokens


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What the database knows of a token: never the token itself."""

    name: str
    scopes: frozenset[Scope]
    created_at: float
    last_used_at: float | None

    def json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "scopes": sorted(scope.value for scope in self.scopes),
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def well_formed(token: str) -> bool:
    """Whether `token` could be one of ours; anything else is refused unlooked-up."""
    return TOKEN_PATTERN.fullmatch(token) is not None


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer TOKEN` header ("" when malformed).

    Another scheme is not ours (a proxy in front may use Basic for itself):
    it counts as no token at all.
    """
    if header is None:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip()


def check_name(name: str) -> str:
    if NAME_PATTERN.fullmatch(name) is None:
        raise ValueError(
            f"token name must be 1-64 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit, got {name[:80]!r}"
        )
    return name


def parse_scopes(values: list[str] | tuple[str, ...]) -> frozenset[Scope]:
    if not values:
        raise ValueError("give at least one scope: " + ", ".join(s.value for s in Scope))
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            known = ", ".join(s.value for s in Scope)
            raise ValueError(f"scope must be one of {known}, got {value[:40]!r}") from None
    return frozenset(scopes)
