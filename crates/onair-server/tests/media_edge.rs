//! Media edges, black-box: two real `onair` processes, an origin and an edge
//! (`[media] origin`); ffmpeg publishes a test pattern to the origin, ffmpeg/ffprobe
//! and a plain HTTP client read HTTP-FLV, RTMP and LL-HLS from the edge. Skips with a
//! message when ffmpeg is not installed (CI installs it).

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Server;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use media_util::{assert_av, have_ffmpeg, media_toml, probe, push_url, record, wait_live};
use serde_json::Value;
use tokio::task::JoinHandle;

/// Seconds an edge keeps a pull after its last viewer (the tests' setting).
const IDLE_SECS: u64 = 2;

async fn edge_of(origin: &Server, extra_media: &str) -> Server {
    let url = format!("http://127.0.0.1:{}", origin.port);
    Server::start_with_env(
        &media_toml(&format!("snapshot_secs = 0\n{extra_media}")),
        &[("ONAIR_MEDIA__ORIGIN", url.as_str()), ("ONAIR_MEDIA__ORIGIN_IDLE_SECS", &IDLE_SECS.to_string())],
    )
    .await
}

struct Got {
    status: u16,
    headers: hyper::HeaderMap,
    body: Bytes,
    took: Duration,
}

impl Got {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn cache(&self) -> &str {
        self.headers.get("cache-control").map_or("", |v| v.to_str().unwrap())
    }
}

async fn get(port: u16, path: &str) -> Got {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let t0 = Instant::now();
    let uri: hyper::Uri = format!("http://127.0.0.1:{port}{path}").parse().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri))
        .await
        .unwrap_or_else(|_| panic!("GET {path} timed out"))
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Got { status, headers, body, took: t0.elapsed() }
}

/// An HTTP-FLV viewer that holds its connection and counts bytes until the response
/// ends (the task returns) or it is aborted (the viewer leaves).
fn flv_viewer(port: u16, name: &str) -> (JoinHandle<(u16, String, usize)>, tokio::sync::watch::Receiver<usize>) {
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    let uri: hyper::Uri = format!("http://127.0.0.1:{port}/live/{name}.flv").parse().unwrap();
    let task = tokio::spawn(async move {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let resp = client.get(uri).await.unwrap();
        let status = resp.status().as_u16();
        let cache = resp.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let mut body = resp.into_body();
        let mut n = 0;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(d) = frame.into_data() {
                n += d.len();
                let _ = tx.send(n);
            }
        }
        (status, cache, n)
    });
    (task, rx)
}

/// Whether a [`flv_viewer`] received more than `min` bytes within 8 s. (The watch's
/// read guard is dropped here at once: held, it would block the viewer's next send.)
async fn got_bytes(rx: &mut tokio::sync::watch::Receiver<usize>, min: usize) -> bool {
    let wait = async { rx.wait_for(|n| *n > min).await.is_ok() };
    tokio::time::timeout(Duration::from_secs(8), wait).await.unwrap_or(false)
}

/// A stream-callback receiver: every JSON body posted to it.
async fn callback_sink() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let calls: Arc<Mutex<Vec<Value>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/cb",
            axum::routing::post(
                |axum::extract::State(c): axum::extract::State<Arc<Mutex<Vec<Value>>>>, body: axum::Json<Value>| async move {
                    c.lock().unwrap().push(body.0);
                    axum::Json(serde_json::json!({"code": 0}))
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (port, calls)
}

async fn stats(s: &Server, name: &str) -> (u16, Value) {
    s.http("GET", &format!("/api/v1/streams/{name}"), None).await
}

fn viewers(v: &Value, p: &str) -> u64 {
    v["viewers"][p].as_u64().unwrap_or(0)
}

fn total_viewers(v: &Value) -> u64 {
    ["rtmp", "flv", "hls", "relay"].iter().map(|p| viewers(v, p)).sum()
}

async fn wait_for<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let deadline = Instant::now() + within;
    loop {
        let Some(state) = check().await else { return };
        assert!(Instant::now() < deadline, "{what} (after {within:?}): {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_relays_one_pull_to_every_viewer_and_drops_it_when_they_leave() {
    if !have_ffmpeg() {
        return;
    }
    // Both report stream events to a backend; only the origin may (it is the stream's
    // origin: the edge's relay must not move room state or send callbacks).
    let (origin_cb, origin_calls) = callback_sink().await;
    let (edge_cb, edge_calls) = callback_sink().await;
    let origin = Server::start(&media_toml(&format!("callback_url = \"http://127.0.0.1:{origin_cb}/cb\""))).await;
    let edge = edge_of(&origin, &format!("callback_url = \"http://127.0.0.1:{edge_cb}/cb\"")).await;
    let origin_url = format!("http://127.0.0.1:{}", origin.port);

    // A stream the origin does not have: 404 at once, never cached.
    for path in ["/live/nothing.flv", "/live/nothing.m3u8"] {
        let g = get(edge.port, path).await;
        assert_eq!(g.status, 404, "{path}: {}", g.text());
        assert!(g.took < Duration::from_secs(2), "{path} took {:?}", g.took);
        assert_eq!(g.cache(), "no-store", "{path}");
    }

    eprintln!("[edge test] published");
    let mut ff = media_util::publish(&push_url(&origin, "cam"), 60);
    wait_live(&origin, "cam").await;
    let dir = tempfile::TempDir::new().unwrap();

    // Three viewers on the edge at once (HTTP-FLV, RTMP, HTTP-FLV): the first ones
    // wait together for the one pull.
    let flv_file = dir.path().join("edge.flv");
    let rtmp_file = dir.path().join("edge-rtmp.flv");
    let edge_flv = format!("http://127.0.0.1:{}/live/cam.flv", edge.port);
    let edge_rtmp = format!("rtmp://127.0.0.1:{}/live/cam", edge.rtmp_port);
    let rec_flv = tokio::spawn({
        let (url, out) = (edge_flv.clone(), flv_file.clone());
        async move { record(&url, 8.0, &out).await }
    });
    let rec_rtmp = tokio::spawn({
        let (url, out) = (edge_rtmp.clone(), rtmp_file.clone());
        async move { record(&url, 8.0, &out).await }
    });
    eprintln!("[edge test] viewers started");
    let (raw, mut raw_bytes) = flv_viewer(edge.port, "cam");
    wait_for("three viewers on the edge", Duration::from_secs(10), || async {
        let (status, v) = stats(&edge, "cam").await;
        (status != 200 || total_viewers(&v) < 3).then(|| format!("{status} {v}"))
    })
    .await;
    eprintln!("[edge test] three viewers");
    // The origin sees one relay, not three viewers.
    let (_, o) = stats(&origin, "cam").await;
    assert_eq!((viewers(&o, "relay"), viewers(&o, "flv"), viewers(&o, "rtmp")), (1, 0, 0), "origin: {o}");
    assert!(o["origin"].is_null(), "published at the origin: {o}");
    let (_, e) = stats(&edge, "cam").await;
    assert_eq!(e["origin"], origin_url.as_str(), "edge: {e}");
    assert_eq!(e["videoCodec"], "h264", "{e}");
    assert!(got_bytes(&mut raw_bytes, 10_000).await, "the raw HTTP-FLV viewer got no media");

    eprintln!("[edge test] raw ok");
    // What the edge's viewers got: H.264 + AAC, monotonic timestamps.
    assert!(rec_flv.await.unwrap(), "recording HTTP-FLV from the edge failed; edge stderr {:?}", edge.stderr());
    assert!(rec_rtmp.await.unwrap(), "recording RTMP from the edge failed; edge stderr {:?}", edge.stderr());
    assert_av(&probe(&flv_file).await, 4.0, "edge HTTP-FLV");
    assert_av(&probe(&rtmp_file).await, 4.0, "edge RTMP");

    eprintln!("[edge test] recorded");
    // LL-HLS from the edge, with CDN cache headers.
    let deadline = Instant::now() + Duration::from_secs(15);
    let playlist = loop {
        let g = get(edge.port, "/live/cam.m3u8").await;
        if g.status == 200 && g.text().matches("#EXTINF").count() >= 2 {
            assert_eq!(g.cache(), "public, max-age=1");
            break g.text();
        }
        assert!(Instant::now() < deadline, "edge playlist: {} {}", g.status, g.text());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    eprintln!("[edge test] playlist");
    let map = playlist.lines().find(|l| l.starts_with("#EXT-X-MAP")).unwrap();
    let base = map.split("URI=\"").nth(1).unwrap().trim_end_matches("init.mp4\"").to_string();
    let sid = base.trim_end_matches('/').rsplit('/').next().unwrap().to_string();
    assert!(sid.contains('-'), "a relayed session id names the edge: {sid}");
    let init = get(edge.port, &format!("/live/{base}init.mp4")).await;
    assert_eq!((init.status, init.cache()), (200, "public, max-age=31536000, immutable"));
    let seg = playlist.lines().find(|l| l.ends_with(".m4s") && !l.starts_with('#')).unwrap();
    let g = get(edge.port, &format!("/live/{seg}")).await;
    assert_eq!((g.status, g.cache()), (200, "public, max-age=31536000, immutable"), "{seg}");
    let part = playlist.lines().find(|l| l.starts_with("#EXT-X-PART:")).unwrap();
    let part = part.split("URI=\"").nth(1).unwrap().split('"').next().unwrap();
    let g = get(edge.port, &format!("/live/{part}")).await;
    assert_eq!((g.status, g.cache()), (200, "public, max-age=31536000, immutable"), "{part}");
    let g = get(edge.port, &format!("/live/{base}999999.m4s")).await;
    assert_eq!((g.status, g.cache()), (404, "no-store"));
    let last_msn = playlist.lines().filter(|l| l.ends_with(".m4s") && !l.starts_with('#')).count() as u64;
    let media_sequence: u64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .map_or(0, |v| v.trim().parse().unwrap());
    let g = get(edge.port, &format!("/live/cam.m3u8?_HLS_msn={}", media_sequence + last_msn - 1)).await;
    assert_eq!((g.status, g.cache()), (200, "public, max-age=6"), "blocking reload, ready at once");
    let g = get(edge.port, "/live/cam.m3u8?_HLS_part=1").await;
    assert_eq!((g.status, g.cache()), (400, "no-store"));
    eprintln!("[edge test] headers");
    let (status, flv_cache) = flv_head(edge.port).await;
    assert_eq!((status, flv_cache.as_str()), (200, "no-cache, no-store"), "HTTP-FLV is an endless body");
    eprintln!("[edge test] flv head");
    let out = tokio::process::Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_streams", "-show_format"])
        .arg(format!("http://127.0.0.1:{}/live/cam.m3u8", edge.port))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "ffprobe edge HLS: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let codecs: Vec<&str> = v["streams"].as_array().unwrap().iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "edge HLS codecs {codecs:?}");

    eprintln!("[edge test] ffprobe hls");
    // The edge is not the stream's origin: it records nothing.
    assert!(!edge.data_dir().join("recordings").join("cam").exists(), "an edge must not record a relayed stream");

    // The last counted viewer leaves, but an HLS player goes on polling: its requests
    // (stateless, not counted) keep the pull well past origin_idle_secs.
    raw.abort();
    let polling_until = Instant::now() + Duration::from_secs(IDLE_SECS + 2);
    while Instant::now() < polling_until {
        assert_eq!(get(edge.port, "/live/cam.m3u8").await.status, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (_, o) = stats(&origin, "cam").await;
    assert_eq!(viewers(&o, "relay"), 1, "an HLS-only audience keeps the pull: {o}");

    // Every viewer leaves: within origin_idle_secs + slack the edge drops its pull.
    let t0 = Instant::now();
    wait_for("the origin's relay viewer to go", Duration::from_secs(IDLE_SECS + 6), || async {
        let (_, o) = stats(&origin, "cam").await;
        (total_viewers(&o) != 0).then(|| o.to_string())
    })
    .await;
    let (status, e) = stats(&edge, "cam").await;
    assert_eq!(status, 404, "the relayed stream is gone from the edge: {e}");
    assert!(t0.elapsed() >= Duration::from_secs(IDLE_SECS - 1), "dropped before origin_idle_secs");

    eprintln!("[edge test] dropped");
    // The next viewer starts a new pull.
    let (again, mut n) = flv_viewer(edge.port, "cam");
    assert!(got_bytes(&mut n, 1000).await, "a new viewer after the pull ended got no media");
    let (_, o) = stats(&origin, "cam").await;
    assert_eq!(viewers(&o, "relay"), 1, "{o}");

    eprintln!("[edge test] new pull");
    // The publisher stops: the edge's viewer sees the end of its response (no hang).
    let _ = ff.kill().await;
    let (status, _, bytes) = tokio::time::timeout(Duration::from_secs(15), again)
        .await
        .expect("edge viewer not ended after the origin's stream ended")
        .unwrap();
    assert!(status == 200 && bytes > 1000);

    eprintln!("[edge test] publisher stop ok");
    // The origin goes away mid-stream: the edge's viewers get EOF, the edge lives on and
    // answers 404 promptly while the origin is down.
    let mut ff = media_util::publish(&push_url(&origin, "cam2"), 60);
    wait_live(&origin, "cam2").await;
    let (viewer, mut n) = flv_viewer(edge.port, "cam2");
    assert!(got_bytes(&mut n, 1000).await, "the cam2 viewer got no media");
    drop(origin); // killed (SIGKILL), not a graceful stop
    let _ = ff.kill().await;
    let (status, _, _) = tokio::time::timeout(Duration::from_secs(15), viewer)
        .await
        .expect("edge viewer not ended after the origin went away")
        .unwrap();
    assert_eq!(status, 200);
    let (status, _) = edge.http("GET", "/healthz", None).await;
    assert_eq!(status, 200);
    let g = get(edge.port, "/live/cam2.flv").await;
    assert_eq!(g.status, 404);
    assert!(g.took < Duration::from_secs(6), "took {:?}", g.took);
    assert!(!edge.stderr().iter().any(|l| l.contains("panicked")), "edge stderr: {:?}", edge.stderr());
    // The origin reported its publishes and unpublishes; the edge, which relayed and
    // ended three sessions meanwhile, reported nothing.
    let events: Vec<u64> = origin_calls.lock().unwrap().iter().filter_map(|c| c["event_type"].as_u64()).collect();
    assert!(events.contains(&1) && events.contains(&0), "origin callbacks {events:?}");
    assert_eq!(edge_calls.lock().unwrap().len(), 0, "edge callbacks: {:?}", edge_calls.lock().unwrap());
}

/// Status and Cache-Control of an HTTP-FLV response (the body is dropped at once).
async fn flv_head(port: u16) -> (u16, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://127.0.0.1:{port}/live/cam.flv").parse().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await.unwrap().unwrap();
    let cache = resp.headers().get("cache-control").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
    (resp.status().as_u16(), cache)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_signatures_are_checked_at_the_edge_and_forwarded_to_the_origin() {
    if !have_ffmpeg() {
        return;
    }
    // Same play key (the push key) on both: the edge checks a viewer's signature and
    // passes it on, so the origin's own check accepts the pull.
    let origin = Server::start(&media_toml("play_auth = true")).await;
    let edge = edge_of(&origin, "play_auth = true").await;
    let mut ff = media_util::publish(&push_url(&origin, "paid"), 30);
    wait_live(&origin, "paid").await;
    let g = get(edge.port, "/live/paid.flv").await;
    assert_eq!(g.status, 403, "unsigned play refused by the edge: {}", g.text());
    let tx_time = format!("{:X}", common::now_secs() + 600);
    let secret = onair_auth::tx_secret(media_util::PUSH_KEY, "paid", &tx_time);
    let path = format!("/live/paid.flv?txSecret={secret}&txTime={tx_time}");
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let uri: hyper::Uri = format!("http://127.0.0.1:{}{path}", edge.port).parse().unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut n = 0;
    while n < 10_000 {
        let frame = tokio::time::timeout(Duration::from_secs(8), body.frame()).await.unwrap().unwrap().unwrap();
        n += frame.into_data().map_or(0, |d| d.len());
    }
    let (_, o) = stats(&origin, "paid").await;
    assert_eq!(viewers(&o, "relay"), 1, "{o}");
    // An edge without play_auth forwards no signature: the origin refuses the pull and
    // the viewer gets a 404 at once.
    let open_edge = edge_of(&origin, "").await;
    let g = get(open_edge.port, "/live/paid.flv").await;
    assert_eq!(g.status, 404, "{}", g.text());
    assert!(g.took < Duration::from_secs(2), "took {:?}", g.took);
    let _ = ff.kill().await;
}

/// A free loopback port (bound, then released for a server to take).
fn free_port() -> u16 {
    common::reserved_port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_that_are_each_others_origin_answer_404_at_once() {
    let (pa, pb) = (free_port(), free_port());
    let (la, lb) = (format!("127.0.0.1:{pa}"), format!("127.0.0.1:{pb}"));
    let (oa, ob) = (format!("http://127.0.0.1:{pb}"), format!("http://127.0.0.1:{pa}"));
    let a = Server::start_with_env(
        &media_toml(""),
        &[("ONAIR_HTTP__LISTEN", la.as_str()), ("ONAIR_MEDIA__ORIGIN", oa.as_str())],
    )
    .await;
    let b = Server::start_with_env(
        &media_toml(""),
        &[("ONAIR_HTTP__LISTEN", lb.as_str()), ("ONAIR_MEDIA__ORIGIN", ob.as_str())],
    )
    .await;
    // A pulls from B, B from A, A sees itself in the chain: 508 → 404 down the chain,
    // not a wait on its own pull.
    let g = get(a.port, "/live/ghost.flv").await;
    assert_eq!(g.status, 404, "{}", g.text());
    assert!(g.took < Duration::from_secs(3), "took {:?}", g.took);
    let g = get(b.port, "/live/ghost.m3u8").await;
    assert_eq!(g.status, 404, "{}", g.text());
    assert!(g.took < Duration::from_secs(4), "took {:?}", g.took);
}

#[tokio::test]
async fn an_origin_that_is_the_server_itself_is_refused_at_start() {
    let port = free_port();
    let dir = tempfile::TempDir::new().unwrap();
    let config = dir.path().join("onair.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[http]\nlisten = \"127.0.0.1:{port}\"\n[rtmp]\nlisten = \"127.0.0.1:0\"\n\
             [webrtc]\nlisten = \"127.0.0.1:0\"\n\
             [app]\nsdkappid = {}\nsecret_key = \"{}\"\nadmins = [\"{}\"]\n\
             [media]\norigin = \"http://localhost:{port}\"\n",
            dir.path().display().to_string(),
            common::SDKAPPID,
            common::SECRET_KEY,
            common::ADMIN,
        ),
    )
    .unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_onair"))
            .args(["serve", "--config"])
            .arg(&config)
            .env("ONAIR_LOG", "warn")
            .output(),
    )
    .await
    .expect("onair should exit at once")
    .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is this server itself"), "stderr: {stderr}");
}
