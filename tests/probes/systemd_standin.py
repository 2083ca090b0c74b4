"""A stand-in for systemd's D-Bus API, on a private bus, for journalprobe's tests.

Owns `org.freedesktop.systemd1` on the bus at $DBUS_SYSTEM_BUS_ADDRESS with
the parts of the API journalprobe uses: Manager.Subscribe and
ListUnitsFiltered, and unit objects with the Unit and Service interfaces; and
the parts telemctl uses: Manager.StartUnit, StopUnit, RestartUnit,
ReloadOrTryRestartUnit and GetUnit.
Like systemd, it signals property changes only after Subscribe was called.

Driven by lines on stdin; prints a line on stderr for each step done:
    fail UNIT RESULT CODE STATUS   the unit's run ends in the failed state
    start UNIT                     a new run of the unit starts (active)
Units named on the command line are failed from the start.
"""

import asyncio
import os
import sys
from typing import Annotated, Any

from dbus_fast import BusType, DBusError
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusSignature, DBusStr
from dbus_fast.service import (
    PropertyAccess,
    ServiceInterface,
    dbus_method,
    dbus_property,
    dbus_signal,
)

UnitList = Annotated[list[tuple[str, ...]], DBusSignature("a(ssssssouso)")]
ObjectPath = Annotated[str, DBusSignature("o")]
Bytes = Annotated[bytes, DBusSignature("ay")]
UInt64 = Annotated[int, DBusSignature("t")]
Int32 = Annotated[int, DBusSignature("i")]
UNIT_PATHS = "/org/freedesktop/systemd1/unit/"


def unit_path(name: str) -> str:
    """systemd's object path for a unit: bytes outside [A-Za-z0-9] become _XX."""
    escaped = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)
    return UNIT_PATHS + escaped


class Unit(ServiceInterface):
    def __init__(self, name: str, state: str) -> None:
        super().__init__("org.freedesktop.systemd1.Unit")
        self.unit_id = name
        self.state = state
        self.invocation = os.urandom(16)
        self.changed = 1

    @dbus_property(access=PropertyAccess.READ)
    def Id(self) -> DBusStr:
        return self.unit_id

    @dbus_property(access=PropertyAccess.READ)
    def ActiveState(self) -> DBusStr:
        return self.state

    @dbus_property(access=PropertyAccess.READ)
    def InvocationID(self) -> Bytes:
        return self.invocation

    @dbus_property(access=PropertyAccess.READ)
    def StateChangeTimestamp(self) -> UInt64:
        return self.changed


class Service(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.freedesktop.systemd1.Service")
        self.result = "success"
        self.code = 0
        self.status = 0

    @dbus_property(access=PropertyAccess.READ)
    def Result(self) -> DBusStr:
        return self.result

    @dbus_property(access=PropertyAccess.READ)
    def ExecMainCode(self) -> Int32:
        return self.code

    @dbus_property(access=PropertyAccess.READ)
    def ExecMainStatus(self) -> Int32:
        return self.status


class Manager(ServiceInterface):
    def __init__(self, units: dict[str, tuple[Unit, Service]], unit: Any) -> None:
        super().__init__("org.freedesktop.systemd1.Manager")
        self.units = units
        self.unit = unit  # makes (and exports) a unit on first use
        self.subscribed = False
        self.jobs = 0

    def _job(self, name: str, state: str, verb: str) -> str:
        target, _ = self.unit(name)
        target.state = state
        self.jobs += 1
        print(f"{verb} {name}", file=sys.stderr, flush=True)
        job = f"/org/freedesktop/systemd1/job/{self.jobs}"
        # Done at once; signalled once the reply is out, as systemd does.
        asyncio.get_running_loop().call_soon(self.JobRemoved, [self.jobs, job, name, "done"])
        return job

    @dbus_signal()
    def JobRemoved(self, removed: list[Any]) -> Annotated[list[Any], DBusSignature("uoss")]:
        return removed

    @dbus_method()
    def StartUnit(self, name: DBusStr, mode: DBusStr) -> ObjectPath:
        return self._job(name, "active", "started")

    @dbus_method()
    def StopUnit(self, name: DBusStr, mode: DBusStr) -> ObjectPath:
        return self._job(name, "inactive", "stopped")

    @dbus_method()
    def RestartUnit(self, name: DBusStr, mode: DBusStr) -> ObjectPath:
        return self._job(name, "active", "restarted")

    @dbus_method()
    def ReloadOrTryRestartUnit(self, name: DBusStr, mode: DBusStr) -> ObjectPath:
        target, _ = self.unit(name)
        return self._job(name, target.state, "reloaded" if target.state == "active" else "left")

    @dbus_method()
    def GetUnit(self, name: DBusStr) -> ObjectPath:
        if name not in self.units:
            raise DBusError("org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
        return unit_path(name)

    @dbus_method()
    def Subscribe(self) -> None:
        self.subscribed = True
        print("subscribed", file=sys.stderr, flush=True)

    @dbus_method()
    def ListUnitsFiltered(self, states: Annotated[list[str], DBusSignature("as")]) -> UnitList:
        listed = [unit for unit, _ in self.units.values() if unit.state in states]
        return [
            (u.unit_id, "", "loaded", u.state, u.state, "", unit_path(u.unit_id), 0, "", "/")
            for u in listed
        ]


async def main() -> None:
    bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
    units: dict[str, tuple[Unit, Service]] = {}

    def unit(name: str) -> tuple[Unit, Service]:
        if name not in units:
            units[name] = (Unit(name, "inactive"), Service())
            for interface in units[name]:
                bus.export(unit_path(name), interface)
        return units[name]

    manager = Manager(units, unit)

    for name in sys.argv[1:]:
        failed, service = unit(name)
        failed.state, service.result, service.code, service.status = "failed", "exit-code", 1, 1
    bus.export("/org/freedesktop/systemd1", manager)
    await bus.request_name("org.freedesktop.systemd1")
    print("ready", file=sys.stderr, flush=True)
    reader = asyncio.StreamReader()
    loop = asyncio.get_running_loop()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode():
        command, name, *rest = line.split()
        target, service = unit(name)
        target.changed += 1
        if command == "start":
            target.state, target.invocation = "active", os.urandom(16)
            service.result = "success"
        elif command == "fail":
            result, code, status = rest
            service.result, service.code, service.status = result, int(code), int(status)
            target.state = "failed"
        if manager.subscribed:  # systemd sends the type interface's changes first
            changed = {"Result": service.result, "ExecMainCode": service.code}
            service.emit_properties_changed({**changed, "ExecMainStatus": service.status})
            target.emit_properties_changed({"ActiveState": target.state})
        print(f"{command} {name} done", file=sys.stderr, flush=True)


if __name__ == "__main__":
    asyncio.run(main())
