//! Helpers shared by the latency probes `hls_latency` and `flv_latency`: the ffmpeg publisher whose start wall time is T0, the publish start the server
//! reports, an HTTP client and percentiles. Not an example itself (no `main.rs`).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The plain-HTTP client both probes use.
pub type Http = Client<HttpConnector, Empty<Bytes>>;

/// A new HTTP/1.1 client.
pub fn client() -> Http {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET `url`, whole body.
pub async fn get(client: &Http, url: &str) -> (u16, Bytes) {
    let resp = client.get(url.parse().unwrap()).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// Wall-clock time in ms since the Unix epoch.
pub fn wall_ms() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64() * 1000.0
}

/// Spawns `ffmpeg -re` publishing 640x360 30 fps (1 s GOP, x264 veryfast zerolatency,
/// 600 kbps) + AAC for `secs` s to `rtmp://{rtmp}/live/{stream}`. Call [`wall_ms`] just
/// before: that is T0 (ffmpeg's clock starts after it, so T0 is an upper bound).
pub fn spawn_publisher(rtmp: &str, stream: &str, secs: u64) -> tokio::process::Child {
    tokio::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440", "-t", &secs.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-g", "30", "-b:v", "600k"])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(format!("rtmp://{rtmp}/live/{stream}"))
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg")
}

/// The publish start (`startedAt`, ms since the epoch) the server reports for `stream`,
/// or `fallback` when it reports none.
pub async fn publish_started(client: &Http, http: &str, stream: &str, fallback: f64) -> f64 {
    let (_, info) = get(client, &format!("http://{http}/api/v1/streams/{stream}")).await;
    let info: serde_json::Value = serde_json::from_slice(&info).unwrap_or_default();
    info["startedAt"].as_f64().or(info["stream"]["startedAt"].as_f64()).unwrap_or(fallback)
}

/// Polls `/api/v1/streams/{stream}` until the server reports the stream live (20 s at most).
#[allow(dead_code)] // hls_latency waits for its playlist instead.
pub async fn wait_live(client: &Http, http: &str, stream: &str) {
    let start = Instant::now();
    loop {
        let (status, body) = get(client, &format!("http://{http}/api/v1/streams/{stream}")).await;
        let info: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if status == 200 && (info["startedAt"].is_number() || info["stream"]["startedAt"].is_number()) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "stream {stream} not live");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sorts `samples` and returns the nearest-rank percentile function over them.
pub fn percentiles(samples: &mut [f64]) -> impl Fn(f64) -> f64 + '_ {
    samples.sort_by(|a, b| a.total_cmp(b));
    |p: f64| samples[((samples.len() - 1) as f64 * p) as usize]
}
