"""telemd's systemd units, driven through systemd's D-Bus API (dbus-fast).

Start, stop and restart go to `org.freedesktop.systemd1.Manager`; a unit's
state is its `ActiveState`. The system bus is wherever
$DBUS_SYSTEM_BUS_ADDRESS says (the default otherwise), which is also how the
tests point this at a private bus with a stand-in systemd.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from telemd.errors import TelemetryError
from telemd.paths import CONFIG_ENV, SYSTEM_CONFIG
from telemd.units import OWN_UNITS, UNITS

DAEMON_UNIT = "telemd.service"

CALL_TIMEOUT = 30.0  # systemctl's own default for a D-Bus call is 25 s
JOB_TIMEOUT = 120.0  # beyond systemd's default stop timeout, 90 s
_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER_PATH = "/org/freedesktop/systemd1"
_MANAGER = "org.freedesktop.systemd1.Manager"


class NoSystemd(TelemetryError):
    """No system bus, or no systemd on it."""


def _no_systemd(reason: str, config_file: str | None) -> NoSystemd:
    config = config_file or os.environ.get(CONFIG_ENV) or SYSTEM_CONFIG
    return NoSystemd(
        f"cannot reach systemd ({reason}); run the daemon in the foreground instead:"
        f" telemd -f {config}"
    )


async def _call(bus: Any, member: str, signature: str, body: list[Any], path: str = _MANAGER_PATH,
                interface: str = _MANAGER) -> Any:  # fmt: skip
    from dbus_fast import Message, MessageType

    message = Message(
        destination=_SYSTEMD,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=body,
    )
    try:
        reply = await asyncio.wait_for(bus.call(message), CALL_TIMEOUT)
    except asyncio.TimeoutError:
        raise TelemetryError(f"systemd did not answer {member} within {CALL_TIMEOUT:g} s") from None
    if reply.message_type == MessageType.ERROR:
        raise TelemetryError(f"{reply.error_name}: {reply.body[0] if reply.body else member}")
    return reply.body[0] if reply.body else None


class _Jobs:
    """systemd's JobRemoved signals, by job path: as systemctl does, a verb
    returns once its jobs are done, not when they are queued (a stop right
    after a reload would otherwise kill the reload)."""

    def __init__(self) -> None:
        self.results: dict[str, str] = {}
        self.arrived = asyncio.Event()

    def on_message(self, message: Any) -> None:
        if message.member == "JobRemoved" and message.interface == _MANAGER:
            _, job, _, result = message.body
            self.results[job] = result
            self.arrived.set()

    async def run(self, bus: Any, member: str, unit: str) -> str:
        """Queue `member` for `unit`; its job's result ("done", "failed"...)."""
        job = await _call(bus, member, "ss", [unit, "replace"])
        deadline = asyncio.get_running_loop().time() + JOB_TIMEOUT
        while job not in self.results:
            self.arrived.clear()
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(self.arrived.wait(), max(remaining, 0))
            except asyncio.TimeoutError:
                raise TelemetryError(
                    f"systemd did not finish {member} {unit} within {JOB_TIMEOUT:g} s"
                ) from None
        return self.results.pop(job)


async def _jobs(bus: Any) -> _Jobs:
    from dbus_fast import Message

    jobs = _Jobs()
    bus.add_message_handler(jobs.on_message)
    rule = f"type='signal',sender='{_SYSTEMD}',interface='{_MANAGER}',member='JobRemoved'"
    await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=[rule],
        )
    )
    await _call(bus, "Subscribe", "", [])
    return jobs


async def _with_bus(action: Any, config_file: str | None) -> Any:
    from dbus_fast import BusType
    from dbus_fast.aio import MessageBus

    try:
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    except (OSError, ValueError) as exc:
        raise _no_systemd(f"no system bus: {exc}", config_file) from None
    try:
        return await action(bus)
    except TelemetryError as exc:
        if "ServiceUnknown" in exc.message or "NameHasNoOwner" in exc.message:
            raise _no_systemd("systemd is not on the system bus", config_file) from None
        raise
    finally:
        bus.disconnect()


async def _state(bus: Any, unit: str) -> str:
    try:
        path = await _call(bus, "GetUnit", "s", [unit])
    except TelemetryError as exc:
        if "NoSuchUnit" in exc.message:
            return "inactive"  # as systemctl is-active says of a unit not loaded
        raise
    variant = await _call(
        bus, "Get", "ss", ["org.freedesktop.systemd1.Unit", "ActiveState"], path,
        "org.freedesktop.DBus.Properties",
    )  # fmt: skip
    return str(variant.value)


def states(config_file: str | None = None) -> list[tuple[str, str]]:
    async def action(bus: Any) -> list[tuple[str, str]]:
        return [(unit, await _state(bus, unit)) for unit in UNITS]

    result: list[tuple[str, str]] = asyncio.run(_with_bus(action, config_file))
    return result


def control(verb: str, config_file: str | None = None) -> list[str]:
    """StartUnit / StopUnit / RestartUnit for every unit; the failures, as messages.

    Stop also covers hprobe.service, which only its timer starts."""
    member = {"start": "StartUnit", "stop": "StopUnit", "restart": "RestartUnit"}[verb]
    units = OWN_UNITS if verb == "stop" else UNITS

    async def action(bus: Any) -> list[str]:
        jobs = await _jobs(bus)
        failures = []
        for unit in units:
            try:
                result = await jobs.run(bus, member, unit)
            except TelemetryError as exc:
                failures.append(f"failed to {verb} {unit}: {exc.message}")
                continue
            # "skipped": a start whose unit's condition is not met (no /dev/kmsg).
            if result not in ("done", "skipped"):
                failures.append(f"failed to {verb} {unit}: job {result}")
        return failures

    result: list[str] = asyncio.run(_with_bus(action, config_file))
    return result


def reload(config_file: str | None = None) -> str:
    """Have a running telemd.service re-read its configuration (SIGHUP through
    its ExecReload=); an idle one is left alone, as it reads the files when
    next started. The service's state before, "active" if it reloaded."""

    async def action(bus: Any) -> str:
        jobs = await _jobs(bus)
        state = await _state(bus, DAEMON_UNIT)
        result = await jobs.run(bus, "ReloadOrTryRestartUnit", DAEMON_UNIT)
        if result not in ("done", "skipped"):
            raise TelemetryError(f"failed to reload {DAEMON_UNIT}: job {result}")
        return state

    result: str = asyncio.run(_with_bus(action, config_file))
    return result
