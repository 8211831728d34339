//! LL-HLS delivery latency probe (a measurement, not a test).
//!
//! Starts `ffmpeg -re` publishing a 30 fps test pattern with a 1 s GOP to a running OnAir,
//! notes the wall time T0 it started, then behaves like an LL-HLS client: it requests
//! each part as soon as the playlist's preload hint names it (the server holds the
//! request until the part exists) and, per part, computes
//! `arrival − (T0 + timestamp of the newest video frame in the part)`.
//! Two clocks for T0 bracket the truth: the wall time just before ffmpeg is spawned (its
//! start-up then counts as latency: an upper bound) and the publish start the server
//! reports (`startedAt` of `/api/v1/streams/{name}`, after ffmpeg's clock began: a lower
//! bound). A player adds its hold-back (PART-HOLD-BACK) on top.
//!
//! ```text
//! onair serve --config bench.toml       # [rtmp] listen=127.0.0.1:1935, auth=false
//! cargo run --release -p onair-server --example hls_latency -- 127.0.0.1:8080 127.0.0.1:1935 30
//! ```

#![allow(clippy::unwrap_used)]

mod latency_common;

use std::time::{Duration, Instant};

use latency_common::{client, get, percentiles, publish_started, spawn_publisher, wall_ms};

/// Decode time (ms) of the last video sample of a part written by OnAir's muxer
/// (track 1 first: tfdt base + the durations of all but the last trun entry).
fn last_video_ms(part: &[u8]) -> Option<f64> {
    let find = |tag: &[u8], from: usize| part[from..].windows(4).position(|w| w == tag).map(|p| p + from);
    let t = find(b"tfdt", 0)?;
    let base = if part[t + 4] == 1 {
        u64::from_be_bytes(part[t + 8..t + 16].try_into().ok()?)
    } else {
        u64::from(u32::from_be_bytes(part[t + 8..t + 12].try_into().ok()?))
    };
    let r = find(b"trun", t)?;
    let count = u32::from_be_bytes(part[r + 8..r + 12].try_into().ok()?) as usize;
    // OnAir writes flags 0xf01: data offset, then duration/size/flags/cts per sample.
    let mut at = r + 16;
    let mut dts = base;
    for _ in 0..count.saturating_sub(1) {
        dts += u64::from(u32::from_be_bytes(part[at..at + 4].try_into().ok()?));
        at += 16;
    }
    Some(dts as f64 / 90.0)
}

fn hint(playlist: &str) -> Option<(String, u64, u64)> {
    let line = playlist.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:"))?;
    let uri = line.split("URI=\"").nth(1)?.trim_end_matches('"');
    let (dir, file) = uri.rsplit_once('/')?;
    let (m, p) = file.trim_end_matches(".m4s").split_once('.')?;
    Some((format!("{dir}/"), m.parse().ok()?, p.parse().ok()?))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let http = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:8080".into());
    let rtmp = args.get(2).cloned().unwrap_or_else(|| "127.0.0.1:1935".into());
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(30);
    let stream = format!("lat{}", std::process::id());
    let client = client();

    let t0 = Instant::now();
    let t0_wall = wall_ms();
    let mut ff = spawn_publisher(&rtmp, &stream, secs + 5);

    let base = format!("http://{http}/live/");
    // Wait for the first playlist.
    let (dir, mut msn, mut part) = loop {
        let (status, body) = get(&client, &format!("{base}{stream}.m3u8")).await;
        if status == 200
            && let Some(h) = hint(&String::from_utf8_lossy(&body))
        {
            break h;
        }
        assert!(t0.elapsed() < Duration::from_secs(20), "no playlist");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let published = publish_started(&client, &http, &stream, t0_wall).await;
    let mut samples: Vec<f64> = Vec::new();
    let until = t0 + Duration::from_secs(secs);
    while Instant::now() < until {
        let (status, body) = get(&client, &format!("{base}{dir}{msn}.{part}.m4s")).await;
        let arrival_ms = wall_ms() - t0_wall;
        if status == 200 {
            if let Some(ts) = last_video_ms(&body) {
                // Skip the first two segments: they include start-up.
                if msn >= 2 {
                    samples.push(arrival_ms - ts);
                }
            }
            part += 1;
        } else {
            // That part never came: its segment ended first. Next: the next segment's part 0.
            msn += 1;
            part = 0;
        }
    }
    let _ = ff.kill().await;
    let count = samples.len();
    let pct = percentiles(&mut samples);
    let startup = published - t0_wall;
    println!(
        "LL-HLS part delivery latency over {} parts (T0 = ffmpeg spawn; publish came {startup:.0} ms later): \
         p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; from publish start: p50 {:.0} ms, p99 {:.0} ms",
        count,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        pct(0.5) - startup,
        pct(0.99) - startup,
    );
}
