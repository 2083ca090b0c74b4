"""Console logins: a read token exchanged for a session cookie, and its CSRF token.

The database keeps a session's SHA-256 and the hash of the token it was made
from, never the cookie itself. A session is valid only while that token
still exists with the read scope: `find` joins the two tables on every
request, so revoking the token ends its sessions at once.

The CSRF token of a form is an HMAC of the session's secret, so it needs no
storage and cannot be forged without the cookie. Before login there is no
session: the login form's CSRF token is a random cookie the form repeats
(double submit), which a page on another site can neither read nor set.

Blocking, like the store: called from worker threads (reads) and the writer
thread (writes).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from telemd.collector.access.tokens import Scope, TokenInfo, token_hash
from telemd.collector.store.base import Store

SESSION_COOKIE = "telemd_session"
LOGIN_COOKIE = "telemd_login"
# A working day: the console is opened in the morning and closed at night.
SESSION_SECONDS = 12 * 3600
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    """A logged-in browser: the token's name and the CSRF token of its forms."""

    token_name: str
    csrf: str


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def csrf_of(secret: str) -> str:
    return hmac.new(secret.encode(), b"telemd-console-csrf", hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def create(store: Store, token: str, now: float) -> str:
    """A new session for `token` (already checked); return its secret, the cookie."""
    secret = new_secret()
    with store.transaction() as session:
        # Logins are rare: clearing expired sessions here keeps the table small.
        session.execute("DELETE FROM console_sessions WHERE expires_at <= ?", (now,))
        session.execute(
            "INSERT INTO console_sessions (session_hash, token_hash, created_at, expires_at) "
            "VALUES (?, ?, ?, ?)",
            (token_hash(secret), token_hash(token), now, now + SESSION_SECONDS),
        )
    return secret


def find(store: Store, secret: str, now: float) -> ConsoleSession | None:
    """The session whose cookie is `secret`, if unexpired and its token still reads."""
    with store.reading() as session:
        rows = session.fetch(
            "SELECT t.name, t.scopes FROM console_sessions s "
            "JOIN api_tokens t ON t.token_hash = s.token_hash "
            "WHERE s.session_hash = ? AND s.expires_at > ?",
            (token_hash(secret), now),
        )
    if not rows:
        return None
    name, scopes = rows[0]
    if Scope.READ.value not in str(scopes).split(","):
        return None
    return ConsoleSession(str(name), csrf_of(secret))


def end(store: Store, secret: str) -> None:
    """Log out: the session is gone from the database, whatever the browser keeps."""
    with store.transaction() as session:
        session.execute(
            "DELETE FROM console_sessions WHERE session_hash = ?", (token_hash(secret),)
        )


def can_log_in(info: TokenInfo | None) -> bool:
    return info is not None and Scope.READ in info.scopes
