#!/usr/bin/env bash
# Three OnAir nodes on this machine sharing the local PostgreSQL and Redis:
#   http://127.0.0.1:8081  http://127.0.0.1:8082  http://127.0.0.1:8083
# (RTMP on 1936-1938). Ctrl-C stops them all. Needs a release build:
#   cargo build --release
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${ONAIR_BIN:-target/release/onair}
DB=${ONAIR_EXAMPLE_DB:-onair_example}
PG=${ONAIR_EXAMPLE_PG:-postgres://postgres@127.0.0.1}
REDIS=${ONAIR_EXAMPLE_REDIS:-redis://127.0.0.1:6379}
psql "$PG/postgres" -qtc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
  || psql "$PG/postgres" -qc "CREATE DATABASE $DB"
work=$(mktemp -d /tmp/onair-cluster.XXXXXX)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait; rm -rf "$work"' EXIT INT TERM
for i in 1 2 3; do
  mkdir -p "$work/node$i"
  ONAIR_DATA_DIR="$work/node$i" \
  ONAIR_HTTP__LISTEN="127.0.0.1:808$i" \
  ONAIR_RTMP__LISTEN="127.0.0.1:193$((5 + i))" \
  ONAIR_WEBRTC__LISTEN="0.0.0.0:$((8188 + i))" \
  ONAIR_STORE__URL="$PG/$DB" \
  ONAIR_CLUSTER__REDIS="$REDIS" \
  ONAIR_CLUSTER__PREFIX="onair-example" \
  ONAIR_CLUSTER__NODE_ID="node$i" \
    "$BIN" serve --config examples/cluster/onair.toml >"$work/node$i.log" 2>&1 &
  pids+=($!)
  sleep 1   # the first node creates the schema; the others find it
done
sleep 1
for i in 1 2 3; do
  echo "node$i: http://127.0.0.1:808$i  $(curl -s "http://127.0.0.1:808$i/healthz")"
done
echo "logs in $work; Ctrl-C stops the nodes"
wait
