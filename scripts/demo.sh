#!/usr/bin/env bash
# The main job on an embedded default, unprivileged, in a temporary directory:
# start telemd, opt in, let telem-record-gen and hprobe send records, and show
# what the daemon holds durably in its spool.
set -euo pipefail

demo=$(mktemp -d /tmp/telemd-demo.XXXXXX)
config="$demo/telemetrics.toml"
cat >"$config" <<TOML
socket_path = "$demo/run/telem-0"
spool_dir = "$demo/spool"
state_dir = "$demo/state"
opt_in_file = "$demo/opt-in"
static_machine_id_file = "$demo/opt-in-static-machine-id"
TOML
export TELEMD_CONFIG="$config"

echo "== telemd in $demo"
telemd -f "$config" 2>"$demo/telemd.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$demo/run/telem-0" ] && break; sleep 0.1; done

echo "== opted out: the record is refused, nothing is stored"
telem-record-gen -c org.example/demo/hello -p "not sent" || true

echo "== opt in, then send"
touch "$demo/opt-in"
telem-record-gen -c org.example/demo/hello -s 2 -p "hello from the demo"
echo "telem-record-gen: acknowledged (exit status $?)"
hprobe && echo "hprobe: acknowledged"

echo "== the spool ($demo/spool/spool.sqlite)"
python3 - "$demo/spool/spool.sqlite" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows = db.execute(
    "SELECT r.record_id, r.classification, r.severity, h.machine_id, h.system_name, r.payload"
    " FROM records r JOIN hosts h ON h.id = r.host_id ORDER BY r.seq"
)
for record_id, classification, severity, machine_id, system, payload in rows:
    print(f"{record_id}  {classification:<30} sev {severity}  machine {machine_id}"
          f"  {system}  {payload.strip()!r}")
PY

kill $daemon
wait $daemon || true
trap - EXIT
echo "== daemon log"
cat "$demo/telemd.log"
