#!/usr/bin/env bash
# Starts a server, runs `onair-bench chat` against it, stops the server.
#
#   bench/run.sh onair    [onair-bench chat flags...]
#   bench/run.sh socketio [onair-bench chat flags...]
#   bench/run.sh ws       [onair-bench chat flags...]
#
# Environment: ONAIR_BIN (default target/release/onair), BENCH_BIN (default
# $CARGO_TARGET_DIR or target, /release/onair-bench), PORT (18080 / 13000 / 13100),
# SERVER_CPUS / TOOL_CPUS (`taskset -c` lists pinning the server and the load tool,
# e.g. 0 and 1: one core each), ONAIR_CHAT_EXTRA (more [chat] lines for OnAir).
# The OnAir server gets a throw-away config and data dir under /tmp.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: bench/run.sh onair|socketio|ws [chat flags...]}
shift
BENCH_BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-target}/release/onair-bench}
ONAIR_BIN=${ONAIR_BIN:-target/release/onair}
pin_server=()
[ -n "${SERVER_CPUS:-}" ] && pin_server=(taskset -c "$SERVER_CPUS")
pin_tool=()
[ -n "${TOOL_CPUS:-}" ] && pin_tool=(taskset -c "$TOOL_CPUS")
SDKAPPID=1400000001
SECRET=benchsecretkey0123456789

case "$target" in
onair)
  PORT=${PORT:-18080}
  data=$(mktemp -d /tmp/onair-bench-data.XXXXXX)
  cat >"$data/onair.toml" <<TOML
data_dir = "$data"
[http]
listen = "127.0.0.1:$PORT"
# Every load client connects from 127.0.0.1: no per-address cap.
max_connections_per_ip = 0
[app]
sdkappid = $SDKAPPID
secret_key = "$SECRET"
[chat]
# The senders repeat one text at 10 msgs/s each: per-user limits would refuse that.
user_rate_per_sec = 0
flood_max_repeats = 0
${ONAIR_CHAT_EXTRA:-}
TOML
  "${pin_server[@]}" "$ONAIR_BIN" serve --config "$data/onair.toml" >"$data/server.log" 2>&1 &
  url="ws://127.0.0.1:$PORT/ws"
  ;;
socketio)
  PORT=${PORT:-13000}
  data=$(mktemp -d /tmp/socketio-bench.XXXXXX)
  PORT=$PORT "${pin_server[@]}" node bench/socketio/server.js >"$data/server.log" 2>&1 &
  url="ws://127.0.0.1:$PORT"
  ;;
ws)
  PORT=${PORT:-13100}
  data=$(mktemp -d /tmp/ws-bench.XXXXXX)
  PORT=$PORT "${pin_server[@]}" node bench/ws/server.js >"$data/server.log" 2>&1 &
  url="ws://127.0.0.1:$PORT/ws"
  ;;
*)
  echo "unknown target $target" >&2
  exit 2
  ;;
esac
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  cp "$data/server.log" "/tmp/$target-bench-server.log" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for _ in $(seq 100); do
  if (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null; then break; fi
  kill -0 $server 2>/dev/null || { cat "$data/server.log" >&2; exit 1; }
  sleep 0.1
done
echo "server pid $server (log: /tmp/$target-bench-server.log after the run)" >&2
"${pin_tool[@]}" "$BENCH_BIN" chat --target "$target" --url "$url" --sdkappid $SDKAPPID --secret-key $SECRET \
  --server-pid $server "$@"
