#!/usr/bin/env bash
# Media benchmark: a server (OnAir or nginx-rtmp), one ffmpeg publisher of a ~600 kbps
# stream (640x360 30 fps H.264 at 500 kbit/s + AAC 64 kbit/s, 1 s GOP), then
# `onair-bench media` with N viewers; the server is stopped afterwards (by its PID).
#
#   bench/media/run.sh onair-rtmp  [onair-bench media flags...]
#   bench/media/run.sh onair-flv   [onair-bench media flags...]
#   bench/media/run.sh nginx-rtmp  [onair-bench media flags...]
#
# Environment: ONAIR_BIN, BENCH_BIN (default target/release/…), RTMP_PORT (11935),
# HTTP_PORT (18080).
set -euo pipefail
cd "$(dirname "$0")/../.."
target=${1:?usage: bench/media/run.sh onair-rtmp|onair-flv|nginx-rtmp [media flags...]}
shift
BENCH_BIN=${BENCH_BIN:-target/release/onair-bench}
ONAIR_BIN=${ONAIR_BIN:-target/release/onair}
RTMP_PORT=${RTMP_PORT:-11935}
HTTP_PORT=${HTTP_PORT:-18080}
dir=$(mktemp -d /tmp/onair-media-bench.XXXXXX)
ulimit -n 20000

case "$target" in
onair-*)
  cat >"$dir/onair.toml" <<TOML
data_dir = "$dir"
[http]
listen = "127.0.0.1:$HTTP_PORT"
# Every load client connects from 127.0.0.1: no per-address cap.
max_connections_per_ip = 0
[rtmp]
listen = "127.0.0.1:$RTMP_PORT"
auth = false
TOML
  ONAIR_LOG=warn "$ONAIR_BIN" serve --config "$dir/onair.toml" >"$dir/server.out" 2>"$dir/server.err" &
  ;;
nginx-rtmp)
  sed "s#@DIR@#$dir#g; s#@PORT@#$RTMP_PORT#g" bench/nginx-rtmp/nginx.conf.in >"$dir/nginx.conf"
  /usr/sbin/nginx -c "$dir/nginx.conf" -p "$dir" &
  ;;
*) echo "unknown target $target" >&2; exit 2 ;;
esac
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  [ -n "${pub_pid:-}" ] && kill "$pub_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
sleep 1.5

ffmpeg -hide_banner -loglevel error -nostdin -re \
  -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 \
  -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -b:v 500k -maxrate 500k -bufsize 500k \
  -c:a aac -b:a 64k -t 600 -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/bench" &
pub_pid=$!
sleep 3

case "$target" in
onair-flv) url="http://127.0.0.1:$HTTP_PORT/live/bench.flv" ;;
*) url="rtmp://127.0.0.1:$RTMP_PORT/live/bench" ;;
esac
"$BENCH_BIN" media --url "$url" --server-pid "$server_pid" "$@"
