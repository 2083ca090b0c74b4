"""The .debs on Debian 12 booted with systemd as PID 1, as an administrator
would use them: install, opt-in, activation, a crash through
systemd-coredump's journal, reload, upgrade, opt-out, remove and purge.

The tests are the steps of one scenario, in this order, on one machine
(the `machine` fixture of this module). Delivery goes to telemd-collector
running in the same machine, on Debian 12's own Starlette and uvicorn.
"""

from __future__ import annotations

import json
import time

import pytest
from nspawn import Machine

from telemd.units import OWN_UNITS, UNITS

pytestmark = pytest.mark.slow

DEBS = "/mnt/shared"
APT = "DEBIAN_FRONTEND=noninteractive apt-get -y -q --no-install-recommends"
COLLECTOR_DB = "sqlite:////var/lib/telemd-collector/records.sqlite"
SETTLE_DEADLINE = 60.0
CONFIG = """\
server = "http://127.0.0.1:8080/v2/collector"
"""
RECORD_GEN = "telem-record-gen -c org.example/systemd/test -s 1 -p"


def show(machine: Machine, unit: str) -> dict[str, str]:
    properties = "ActiveState,SubState,NRestarts,ConditionResult,NeedDaemonReload,Result"
    out = machine.run(f"systemctl show -p {properties} {unit}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def unit_log(machine: Machine, unit: str) -> str:
    """For failure messages."""
    return machine.run(f"journalctl -q -o short-monotonic -u {unit}", check=False).stdout


def active_units(machine: Machine) -> set[str]:
    return {unit for unit in OWN_UNITS if show(machine, unit)["ActiveState"] == "active"}


def collected(machine: Machine) -> list[dict[str, object]]:
    """What the collector stored, newest first (read from its database)."""
    out = machine.run(
        "runuser -u telemetry-collector -- telemd-collector query"
        f" --db {COLLECTOR_DB} --limit 500 --format json"
    ).stdout
    records: list[dict[str, object]] = json.loads(out)["records"]
    return records


def wait_for_records(machine: Machine, classification: str, count: int) -> list[dict[str, object]]:
    """The collector's records of `classification` once there are `count`."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    while True:
        found = [r for r in collected(machine) if str(r["classification"]) == classification]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)  # delivery happens in another machine's processes; bounded


# Type=exec: started is not yet listening. Bounded by the deadline; a
# collector that exited answers "refused" to the end.
HEALTHZ = """
import time, urllib.request
deadline = time.monotonic() + 30
while True:
    try:
        print(urllib.request.urlopen("http://127.0.0.1:8080/healthz", timeout=10).status)
        break
    except OSError as exc:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.1)
"""


def send_coredump_entry(machine: Machine, pid: int, function: str) -> None:
    """An entry as systemd-coredump logs it (the host's core_pattern takes
    real crashes, so the entry is written to journald's native socket)."""
    script = f"""
import socket, struct
fields = {{
    "MESSAGE_ID": "fc2e22bc6ee647b6b90729ab34a250b1",
    "MESSAGE": "Process {pid} (demo) of user 0 dumped core.\\n\\n"
               "Stack trace of thread {pid}:\\n"
               "#0  0x000055a920b8b165 {function} (demo + 0x1165)\\n"
               "#1  0x000055a920b8b1c1 main (demo + 0x11c0)\\n",
    "PRIORITY": "2",
    "COREDUMP_PID": "{pid}",
    "COREDUMP_SIGNAL": "11",
    "COREDUMP_EXE": "/usr/bin/demo",
    "COREDUMP_COMM": "demo",
    "COREDUMP_TIMESTAMP": "1700000000000000",
}}
datagram = b"".join(
    k.encode() + b"\\n" + struct.pack("<Q", len(v.encode())) + v.encode() + b"\\n"
    for k, v in fields.items()
)
with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
    s.sendto(datagram, "/run/systemd/journal/socket")
"""
    machine.run("python3 -", stdin=script)


def test_install_starts_nothing_and_reloads_systemd(machine: Machine) -> None:
    machine.run(f"{APT} install {DEBS}/telemd_*.deb {DEBS}/telemd-collector_*.deb")
    assert active_units(machine) == set()
    is_active = machine.run("telemctl is-active", check=False)
    assert is_active.returncode == 3, is_active.stdout + is_active.stderr  # none is active
    assert [line.split(" : ")[0] for line in is_active.stdout.splitlines()] == list(UNITS)
    assert machine.run("stat -c %U:%a /var/lib/telemetry /var/spool/telemetry").stdout.split() == [
        "telemetry:750",
        "telemetry:700",
    ]
    machine.run(f"cat > /etc/telemetrics/telemetrics.toml <<'EOF'\n{CONFIG}EOF")


def test_the_collector_starts_on_debian_12s_packages_and_logs_each_line_once(
    machine: Machine,
) -> None:
    assert machine.run("python3 -c 'import orjson'", check=False).returncode != 0
    machine.run("systemctl start telemd-collector.service")
    health = machine.run("python3 -", stdin=HEALTHZ, check=False)
    log = machine.run("journalctl -q -o cat -u telemd-collector.service").stdout
    assert health.stdout.strip() == "200", health.stderr + log
    assert log.count("Application startup complete") == 1, log


def test_opt_in_starts_every_unit_that_can_run(machine: Machine) -> None:
    machine.run("telemctl opt-in")
    active = active_units(machine)
    expected = {"telemd.socket", "telemd-control.socket", "hprobe.timer"}
    expected |= {"journalprobe.service", "crashprobe-journal.service"}
    assert expected <= active, active
    # No /dev/kmsg and no pstore in a container: inactive by their
    # conditions, not failing and restarting every 30 s.
    for unit in ("klogscanner.service", "pstoreprobe.service"):
        state = show(machine, unit)
        assert (state["ActiveState"], state["ConditionResult"]) == ("inactive", "no"), state
    assert machine.run("telemctl is-active").returncode == 0


def test_a_probe_activates_telemd_and_its_record_reaches_the_collector(machine: Machine) -> None:
    machine.run(f"{RECORD_GEN} first")
    assert show(machine, "telemd.service")["ActiveState"] == "active"
    [row] = wait_for_records(machine, "org.example/systemd/test", 1)
    assert row["payload"] == "first"


def test_a_coredump_is_sent_once_across_restarts(machine: Machine) -> None:
    send_coredump_entry(machine, 4242, "crash_here")
    found = wait_for_records(machine, "org.clearlinux/crash/clr", 1)
    assert len(found) == 1, unit_log(machine, "crashprobe-journal.service")
    [first] = found
    assert "crash_here" in str(first["payload"])
    assert machine.run("stat -c %U /var/lib/telemetry/crashprobe-journal.cursor").stdout == (
        "telemetry\n"
    )
    machine.run("systemctl restart crashprobe-journal.service")
    send_coredump_entry(machine, 4343, "crash_again")
    crashes = wait_for_records(machine, "org.clearlinux/crash/clr", 2)
    # The second arrived after the restart re-read the journal: the first was not sent again.
    assert ["crash_again" in str(r["payload"]) for r in crashes] == [True, False]
    state = show(machine, "crashprobe-journal.service")
    assert (state["ActiveState"], state["NRestarts"]) == ("active", "0"), state
    # journalprobe reported no failure of telemd's own units.
    assert [r for r in collected(machine) if "journal" in str(r["classification"])] == []


PSTORE_DUMP = "Panic#1 Part1\\n<0>[    1.000000] Kernel panic - not syncing: scenario\\n"
# A container has no /sys/fs/pstore: the unit is pointed at a directory
# (through a configuration file only the probe reads) in its place, the rest
# (root without capabilities, the sandbox, StateDirectory=) left as shipped.
PSTORE_DROP_IN = """\
[Unit]
ConditionDirectoryNotEmpty=
ConditionDirectoryNotEmpty=/srv/pstore
[Service]
Environment=TELEMD_CONFIG=/etc/telemetrics/pstore.toml
ReadWritePaths=
ReadWritePaths=/srv/pstore
"""


def test_a_pstore_dump_that_cannot_be_removed_is_sent_once(machine: Machine) -> None:
    machine.run(
        "mkdir /srv/pstore"
        f" && printf '{PSTORE_DUMP}' > /srv/pstore/dmesg-ramoops-0"
        " && chmod 0440 /srv/pstore/dmesg-ramoops-0"
        " && chattr +i /srv/pstore"  # root cannot remove the dump it sent
        " && echo 'pstore_dir = \"/srv/pstore\"' > /etc/telemetrics/pstore.toml"
        " && mkdir /run/systemd/system/pstoreprobe.service.d"
    )
    machine.run("cat > /run/systemd/system/pstoreprobe.service.d/dir.conf", stdin=PSTORE_DROP_IN)
    machine.run("systemctl daemon-reload")
    try:
        for _ in range(3):  # a oneshot: start returns once the probe is done
            started = machine.run("systemctl start pstoreprobe.service", check=False)
            assert started.returncode == 0, unit_log(machine, "pstoreprobe.service")
        panics = wait_for_records(machine, "org.clearlinux/kernel/panic", 1)
        log = unit_log(machine, "pstoreprobe.service")
        assert len(panics) == 1, log
        assert log.count("cannot remove dmesg-ramoops-0: Operation not permitted") == 1, log
        assert machine.run("wc -l < /var/lib/pstoreprobe/pstoreprobe.sent").stdout == "1\n"
        assert machine.run("stat -c %U:%a /var/lib/pstoreprobe").stdout == "root:700\n"
    finally:
        machine.run(
            "chattr -i /srv/pstore; rm -rf /srv/pstore /etc/telemetrics/pstore.toml"
            " /run/systemd/system/pstoreprobe.service.d && systemctl daemon-reload"
        )


def test_reload_without_procps_running_or_idle(machine: Machine) -> None:
    assert machine.run("test -e /bin/kill || test -e /usr/bin/kill", check=False).returncode != 0
    machine.run(f"{RECORD_GEN} wake")  # telemd runs
    reload = machine.run("systemctl reload telemd.service", check=False)
    assert reload.returncode == 0, reload.stderr
    assert machine.run("telemctl reload").stdout == "telemd re-read its configuration.\n"
    machine.run("systemctl stop telemd.service")  # as after its idle exit: the sockets wait
    idle = machine.run("telemctl reload")
    assert idle.stdout == "telemd is not running; it reads the configuration when next started.\n"
    log = machine.run("journalctl -q -o cat -u telemd.service").stdout
    assert log.count("configuration reloaded") == 2, log


def test_upgrade_keeps_telemetry_on_and_the_spool(machine: Machine) -> None:
    machine.run("systemctl stop telemd-collector.service")  # records wait in the spool
    machine.run(f"{RECORD_GEN} waiting")
    before = active_units(machine)
    # As an older package left them: units changed on disk, not reloaded.
    machine.run("echo '# older' >> /lib/systemd/system/telemd.service && systemctl daemon-reload")
    machine.run(f"{APT} install --reinstall {DEBS}/telemd_*.deb")
    assert show(machine, "telemd.service")["NeedDaemonReload"] == "no"
    assert active_units(machine) >= before - {"telemd.service"}, before
    machine.run(f"{RECORD_GEN} after-upgrade")  # fails if the probe socket is gone
    # An older package stopped everything before an upgrade; opted in, the
    # reinstall brings telemetry back.
    machine.run("telemctl stop")
    machine.run(f"{APT} install --reinstall {DEBS}/telemd_*.deb")
    assert {"telemd.socket", "telemd-control.socket", "crashprobe-journal.service"} <= (
        active_units(machine)
    )
    machine.run(f"{RECORD_GEN} after-reinstall")
    machine.run("systemctl start telemd-collector.service")
    payloads = {r["payload"] for r in wait_for_records(machine, "org.example/systemd/test", 5)}
    assert {"waiting", "after-upgrade", "after-reinstall"} <= payloads  # the spool was kept


def test_opt_out_stops_every_unit(machine: Machine) -> None:
    machine.run("telemctl opt-out")
    assert active_units(machine) == set()
    assert machine.run("telemctl is-active", check=False).returncode == 3


def test_remove_stops_every_unit_and_keeps_the_data(machine: Machine) -> None:
    machine.run("telemctl opt-in")
    machine.run(f"{RECORD_GEN} before-remove")
    assert "telemd.service" in active_units(machine)
    machine.run(f"{APT} remove telemd-collector telemd")
    assert active_units(machine) == set()
    assert show(machine, "telemd-collector.service")["ActiveState"] == "inactive"
    assert running_from_the_packages(machine) == []
    machine.run("test -d /var/spool/telemetry && test -e /etc/telemetrics/opt-in")


def test_purge_stops_first_then_removes_the_data(machine: Machine) -> None:
    machine.run(f"{APT} install {DEBS}/telemd_*.deb")
    machine.run("telemctl start")
    machine.run(f"{RECORD_GEN} before-purge")
    assert "telemd.service" in active_units(machine)
    machine.run(f"{APT} purge telemd telemd-collector")
    assert active_units(machine) == set()
    assert running_from_the_packages(machine) == []
    paths = ("/var/spool/telemetry", "/var/lib/telemetry", "/var/lib/pstoreprobe", "/run/telemd")
    for path in (*paths, "/run/telem-0"):
        assert machine.run(f"test -e {path}", check=False).returncode != 0, path


def running_from_the_packages(machine: Machine) -> list[str]:
    """Command lines of processes running telemd's programs (no procps here)."""
    out = machine.run(
        "for f in /proc/[0-9]*/cmdline; do tr '\\0' ' ' < $f 2>/dev/null; echo; done"
    ).stdout
    programs = ("bin/telemd", "bin/crashprobe", "bin/journalprobe", "bin/klogscanner")
    return [line for line in out.splitlines() if any(p in line for p in programs)]
