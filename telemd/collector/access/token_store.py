"""The tokens table (api_tokens): create, list, revoke, look up by hash.

Blocking, like the rest of the store: the CLI calls these directly, the
running collector from worker threads (reads) and the writer thread (writes).
"""

from __future__ import annotations

from telemd.collector.access.tokens import Scope, TokenInfo, new_token, same_hash, token_hash
from telemd.collector.store.base import Store
from telemd.errors import TelemetryError

_COLUMNS = "name, scopes, created_at, last_used_at"


class TokenError(TelemetryError):
    """A token operation that cannot be done as asked (a name taken, unknown)."""


def _info(row: tuple[object, ...]) -> TokenInfo:
    name, scopes, created_at, last_used_at = row
    return TokenInfo(
        str(name),
        frozenset(Scope(s) for s in str(scopes).split(",") if s),
        float(created_at),  # type: ignore[arg-type]
        None if last_used_at is None else float(last_used_at),  # type: ignore[arg-type]
    )


def create(store: Store, name: str, scopes: frozenset[Scope], now: float) -> str:
    """Store a new token's hash under `name`; return the token (shown once)."""
    token = new_token()
    with store.transaction() as session:
        if session.fetch("SELECT 1 FROM api_tokens WHERE name = ?", (name,)):
            raise TokenError(f"a token named {name!r} exists; revoke it first or pick another name")
        session.execute(
            "INSERT INTO api_tokens (name, token_hash, scopes, created_at) VALUES (?, ?, ?, ?)",
            (name, token_hash(token), ",".join(sorted(s.value for s in scopes)), now),
        )
    return token


def list_tokens(store: Store) -> list[TokenInfo]:
    with store.reading() as session:
        rows = session.fetch(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY name")
    return [_info(row) for row in rows]


def revoke(store: Store, name: str) -> None:
    with store.transaction() as session:
        if not session.execute("DELETE FROM api_tokens WHERE name = ?", (name,)):
            raise TokenError(f"no token named {name!r}")


def find(store: Store, digest: str) -> TokenInfo | None:
    """The token whose SHA-256 is `digest`, or None."""
    with store.reading() as session:
        rows = session.fetch(
            f"SELECT {_COLUMNS}, token_hash FROM api_tokens WHERE token_hash = ?", (digest,)
        )
    if not rows or not same_hash(str(rows[0][4]), digest):
        return None
    return _info(rows[0][:4])


def touch(store: Store, name: str, now: float) -> None:
    """Record a use (the writer thread only)."""
    with store.transaction() as session:
        session.execute("UPDATE api_tokens SET last_used_at = ? WHERE name = ?", (now, name))
