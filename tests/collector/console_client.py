"""Logging in to a running collector's console over HTTP, as a browser's form does."""

from __future__ import annotations

import re

import httpx

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, f"no CSRF field in {html[:300]!r}"
    return match.group(1)


def log_in(client: httpx.Client, token: str) -> httpx.Response:
    """GET the form, POST it; the client keeps the cookies."""
    form = client.get("/console/login")
    assert form.status_code == 200, form.text
    return client.post("/console/login", data={"token": token, "csrf": csrf_of(form.text)})
