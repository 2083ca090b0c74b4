"""Tokens for tests: made in the collector's database, as `token create` does."""

from __future__ import annotations

import time
from collections.abc import Iterable

from telemd.collector.access import token_store
from telemd.collector.access.tokens import Scope
from telemd.collector.store.base import Store, open_engine

ALL_SCOPES = ("ingest", "read", "admin")


def make_token(db_url: str, name: str, scopes: Iterable[str] = ALL_SCOPES) -> str:
    """A new token in `db_url` (migrated first, as a collector would)."""
    store = Store(open_engine(db_url))
    try:
        store.migrate()
        return token_store.create(store, name, frozenset(Scope(s) for s in scopes), time.time())
    finally:
        store.close()
