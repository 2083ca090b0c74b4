"""The machine id: rotation every three days, persistence, the static override."""

from __future__ import annotations

import os
from itertools import count
from pathlib import Path

from telemd.machineid import ROTATION_SECONDS, MachineId


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def ids(start: int = 0):
    numbers = count(start)
    return lambda: f"{next(numbers):032x}"


def test_the_id_rotates_after_three_days(tmp_path: Path) -> None:
    clock = Clock()
    machine = MachineId(str(tmp_path), str(tmp_path / "static"), clock=clock, new_id=ids())
    first = machine.current()
    assert len(first) == 32
    clock.now += ROTATION_SECONDS - 1
    assert machine.current() == first
    clock.now += 1
    assert machine.current() != first


def test_the_id_survives_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    first = MachineId(str(tmp_path), str(tmp_path / "static"), clock=clock, new_id=ids()).current()
    clock.now += 3600
    again = MachineId(str(tmp_path), str(tmp_path / "static"), clock=clock, new_id=ids(100))
    assert again.current() == first
    clock.now += ROTATION_SECONDS
    assert again.current() != first


def test_a_static_id_wins_and_is_cut_to_32_characters(tmp_path: Path) -> None:
    static = tmp_path / "static"
    static.write_text("fleet-machine-0042-" + "x" * 40 + "\nsecond line\n")
    machine = MachineId(str(tmp_path), str(static), clock=Clock(), new_id=ids())
    assert machine.current() == ("fleet-machine-0042-" + "x" * 40)[:32]
    static.unlink()
    machine.reload()
    assert machine.current() == f"{0:032x}"


def test_an_unwritable_state_dir_still_gives_an_id(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "dir"
    machine = MachineId(str(missing), str(tmp_path / "static"), clock=Clock(), new_id=ids())
    assert machine.current() == f"{0:032x}"
    assert not os.path.exists(missing)


def test_a_corrupt_state_file_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "machine_id").write_text("garbage")
    machine = MachineId(str(tmp_path), str(tmp_path / "static"), clock=Clock(), new_id=ids())
    assert machine.current() == f"{0:032x}"
    assert (tmp_path / "machine_id").read_text().split()[0] == f"{0:032x}"
