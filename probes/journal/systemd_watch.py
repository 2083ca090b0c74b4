"""Watch systemd over D-Bus for units entering the failed state.

The one module that talks to D-Bus, and the only importer of dbus-fast.
It asks `org.freedesktop.systemd1` to send signals (Manager.Subscribe),
listens to `PropertiesChanged` of the `org.freedesktop.systemd1.Unit`
interface on unit objects, and yields a `UnitFailure` when a unit's
ActiveState becomes `failed`, with the Result and exit status read from the
unit's type interface (Service, Socket, Mount...). Units already failed when
it starts are yielded first. The system bus is the one of
$DBUS_SYSTEM_BUS_ADDRESS, else the standard socket.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from .unit_failure import UnitFailure

SYSTEMD = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
UNIT = "org.freedesktop.systemd1.Unit"
UNIT_PATHS = "/org/freedesktop/systemd1/unit/"
PROPERTIES = "org.freedesktop.DBus.Properties"
_MATCH = (
    f"type='signal',sender='{SYSTEMD}',interface='{PROPERTIES}',"
    f"member='PropertiesChanged',path_namespace='{UNIT_PATHS.rstrip('/')}'"
)
# Unit types whose interface has a Result property, by unit name suffix.
_TYPE_INTERFACES = {
    suffix: f"org.freedesktop.systemd1.{suffix.capitalize()}"
    for suffix in ("service", "socket", "mount", "swap", "timer", "path", "automount", "scope")
}


class SystemdWatcher:
    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._states: dict[str, str] = {}  # unit path -> last ActiveState seen
        self._failed: asyncio.Queue[str] = asyncio.Queue()

    @classmethod
    async def connect(cls) -> SystemdWatcher:
        """Connect, subscribe and queue the units failed already; raise OSError or DBusError."""
        bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        watcher = cls(bus)
        bus.add_message_handler(watcher._on_message)
        await watcher._call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "AddMatch",
            "s",
            [_MATCH],
        )
        await watcher._call(SYSTEMD, MANAGER_PATH, MANAGER, "Subscribe")
        [units] = await watcher._call(
            SYSTEMD, MANAGER_PATH, MANAGER, "ListUnitsFiltered", "as", [["failed"]]
        )
        for unit in units:  # (name, description, load, active, sub, following, path, ...)
            path = unit[6]
            watcher._states[path] = "failed"
            watcher._failed.put_nowait(path)
        return watcher

    async def failures(self) -> AsyncIterator[UnitFailure]:
        """Each unit failure, as it happens; ends if the bus connection is lost."""
        # dbus-fast's compiled wait_for_disconnect carries no annotations.
        disconnected = asyncio.ensure_future(self._bus.wait_for_disconnect())  # type: ignore[no-untyped-call]
        try:
            while True:
                next_path = asyncio.ensure_future(self._failed.get())
                await asyncio.wait({next_path, disconnected}, return_when=asyncio.FIRST_COMPLETED)
                if not next_path.done():
                    next_path.cancel()
                    return
                failure = await self._describe(next_path.result())
                if failure is not None:
                    yield failure
        finally:
            disconnected.cancel()

    def close(self) -> None:
        self._bus.disconnect()

    def _on_message(self, message: Message) -> None:
        path = message.path
        if (
            message.message_type is not MessageType.SIGNAL
            or message.member != "PropertiesChanged"
            or path is None
            or not path.startswith(UNIT_PATHS)
            or message.body[0] != UNIT
        ):
            return
        state = message.body[1].get("ActiveState")
        if not isinstance(state, Variant):
            return
        previous = self._states.get(path)
        self._states[path] = state.value
        if state.value == "failed" and previous != "failed":
            self._failed.put_nowait(path)

    async def _describe(self, path: str) -> UnitFailure | None:
        """The failure of the unit at `path`; None if the unit is gone meanwhile."""
        try:
            unit = await self._properties(path, UNIT)
            name = str(unit["Id"])
            service: dict[str, object] = {}
            interface = _TYPE_INTERFACES.get(name.rsplit(".", 1)[-1])
            if interface is not None:
                service = await self._properties(path, interface)
        except (DBusError, KeyError):
            return None
        invocation = unit.get("InvocationID", b"")
        return UnitFailure(
            unit=name,
            result=str(service.get("Result", "")) or "unknown",
            invocation=bytes(invocation).hex() if isinstance(invocation, (bytes, list)) else "",
            changed_at=_int(unit.get("StateChangeTimestamp")),
            exit_code=_int(service.get("ExecMainCode")),
            exit_status=_int(service.get("ExecMainStatus")),
        )

    async def _properties(self, path: str, interface: str) -> dict[str, object]:
        [values] = await self._call(SYSTEMD, path, PROPERTIES, "GetAll", "s", [interface])
        return {name: variant.value for name, variant in values.items()}

    async def _call(
        self,
        destination: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[object] | None = None,
    ) -> list[Any]:
        reply = await self._bus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        if reply is None or reply.message_type is MessageType.ERROR:
            name = (reply.error_name if reply else None) or "org.freedesktop.DBus.Error.NoReply"
            detail = reply.body[0] if reply is not None and reply.body else "no reply"
            raise DBusError(name, f"{member}: {detail}")
        return list(reply.body)


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0
