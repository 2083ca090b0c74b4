#!/usr/bin/env bash
# The main job on an embedded default, unprivileged, in a temporary directory:
# a collector on SQLite, telemd delivering to it, telem-record-gen and hprobe
# sending records, and the journal showing them delivered.
set -euo pipefail

demo=$(mktemp -d /tmp/telemd-demo.XXXXXX)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
config="$demo/telemetrics.toml"
cat >"$config" <<TOML
server = "http://127.0.0.1:$port/v2/collector"
socket_path = "$demo/run/telem-0"
control_socket_path = "$demo/run/control"
spool_dir = "$demo/spool"
state_dir = "$demo/state"
opt_in_file = "$demo/opt-in"
static_machine_id_file = "$demo/opt-in-static-machine-id"
TOML
export TELEMD_CONFIG="$config"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null || true' EXIT

echo "== telemd-collector on SQLite at 127.0.0.1:$port"
telemd-collector serve --db "sqlite:///$demo/collector.sqlite" --port "$port" \
    --log-level warning 2>"$demo/collector.log" &
pids+=($!)
echo "== telemd in $demo"
telemd 2>"$demo/telemd.log" &
pids+=($!)
for _ in $(seq 100); do
    [ -S "$demo/run/telem-0" ] && python3 -c "import socket; socket.create_connection(('127.0.0.1', $port))" 2>/dev/null && break
    sleep 0.1
done

echo "== opted out: the record is refused, nothing is stored"
telem-record-gen -c org.example/demo/hello -p "not sent" || true

echo "== opt in, then send"
touch "$demo/opt-in"
telem-record-gen -c org.example/demo/hello -s 2 -p "hello from the demo" && echo "telem-record-gen: acknowledged"
hprobe && echo "hprobe: acknowledged"

echo "== the journal (telemctl journal -V)"
for _ in $(seq 100); do
    [ "$(telemctl journal --status delivered 2>/dev/null | wc -l)" -ge 2 ] && break
    sleep 0.1
done
telemctl journal -V

echo "== what the collector stored (telemd-collector query)"
telemd-collector query --db "sqlite:///$demo/collector.sqlite" --format table
