#!/usr/bin/env bash
# One room spread over N OnAir nodes on a private Redis: starts redis-server and the
# nodes, runs `onair-bench chat` against all of them, stops everything.
#
#   bench/cluster/run.sh N [onair-bench chat flags...]
#
#   bench/cluster/run.sh 3 --viewers 9000 --rate 40 --duration 15 --warmup 3
#   CLUSTER=0 bench/cluster/run.sh 1 --viewers 9000 ...    # one plain node, no Redis
#
# Environment:
#   ONAIR_BIN   server binary (default $CARGO_TARGET_DIR or target, /release/onair)
#   BENCH_BIN   load tool (default $CARGO_TARGET_DIR or target, /release/onair-bench)
#   REDIS_PORT  port of the private redis-server (default 16390; never 6379)
#   BASE_PORT   HTTP port of node 1; node i listens on BASE_PORT+i-1 (default 18180)
#   CLUSTER     1 (default) = nodes share rooms through Redis; 0 = plain single node
#   KEEP_LOGS   directory for node and Redis logs (default /tmp/onair-cluster-bench)
#
# All nodes share one SQLite data dir (one machine) and a Redis key prefix unique to
# the run. The tool gets every node's URL (connections round-robin over them), every
# node's pid (per-node CPU/RSS) and the Redis address (commands per message, read
# from INFO before and after the measurement window).
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes=${1:?usage: bench/cluster/run.sh N [chat flags...]}
shift
out=${CARGO_TARGET_DIR:-target}/release
BENCH_BIN=${BENCH_BIN:-$out/onair-bench}
ONAIR_BIN=${ONAIR_BIN:-$out/onair}
REDIS_PORT=${REDIS_PORT:-16390}
BASE_PORT=${BASE_PORT:-18180}
CLUSTER=${CLUSTER:-1}
KEEP_LOGS=${KEEP_LOGS:-/tmp/onair-cluster-bench}
SDKAPPID=1400000001
SECRET=benchsecretkey0123456789
prefix="bench$$x$RANDOM"

if [ "$REDIS_PORT" = 6379 ]; then
  echo "refusing to use the machine's Redis port 6379" >&2
  exit 2
fi
port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $( [ "$CLUSTER" = 1 ] && echo "$REDIS_PORT"; seq "$BASE_PORT" $((BASE_PORT + nodes - 1))); do
  if port_busy "$p"; then
    echo "port $p is in use (another run?)" >&2
    exit 1
  fi
done

data=$(mktemp -d /tmp/onair-cluster-data.XXXXXX)
mkdir -p "$KEEP_LOGS"
rm -f "$KEEP_LOGS"/node*.log "$KEEP_LOGS"/redis.log
pids=()
redis_pid=
cleanup() {
  # Nodes first (they give their leases back), then Redis.
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$redis_pid" ]; then
    kill "$redis_pid" 2>/dev/null || true
    wait "$redis_pid" 2>/dev/null || true
  fi
  rm -rf "$data"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

redis_args=()
if [ "$CLUSTER" = 1 ]; then
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
    --maxclients 1000 >"$KEEP_LOGS/redis.log" 2>&1 &
  redis_pid=$!
  for _ in $(seq 100); do
    port_busy "$REDIS_PORT" && break
    kill -0 "$redis_pid" 2>/dev/null || { cat "$KEEP_LOGS/redis.log" >&2; exit 1; }
    sleep 0.05
  done
  redis_args=(--redis "127.0.0.1:$REDIS_PORT")
  echo "redis-server pid $redis_pid on 127.0.0.1:$REDIS_PORT, prefix $prefix" >&2
fi

urls=()
for i in $(seq "$nodes"); do
  port=$((BASE_PORT + i - 1))
  cfg="$data/node$i.toml"
  cat >"$cfg" <<TOML
data_dir = "$data"
[http]
listen = "127.0.0.1:$port"
# Every load client connects from 127.0.0.1: no per-address cap.
max_connections_per_ip = 0
[app]
sdkappid = $SDKAPPID
secret_key = "$SECRET"
[rtmp]
listen = ""
[webrtc]
enabled = false
[chat]
# The senders repeat one text at 10 msgs/s each: per-user limits would refuse that.
user_rate_per_sec = 0
flood_max_repeats = 0
TOML
  if [ "$CLUSTER" = 1 ]; then
    cat >>"$cfg" <<TOML
[cluster]
redis = "redis://127.0.0.1:$REDIS_PORT"
node_id = "n$i"
prefix = "$prefix"
TOML
  fi
  ONAIR_LOG=${ONAIR_LOG:-info} "$ONAIR_BIN" serve --config "$cfg" >"$KEEP_LOGS/node$i.log" 2>&1 &
  pids+=($!)
  # Node 1 alone first: it creates the database the others open.
  for _ in $(seq 200); do
    port_busy "$port" && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$KEEP_LOGS/node$i.log" >&2; exit 1; }
    sleep 0.05
  done
  urls+=("ws://127.0.0.1:$port/ws")
done
echo "nodes: ${pids[*]} on ${urls[*]} (logs in $KEEP_LOGS)" >&2

url_list=$(IFS=,; echo "${urls[*]}")
pid_list=$(IFS=,; echo "${pids[*]}")
redis_total() { redis-cli -p "$REDIS_PORT" info stats | tr -d '\r' | sed -n 's/^total_commands_processed://p'; }
[ "$CLUSTER" = 1 ] && before=$(redis_total)
rc=0
"$BENCH_BIN" chat --target onair --url "$url_list" --server-pid "$pid_list" "${redis_args[@]}" \
  --sdkappid $SDKAPPID --secret-key $SECRET "$@" || rc=$?
# What the nodes counted (before they stop): frames dropped by full outboxes, gaps
# mirrors filled from the store, publishes that failed.
for i in $(seq "$nodes"); do
  m=$(curl -s --max-time 5 "http://127.0.0.1:$((BASE_PORT + i - 1))/metrics" |
    grep -E '^onair_(ws_frames_dropped_total|cluster_gaps_filled_total|cluster_publish_failed_total|push_frames_total)' |
    tr '\n' ' ' || true)
  echo "node $i metrics: $m" >&2
done
if [ "$CLUSTER" = 1 ]; then
  # The whole run, connect phase included (joins are reported to the sequencer).
  echo "redis whole run: $(($(redis_total) - before)) commands (connect + settle + window + drain)" >&2
  # Who sequenced the room, in order (at shutdown the lease moves to a node still up).
  grep -H "now sequences the room" "$KEEP_LOGS"/node*.log | sed 's/\x1b\[[0-9;]*m//g' |
    sed -E 's|^.*/(node[0-9]+)\.log:([^ ]+).*$|\2 \1|' | sort | sed 's/^/sequencer: /' >&2 || true
  grep -h "lost the room's sequencer lease\|cluster publish failed" "$KEEP_LOGS"/node*.log |
    sed 's/\x1b\[[0-9;]*m//g' | cut -c1-160 | sed 's/^/cluster: /' >&2 || true
fi
exit $rc
