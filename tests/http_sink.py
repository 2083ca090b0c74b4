"""A real HTTPS collector stand-in that tests can steer.

uvicorn serves a tiny ASGI app on 127.0.0.1 with a trustme certificate, in
a thread of the test process. A test sets `behaviour` to what the next
requests get: a status (with an optional Retry-After), a dropped
connection, or a hang until released. Every request is recorded, and
`wait_for_requests` awaits their arrival rather than sleeping.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trustme
import uvicorn
from ports import free_port


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Behaviour:
    status: int = 201
    retry_after: str | None = None
    drop: bool = False
    hang: bool = False
    body: bytes | None = None  # default: a JSON answer fitting the status


@dataclass
class HttpSink:
    directory: Path
    tls: bool = True
    client_ca: bool = False  # require a client certificate signed by `ca` (mutual TLS)
    behaviour: Behaviour = field(default_factory=Behaviour)
    # When set, what a request gets by its content (None: `behaviour`).
    behaviour_for: Callable[[Seen], Behaviour | None] | None = None
    seen: list[Seen] = field(default_factory=list)
    record_ids: set[str] = field(default_factory=set)  # what a deduplicating collector keeps
    duplicates: int = 0

    def __post_init__(self) -> None:
        self._changed = threading.Condition()
        self._release = threading.Event()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.ca = trustme.CA()
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = self.directory / "ca.pem"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        self._cert_file = self.directory / "server.pem"
        self._key_file = self.directory / "server.key"
        cert.cert_chain_pems[0].write_to_path(str(self._cert_file))
        cert.private_key_pem.write_to_path(str(self._key_file))
        self.port = free_port()
        scheme = "https" if self.tls else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}/v2/collector"
        tls: dict[str, Any] = {}
        if self.tls:
            tls = {"ssl_certfile": str(self._cert_file), "ssl_keyfile": str(self._key_file)}
        if self.client_ca:
            tls |= {"ssl_ca_certs": str(self.ca_file), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        config = uvicorn.Config(
            self._app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            interface="asgi3",
            **tls,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the HTTPS sink did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._release.set()
        self._server.should_exit = True
        self._thread.join(10)

    def release(self) -> None:
        """Let hanging requests go on (they get the behaviour in force then)."""
        self._release.set()

    def wait_for_requests(self, count: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.seen) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def wait_for_records(self, count: int, timeout: float = 20.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._changed:
            while len(self.record_ids) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode(errors="replace") for k, v in scope["headers"]}
        seen = Seen(scope["method"], scope["path"], headers, body)
        behaviour = (self.behaviour_for and self.behaviour_for(seen)) or self.behaviour
        with self._changed:
            self.seen.append(seen)
            self._changed.notify_all()
        if behaviour.hang:
            await asyncio.get_running_loop().run_in_executor(None, self._release.wait)
            behaviour = self.behaviour
        if behaviour.drop:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            raise ConnectionAbortedError("the sink drops this connection")
        answer = behaviour.body
        if 200 <= behaviour.status < 300:
            answer = answer or self._store(seen)
        elif answer is None:
            answer = json.dumps({"message": f"sink answers {behaviour.status}"}).encode()
        response_headers = [(b"content-type", b"application/json")]
        if behaviour.retry_after is not None:
            response_headers.append((b"retry-after", behaviour.retry_after.encode()))
        await send(
            {"type": "http.response.start", "status": behaviour.status, "headers": response_headers}
        )
        await send({"type": "http.response.body", "body": answer})

    def _store(self, seen: Seen) -> bytes:
        """Keep record ids as a deduplicating collector would; answer like one."""
        if seen.headers.get("content-type") == "application/x-ndjson":
            results = []
            for line in seen.body.decode().splitlines():
                record_id = json.loads(line)["record_id"]
                results.append({"record_id": record_id, "status": self._keep(record_id)})
            return json.dumps({"results": results}).encode()
        record_id = seen.headers.get("x-telemetry-record-id", "")
        self._keep(record_id)
        return json.dumps({"record_id": record_id}).encode()

    def _keep(self, record_id: str) -> str:
        with self._changed:
            if record_id in self.record_ids:
                self.duplicates += 1
                return "duplicate"
            self.record_ids.add(record_id)
            self._changed.notify_all()
            return "stored"
