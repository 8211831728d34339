#!/bin/bash
# Run from the repo root after `cargo build`; ports 18481-18484 must be free. Prints the
# relay child's CPU ticks over 30 s of a live relay between two local OnAir processes.
# CPU cost of one relay child (ffmpeg -c copy) for a 640x360 30 fps ~500 kbit/s stream.
set -e
BIN=${ONAIR_BIN:-target/debug/onair}
D=$(mktemp -d); S=$(mktemp -d)
cat > $D/onair.toml <<T
data_dir = "$D"
[http]
listen = "127.0.0.1:18481"
[rtmp]
listen = "127.0.0.1:18482"
auth = false
[webrtc]
listen = "127.0.0.1:0"
[media]
record = false
snapshot_secs = 0
T
cat > $S/onair.toml <<T
data_dir = "$S"
[http]
listen = "127.0.0.1:18483"
[app]
api_token = "tok"
[rtmp]
listen = "127.0.0.1:18484"
auth = false
[webrtc]
listen = "127.0.0.1:0"
[media]
record = false
snapshot_secs = 0
T
$BIN serve --config $D/onair.toml >/dev/null 2>&1 & DP=$!
$BIN serve --config $S/onair.toml >/dev/null 2>&1 & SP=$!
sleep 3
curl -s -XPOST -H 'Authorization: Bearer tok' -H 'content-type: application/json' localhost:18483/api/v1/rooms -d '{"roomId":"cam","name":"cam"}' >/dev/null
curl -s -XPOST -H 'Authorization: Bearer tok' -H 'content-type: application/json' localhost:18483/api/v1/rooms/cam/relays -d '{"url":"rtmp://127.0.0.1:18482/live/out"}' >/dev/null
ffmpeg -hide_banner -loglevel error -nostdin -re -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=44100 -c:v libx264 -preset ultrafast -tune zerolatency -g 30 -b:v 500k -c:a aac -t 40 -f flv rtmp://127.0.0.1:18484/live/cam &
FP=$!
sleep 8
RP=$(pgrep -f "ffmpeg.*-c copy.*18482/live/out" | head -1)
T0=$(awk '{print $14+$15}' /proc/$RP/stat); RSS=$(awk '/VmRSS/{print $2}' /proc/$RP/status)
sleep 30
T1=$(awk '{print $14+$15}' /proc/$RP/stat)
echo "relay child cpu_ticks_per_30s=$((T1-T0)) (clk_tck=$(getconf CLK_TCK)) rss_kb=$RSS"
curl -s -H 'Authorization: Bearer tok' localhost:18483/api/v1/rooms/cam/relays | head -c 400; echo
kill $FP $SP $DP 2>/dev/null; wait 2>/dev/null; rm -rf $D $S
