//! HTTP-FLV delivery latency and time-to-first-frame probe (a measurement, not a test;
//! same method, publisher and clocks as `hls_latency`).
//!
//! Starts `ffmpeg -re` publishing a 30 fps test pattern with a 1 s GOP to a running OnAir,
//! noting the wall time T0 just before. Then:
//! 1. latency: one viewer reads `/live/{stream}.flv` for `secs` s, reads the FLV tags as
//!    they arrive (onair-media's `FlvDemuxer`) and, per video frame, computes
//!    `arrival − (T0 + tag timestamp)`; the first 2 s of the connection (the GOP-cache
//!    burst, frames that are old on purpose) are skipped;
//! 2. time to first frame: `n` fresh connections, one after another, each timed from
//!    the request to the end of the first video keyframe tag (the GOP cache starts every
//!    viewer at a keyframe).
//!
//! Like `hls_latency`, T0 = the wall time before ffmpeg is spawned is an upper bound
//! (ffmpeg's start-up counts); the server's `startedAt` gives a lower bound.
//!
//! ```text
//! onair serve --config bench.toml       # [rtmp] listen=127.0.0.1:1935, auth=false
//! cargo run --release -p onair-server --example flv_latency -- 127.0.0.1:8080 127.0.0.1:1935 20 20
//! ```

#![allow(clippy::unwrap_used)]

mod latency_common;

use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use latency_common::{Http, client, percentiles, publish_started, spawn_publisher, wait_live, wall_ms};
use onair_media::flv::{FlvDemuxer, VideoBody, parse_video};

const TAG_VIDEO: u8 = 9;

/// What one viewer connection saw.
struct Viewer {
    /// Per video frame after `skip`: arrival − tag timestamp, ms since T0 (wall).
    samples: Vec<f64>,
    /// Request → end of the first video keyframe tag.
    first_keyframe: Option<Duration>,
}

/// Reads `url` as an HTTP-FLV viewer until `until` (or, with `first_only`, until the first
/// video keyframe). Frames arriving within `skip` of the request are not sampled.
async fn watch(client: &Http, url: &str, t0_wall: f64, until: Instant, skip: Duration, first_only: bool) -> Viewer {
    let requested = Instant::now();
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "GET {url}");
    let mut body = resp.into_body();
    let mut demux = FlvDemuxer::new();
    let mut out = Viewer { samples: Vec::new(), first_keyframe: None };
    while let Ok(Some(frame)) = tokio::time::timeout_at(until.into(), body.frame()).await {
        let Ok(data) = frame.unwrap().into_data() else { continue };
        // All tags completed by this chunk arrived now.
        let arrival = Instant::now();
        let arrival_ms = wall_ms() - t0_wall;
        demux.push(&data);
        while let Some(tag) = demux.next_tag().unwrap() {
            if tag.tag_type != TAG_VIDEO {
                continue;
            }
            let Ok(VideoBody::Frame { keyframe, .. }) = parse_video(&tag.body) else { continue };
            if keyframe && out.first_keyframe.is_none() {
                out.first_keyframe = Some(arrival - requested);
                if first_only {
                    return out;
                }
            }
            if arrival - requested >= skip {
                out.samples.push(arrival_ms - f64::from(tag.timestamp));
            }
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let http = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:8080".into());
    let rtmp = args.get(2).cloned().unwrap_or_else(|| "127.0.0.1:1935".into());
    let secs: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(20);
    let tries: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
    let stream = format!("flvlat{}", std::process::id());
    let client = client();

    let t0_wall = wall_ms();
    // Publish long enough for both phases (each first-frame try takes well under 1.5 s).
    let mut ff = spawn_publisher(&rtmp, &stream, secs + 2 * tries as u64 + 10);
    wait_live(&client, &http, &stream).await;
    let published = publish_started(&client, &http, &stream, t0_wall).await;
    let url = format!("http://{http}/live/{stream}.flv");

    let until = Instant::now() + Duration::from_secs(secs);
    let mut samples = watch(&client, &url, t0_wall, until, Duration::from_secs(2), false).await.samples;

    let mut ttff: Vec<f64> = Vec::new();
    for i in 0..tries {
        let until = Instant::now() + Duration::from_secs(10);
        // A fresh connection each time (the pooled client would reuse none anyway: each
        // body is dropped unfinished, which closes its connection).
        let v = watch(&client, &url, t0_wall, until, Duration::ZERO, true).await;
        ttff.push(v.first_keyframe.expect("no keyframe within 10 s").as_secs_f64() * 1000.0);
        // Spread the joins over the GOP (1 s): 5 steps of 0.2 s plus a little.
        tokio::time::sleep(Duration::from_millis(230 + 37 * (i as u64 % 5))).await;
    }
    let _ = ff.kill().await;

    let count = samples.len();
    let startup = published - t0_wall;
    let pct = percentiles(&mut samples);
    println!(
        "HTTP-FLV frame delivery latency over {count} video frames (T0 = ffmpeg spawn; publish came \
         {startup:.0} ms later): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms; from publish start: \
         p50 {:.0} ms, p99 {:.0} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0),
        pct(0.5) - startup,
        pct(0.99) - startup,
    );
    let pct = percentiles(&mut ttff);
    println!(
        "HTTP-FLV time to first frame (request → first video keyframe tag) over {tries} connections: \
         p50 {:.1} ms, p99 {:.1} ms, min {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(0.0),
        pct(1.0),
    );
}
