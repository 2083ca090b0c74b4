"""Event search pages against a brute-force match, on both engines.

PostgreSQL finds a page of `q` by a short walk of the ids, a longer one
when the first one's matches say it pays, or the GIN index; whichever it
takes, pages newest first (`before`) and oldest first (`after`) must hold
exactly the events whose JSON has every word of `q`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from telemd.collector.events.model import make_event
from telemd.collector.events.query import EventQuery, find_events
from telemd.collector.events.store import store_batch
from telemd.collector.store.base import Store, open_engine

NOW = 1_800_000_000.0
EVENTS = 1500
SEARCHES = (
    "common",  # in 3 events of 5: the first walk fills a page
    "middling",  # in 1 of 15: the first walk finds a few, the second fills
    "scarce",  # in 1 of 500: the index
    "common scarce",  # every word, anywhere in the event
    "nowhere",
)


def note_of(n: int, rng: random.Random) -> str:
    words = ["event"]
    if rng.random() < 0.6:
        words.append("common")
    if n % 15 == 4:
        words.append("middling")
    if n % 500 == 9:
        words.append("scarce")
    return " ".join(words)


@pytest.fixture(scope="module")
def filled(engine: str, new_db_url: Callable[[str], str]) -> Any:
    """A store of EVENTS events and the oracle's list of them, oldest first: (id, note)."""
    store = Store(open_engine(new_db_url(engine)))
    store.migrate()
    rng = random.Random(3)
    notes = [note_of(n, rng) for n in range(EVENTS)]
    for first in range(0, EVENTS, 500):
        events = [
            make_event("vrooli", {"n": n, "note": notes[n]}, received_at=NOW, app="search")
            for n in range(first, first + 500)
        ]
        store_batch(store, "vrooli", "::1", {}, events, NOW)
    stored = find_events(store, EventQuery(after=0, limit=1000), ())
    stored += find_events(store, EventQuery(after=stored[-1]["id"], limit=1000), ())
    assert [e["payload"]["n"] for e in stored] == list(range(EVENTS))
    yield store, [(e["id"], notes[e["payload"]["n"]]) for e in stored]
    store.close()


def holds(note: str, text: str) -> bool:
    return set(text.split()) <= set(note.split())


def paged(store: Store, text: str, limit: int, *, oldest_first: bool) -> list[int]:
    ids: list[int] = []
    cursor: dict[str, int] = {"after": 0} if oldest_first else {}
    while True:
        page = find_events(store, EventQuery(text=text, limit=limit, **cursor), ())
        ids += [int(e["id"]) for e in page]
        if len(page) < limit:
            return ids
        cursor = {"after" if oldest_first else "before": ids[-1]}


@pytest.mark.parametrize("text", SEARCHES)
@pytest.mark.parametrize("limit", [1, 3, 40])
def test_pages_hold_exactly_the_matches(filled: Any, text: str, limit: int) -> None:
    store, oracle = filled
    expected = [id_ for id_, note in oracle if holds(note, text)]
    assert paged(store, text, limit, oldest_first=True) == expected
    assert paged(store, text, limit, oldest_first=False) == expected[::-1]
