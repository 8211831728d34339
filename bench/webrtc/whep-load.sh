#!/usr/bin/env bash
# WHEP load benchmark: an OnAir server, one ffmpeg RTMP publisher of a ~1 Mbit/s stream
# (640x360 30 fps H.264 baseline at 900 kbit/s + AAC 64 kbit/s, 1 s GOP), then
# `onair-bench whep` with N WebRTC viewers (real ICE/DTLS/SRTP each); the server and
# the publisher are stopped afterwards (by their PIDs).
#
#   bench/webrtc/whep-load.sh [onair-bench whep flags...]
#   e.g. bench/webrtc/whep-load.sh --viewers 1000 --procs 2 --secs 15
#
# Environment: ONAIR_BIN, BENCH_BIN (default target/release/…), RTMP_PORT (11935),
# HTTP_PORT (18080), UDP_PORT (18189), ONAIR_WEBRTC_EXTRA (more [webrtc] lines).
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH_BIN=${BENCH_BIN:-target/release/onair-bench}
ONAIR_BIN=${ONAIR_BIN:-target/release/onair}
RTMP_PORT=${RTMP_PORT:-11935}
HTTP_PORT=${HTTP_PORT:-18080}
UDP_PORT=${UDP_PORT:-18189}
dir=$(mktemp -d /tmp/onair-whep-bench.XXXXXX)
ulimit -n 20000

cat >"$dir/onair.toml" <<TOML
data_dir = "$dir"
[http]
listen = "127.0.0.1:$HTTP_PORT"
# Every load client connects from 127.0.0.1: no per-address cap.
max_connections_per_ip = 0
[rtmp]
listen = "127.0.0.1:$RTMP_PORT"
auth = false
[webrtc]
listen = "127.0.0.1:$UDP_PORT"
max_sessions = 20000
max_sessions_per_ip = 20000
max_players_per_stream = 20000
${ONAIR_WEBRTC_EXTRA:-}
TOML
ONAIR_LOG=warn "$ONAIR_BIN" serve --config "$dir/onair.toml" >"$dir/server.out" 2>"$dir/server.err" &
server_pid=$!
cleanup() {
  kill "$server_pid" 2>/dev/null || true
  [ -n "${pub_pid:-}" ] && kill "$pub_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
sleep 1.5

ffmpeg -hide_banner -loglevel error -nostdin -re \
  -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -c:v libx264 -profile:v baseline -preset ultrafast -tune zerolatency -g 30 \
  -b:v 900k -maxrate 900k -bufsize 900k -c:a aac -b:a 64k -t 900 \
  -f flv "rtmp://127.0.0.1:$RTMP_PORT/live/bench" &
pub_pid=$!
sleep 3

"$BENCH_BIN" whep --url "http://127.0.0.1:$HTTP_PORT/whep/bench" \
  --metrics-url "http://127.0.0.1:$HTTP_PORT/metrics" --server-pid "$server_pid" "$@"
echo "server log: $dir/server.err" >&2
