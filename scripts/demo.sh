#!/usr/bin/env bash
# The main job on an embedded default, unprivileged, in a temporary directory:
# a collector on SQLite, telemd delivering to it, telem-record-gen and hprobe
# sending records, the journal showing them delivered, and the collector
# read back over HTTP with a read token, which also logs in to the console.
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

echo "== what the collector stored, read over HTTP with a read token"
token=$(telemd-collector token create --name demo-reader --scope read \
    --db "sqlite:///$demo/collector.sqlite" | tail -n 1)
python3 - "http://127.0.0.1:$port/api/records" "$token" <<'PY'
import json, sys, urllib.error, urllib.request

url, token = sys.argv[1], sys.argv[2]
try:
    urllib.request.urlopen(url)
except urllib.error.HTTPError as exc:
    print(f"without the token: HTTP {exc.code} {json.load(exc)['message']}")
request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
for record in json.load(urllib.request.urlopen(request))["records"]:
    print(f"{record['received_at']}  sev {record['severity']}  {record['classification']}"
          f"  {record['payload'].strip()!r}")
PY
echo "== the collector, for you to query"
echo "   console: http://127.0.0.1:$port/console/ (log in with the token below)"
echo "   API:     http://127.0.0.1:$port/api/records (and /api/v1/summary, /metrics)"
echo "   token:   $token"
echo "   curl -H 'Authorization: Bearer $token' http://127.0.0.1:$port/api/v1/summary"
if [ -t 0 ]; then
    read -r -p "== press Enter to stop the demo " _
fi
