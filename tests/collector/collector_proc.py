"""A real `telemd-collector serve` in a subprocess, and records to send it.

The collector runs as `python -m telemd.collector` on 127.0.0.1 and a free
port; `start()` returns once /healthz answers (bounded deadline) or raises
with the server's log if it exited or never came up.
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
from access_tokens import make_token
from ports import free_port

CLEAR_TID = "6907c830-eed9-4ce9-81ae-76daf8d88f0f"
# A second accepted telemetry id of the shared test server.
SECOND_TID = "11111111-2222-4333-8444-555555555555"
READY_DEADLINE = 30.0
HTTP_NAMES = {
    "record_format_version": "Record-Format-Version",
    "classification": "Classification",
    "severity": "Severity",
    "machine_id": "Machine-Id",
    "creation_timestamp": "Creation-Timestamp",
    "arch": "Arch",
    "host_type": "Host-Type",
    "build": "Build",
    "kernel_version": "Kernel-Version",
    "payload_format_version": "Payload-Format-Version",
    "system_name": "System-Name",
    "board_name": "Board-Name",
    "cpu_model": "Cpu-Model",
    "bios_version": "Bios-Version",
    "event_id": "Event-Id",
}


def new_id() -> str:
    return uuid.uuid4().hex


def record(**overrides: Any) -> dict[str, Any]:
    """A valid record in the json format (string values), with a fresh record_id."""
    fields: dict[str, Any] = {
        "record_format_version": "4",
        "classification": "org.clearlinux/hello/world",
        "severity": "1",
        "machine_id": "0123456789abcdef0123456789abcdef",
        "creation_timestamp": "1700000000",
        "arch": "x86_64",
        "host_type": "QEMU|Standard PC|pc-q35",
        "build": '"12"',
        "kernel_version": "6.1.0-13-amd64",
        "payload_format_version": "1",
        "system_name": "debian",
        "board_name": "no_bn_file|no_bv_file",
        "cpu_model": "Intel(R) Xeon(R) CPU",
        "bios_version": "1.16.2",
        "event_id": new_id(),
        "payload": "hello\n",
        "record_id": new_id(),
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def row(**overrides: Any) -> Any:
    """`record(**overrides)` as ingest makes it a row for the store."""
    from telemd.collector.ingest import records as ingest

    rec = record(**overrides)
    rules = ingest.Rules(frozenset({CLEAR_TID}), 32768)
    return ingest.validate_record(
        rec, rec["payload"], tid=CLEAR_TID, record_id=rec["record_id"], rules=rules
    )


def headers_request(rec: Mapping[str, Any], tid: str = CLEAR_TID) -> tuple[dict[str, str], bytes]:
    """The "headers" format of `rec`: (HTTP headers, body)."""
    headers = {"X-Telemetry-TID": tid, "User-Agent": "telemd/test"}
    for name, http_name in HTTP_NAMES.items():
        if name in rec:
            headers[http_name] = str(rec[name])
    if "record_id" in rec:
        headers["X-Telemetry-Record-Id"] = rec["record_id"]
    headers["Content-Type"] = "text/plain; charset=utf-8"
    return headers, str(rec.get("payload", "")).encode()


def json_request(rec: Mapping[str, Any], tid: str = CLEAR_TID) -> tuple[dict[str, str], bytes]:
    headers = {
        "X-Telemetry-TID": tid,
        "User-Agent": "telemd/test",
        "Content-Type": "application/json",
    }
    body = {k: v for k, v in rec.items() if k != "record_id"}
    if "record_id" in rec:
        headers["X-Telemetry-Record-Id"] = rec["record_id"]
    return headers, json.dumps(body).encode()


def ndjson(records: Sequence[Mapping[str, Any]]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


BATCH_HEADERS = {
    "X-Telemetry-TID": CLEAR_TID,
    "User-Agent": "telemd/test",
    "Content-Type": "application/x-ndjson",
}


class CollectorProcess:
    def __init__(
        self,
        db_url: str,
        workdir: str,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
        tls: tuple[str, str, str] | None = None,
        wrapper: Sequence[str] = (),
    ) -> None:
        """`tls` = (certfile, keyfile, CA bundle the client trusts); `wrapper`
        runs the collector, e.g. `prlimit --nofile=200:200 --`.

        `token` has every scope; `client()` sends it unless told otherwise.
        """
        self.port = free_port()
        self.db_url = db_url
        self.token = make_token(db_url, f"test-{self.port}")
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.base_url = f"{self.scheme}://127.0.0.1:{self.port}"
        self.log_path = os.path.join(workdir, f"collector-{self.port}.log")
        argv = [
            *wrapper, sys.executable, "-m", "telemd.collector", "serve",
            "--db", db_url, "--host", "127.0.0.1", "--port", str(self.port),
            "--log-level", "warning", *args,
        ]  # fmt: skip
        if tls:
            argv += ["--certfile", tls[0], "--keyfile", tls[1]]
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("TELEMD_COLLECTOR")}
        full_env.update(env or {})
        self._log = open(self.log_path, "wb")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=full_env)

    def client(
        self, *, token: str | None = "", source: str | None = None, **kwargs: Any
    ) -> httpx.Client:
        """An HTTP(S) client sending `token` (default: self.token; None: no token).

        `source` is the address to connect from (any of 127.0.0.0/8), for
        tests of limits per client address.
        """
        if "verify" not in kwargs:
            kwargs["verify"] = ssl.create_default_context(cafile=self.tls[2]) if self.tls else True
        if source is not None:
            kwargs["transport"] = httpx.HTTPTransport(verify=kwargs["verify"], local_address=source)
        headers = dict(kwargs.pop("headers", {}))
        token = self.token if token == "" else token
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.Client(base_url=self.base_url, timeout=30, headers=headers, **kwargs)

    def log(self) -> str:
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def wait_ready(self) -> CollectorProcess:
        deadline = time.monotonic() + READY_DEADLINE
        with self.client() as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"collector exited {self.proc.returncode}:\n{self.log()}")
                try:
                    if client.get("/healthz", timeout=2).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # bounded by the deadline above
        self.stop()
        raise RuntimeError(f"collector not ready after {READY_DEADLINE}s:\n{self.log()}")

    def close(self) -> None:
        """For contextlib.closing."""
        self.stop()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode
