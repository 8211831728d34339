#!/usr/bin/env bash
# The comparison peer for the WHEP load benchmark: Debian's Janus WebRTC Gateway
# (streaming plugin) fed by ffmpeg with the same picture as bench/webrtc/whep-load.sh
# (640x360 30 fps H.264 baseline at 900 kbit/s, 1 s GOP) over plain RTP, plus Opus
# 64 kbit/s (Janus relays RTP; it does not transcode, so ffmpeg sends Opus), then
# `onair-bench whep --janus-mountpoint 1` with N viewers; Janus and ffmpeg are stopped
# afterwards (by their PIDs).
#
#   bench/webrtc/janus.sh [onair-bench whep flags...]
#
# Janus gathers no loopback candidates: everything runs on this host's address
# (IP, default: the first of `hostname -I`; IFACE, default: the interface holding it).
# Environment: BENCH_BIN, JANUS_HTTP_PORT (18088), VPORT (15004), APORT (15002).
set -euo pipefail
cd "$(dirname "$0")/../.."
BENCH_BIN=${BENCH_BIN:-target/release/onair-bench}
IP=${IP:-$(hostname -I | awk '{print $1}')}
IFACE=${IFACE:-$(ip -o -4 addr show | awk -v ip="$IP" 'index($4, ip"/") == 1 {print $2; exit}')}
JANUS_HTTP_PORT=${JANUS_HTTP_PORT:-18088}
VPORT=${VPORT:-15004}
APORT=${APORT:-15002}
# A benchmark peer, not a test dependency: installed here, not by .ci/run.
command -v janus >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq janus; }
dir=$(mktemp -d /tmp/janus-bench.XXXXXX)
ulimit -n 20000
for f in janus.jcfg janus.transport.http.jcfg janus.plugin.streaming.jcfg; do
  sed "s#@DIR@#$dir#g; s#@IFACE@#$IFACE#g; s#@IP@#$IP#g; s#@HTTP_PORT@#$JANUS_HTTP_PORT#g; s#@VPORT@#$VPORT#g; s#@APORT@#$APORT#g" \
    "bench/webrtc/janus/$f" >"$dir/$f"
done
janus -C "$dir/janus.jcfg" -F "$dir" >"$dir/janus.log" 2>&1 &
janus_pid=$!
cleanup() {
  kill "$janus_pid" 2>/dev/null || true
  [ -n "${pub_pid:-}" ] && kill "$pub_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
sleep 2

ffmpeg -hide_banner -loglevel error -nostdin -re \
  -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -map 0:v -c:v libx264 -profile:v baseline -preset ultrafast -tune zerolatency -g 30 \
  -b:v 900k -maxrate 900k -bufsize 900k -bsf:v h264_mp4toannexb -payload_type 96 -t 900 \
  -f rtp "rtp://$IP:$VPORT?pkt_size=1200" \
  -map 1:a -c:a libopus -b:a 64k -payload_type 111 -t 900 -f rtp "rtp://$IP:$APORT?pkt_size=1200" >/dev/null &
pub_pid=$!
sleep 3

"$BENCH_BIN" whep --url "http://$IP:$JANUS_HTTP_PORT/janus" --janus-mountpoint 1 --server-pid "$janus_pid" "$@"
echo "janus log: $dir/janus.log" >&2
