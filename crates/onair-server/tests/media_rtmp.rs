//! Live video end to end, SRS-style: ffmpeg publishes a test pattern with a tone over
//! RTMP; ffmpeg/ffprobe read it back over HTTP-FLV and RTMP play and the outputs are
//! checked (streams, codecs, size, duration, monotonic timestamps); push auth,
//! one publisher per stream, stats, metrics and stream callbacks.

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use media_util::*;
use serde_json::Value;

#[tokio::test]
async fn push_then_watch_over_http_flv_and_rtmp() {
    let s = Server::start(&media_toml("")).await;
    let mut publisher = publish(&push_url(&s, "cam1"), 14);
    let live = wait_live(&s, "cam1").await;
    assert_eq!((live["width"].as_u64(), live["audioCodec"].as_str()), (Some(640), Some("aac")), "{live}");

    let dir = tempfile::TempDir::new().unwrap();
    let (flv_file, rtmp_file) = (dir.path().join("flv.flv"), dir.path().join("rtmp.flv"));
    let flv_url = format!("http://127.0.0.1:{}/live/cam1.flv", s.port);
    let rtmp_url = format!("rtmp://127.0.0.1:{}/live/cam1", s.rtmp_port);
    let (a, b, stats) = tokio::join!(record(&flv_url, 4.0, &flv_file), record(&rtmp_url, 4.0, &rtmp_file), async {
        // While both viewers watch: one per protocol, and the measured rates.
        tokio::time::sleep(Duration::from_secs(3)).await;
        s.http("GET", "/api/v1/streams", None).await
    });
    assert!(a && b, "recording failed (flv {a}, rtmp {b}); server: {:?}", s.stderr());
    assert_av(&probe(&flv_file).await, 3.5, "HTTP-FLV");
    assert_av(&probe(&rtmp_file).await, 3.5, "RTMP play");

    let (status, list) = stats;
    assert_eq!(status, 200);
    let st = &list["streams"][0];
    assert_eq!(st["name"], "cam1");
    assert_eq!((st["viewers"]["flv"].as_u64(), st["viewers"]["rtmp"].as_u64()), (Some(1), Some(1)), "{st}");
    let fps = st["videoFps"].as_f64().unwrap();
    assert!((25.0..=35.0).contains(&fps), "video fps {fps}");
    let bps = st["bitrateBps"].as_u64().unwrap();
    assert!((100_000..=3_000_000).contains(&bps), "bitrate {bps}");
    assert!(st.get("streamParam").is_none() && !st.to_string().contains("txSecret"), "no secrets in public stats");
    let metrics = s.metrics().await;
    assert!(metrics.contains("onair_stream_bitrate_bps{stream=\"cam1\"}"), "metrics: {metrics}");

    // Not published: 404 over HTTP, a refused play over RTMP.
    let (status, _) = s.http_raw("GET", "/live/nobody.flv", None).await;
    assert_eq!(status, 404);
    assert!(!record(&format!("rtmp://127.0.0.1:{}/live/nobody", s.rtmp_port), 1.0, &dir.path().join("x.flv")).await);

    let _ = publisher.kill().await;
    eventually("stream ends when the publisher goes", T, || async {
        s.http("GET", "/api/v1/streams/cam1", None).await.0 == 404
    })
    .await;
}

#[tokio::test]
async fn push_auth_refuses_wrong_expired_and_missing_signatures() {
    let s = Server::start(&media_toml("")).await;
    let future = format!("{:X}", now_secs() + 600);
    let past = format!("{:X}", now_secs() - 10);
    let cases = [
        ("wrong key", signed(&s, "a1", &future, "not-the-key")),
        ("expired", signed(&s, "a1", &past, PUSH_KEY)),
        ("missing", format!("rtmp://127.0.0.1:{}/live/a1", s.rtmp_port)),
        ("signed for another stream", signed(&s, "a2", &future, PUSH_KEY).replace("/a2?", "/a1?")),
    ];
    for (what, url) in cases {
        let mut p = publish(&url, 5);
        let status = exit_within(&mut p, Duration::from_secs(8)).await;
        assert!(status.is_some_and(|st| !st.success()), "{what}: ffmpeg should be refused, got {status:?}");
        assert_eq!(s.http("GET", "/api/v1/streams/a1", None).await.0, 404, "{what}");
    }
    assert!(s.stderr().iter().any(|l| l.contains("publish refused")), "refusals are logged");

    // `onair push-url` prints a URL that works (with the real port swapped in).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onair"))
        .args(["push-url", "--stream", "a1", "--config"])
        .arg(s.config_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8(out.stdout).unwrap();
    let rest = printed.trim().split_once("/live/").unwrap().1;
    assert!(rest.starts_with("a1?txSecret="), "{printed}");
    let mut p = publish(&format!("rtmp://127.0.0.1:{}/live/{rest}", s.rtmp_port), 6);
    wait_live(&s, "a1").await;
    let _ = p.kill().await;

    // Run where there is no data dir: the error says where it looked and how to point
    // at the server's data; with ONAIR_DATA_DIR it finds the key like `serve` does.
    let elsewhere = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onair"))
        .args(["push-url", "--stream", "a1"])
        .current_dir(elsewhere.path())
        .env_remove("ONAIR_DATA_DIR")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    let looked = elsewhere.path().join("onair-data").join("push.key");
    assert!(err.contains(&looked.display().to_string()) && err.contains("ONAIR_DATA_DIR"), "{err}");
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::write(data_dir.path().join("push.key"), "0123456789abcdef\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_onair"))
        .args(["push-url", "--stream", "a1"])
        .current_dir(elsewhere.path())
        .env("ONAIR_DATA_DIR", data_dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let printed = String::from_utf8_lossy(&out.stdout);
    let tx_time = printed.trim().rsplit_once("txTime=").unwrap().1;
    let expected = onair_auth::tx_secret("0123456789abcdef", "a1", tx_time);
    assert!(printed.contains(&format!("txSecret={expected}")), "signed with the key found there: {printed}");
}

#[tokio::test]
async fn signed_play_urls_when_play_auth_is_on() {
    let s = Server::start(&media_toml("play_auth = true\nplay_key = \"playkey\"")).await;
    let mut p = publish(&push_url(&s, "paid"), 10);
    wait_live(&s, "paid").await;
    let (status, _) = s.http_raw("GET", "/live/paid.flv", None).await;
    assert_eq!(status, 403, "unsigned HTTP-FLV");
    let tx_time = format!("{:X}", now_secs() + 600);
    let wrong = onair_auth::tx_secret(PUSH_KEY, "paid", &tx_time);
    let (status, _) = s.http_raw("GET", &format!("/live/paid.flv?txSecret={wrong}&txTime={tx_time}"), None).await;
    assert_eq!(status, 403, "signed with the push key, not the play key");
    let dir = tempfile::TempDir::new().unwrap();
    let ok = onair_auth::tx_secret("playkey", "paid", &tx_time);
    let file = dir.path().join("paid.flv");
    let url = format!("http://127.0.0.1:{}/live/paid.flv?txSecret={ok}&txTime={tx_time}", s.port);
    assert!(record(&url, 1.5, &file).await, "signed HTTP-FLV plays");
    assert_av(&probe(&file).await, 1.0, "signed HTTP-FLV");
    let rtmp_unsigned = format!("rtmp://127.0.0.1:{}/live/paid", s.rtmp_port);
    assert!(!record(&rtmp_unsigned, 1.0, &dir.path().join("x.flv")).await, "unsigned RTMP play refused");
    let rtmp_signed = format!("rtmp://127.0.0.1:{}/live/paid?txSecret={ok}&txTime={tx_time}", s.rtmp_port);
    assert!(record(&rtmp_signed, 1.5, &dir.path().join("y.flv")).await, "signed RTMP play");
    let _ = p.kill().await;
}

#[tokio::test]
async fn a_second_publisher_is_refused_and_the_first_keeps_going() {
    let s = Server::start(&media_toml("")).await;
    let mut first = publish(&push_url(&s, "solo"), 12);
    wait_live(&s, "solo").await;
    let mut second = publish(&push_url(&s, "solo"), 5);
    let status = exit_within(&mut second, Duration::from_secs(8)).await;
    assert!(status.is_some_and(|st| !st.success()), "second publisher must be refused: {status:?}");
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("solo.flv");
    assert!(record(&format!("http://127.0.0.1:{}/live/solo.flv", s.port), 2.0, &file).await);
    assert_av(&probe(&file).await, 1.5, "first publisher after the refusal");
    let _ = first.kill().await;
}

#[derive(Clone, Default)]
struct Calls(Arc<Mutex<Vec<Value>>>);

#[tokio::test]
async fn stream_callbacks_in_the_streaming_service_format() {
    let calls = Calls::default();
    let app = axum::Router::new()
        .route(
            "/cb",
            axum::routing::post(
                |axum::extract::State(c): axum::extract::State<Calls>, body: axum::Json<Value>| async move {
                    c.0.lock().unwrap().push(body.0);
                    axum::Json(serde_json::json!({"code": 0}))
                },
            ),
        )
        .with_state(calls.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let s = Server::start(&media_toml(&format!(
        "callback_url = \"http://127.0.0.1:{port}/cb\"\ncallback_key = \"mycallbackkey\""
    )))
    .await;
    let mut p = publish(&push_url(&s, "hooked"), 3);
    wait_live(&s, "hooked").await;
    let _ = exit_within(&mut p, Duration::from_secs(10)).await;
    let find = |event: u64| calls.0.lock().unwrap().iter().find(|c| c["event_type"] == event).cloned();
    eventually("publish and unpublish callbacks", T, || async { find(1).is_some() && find(0).is_some() }).await;
    let (start, stop) = (find(1).unwrap(), find(0).unwrap());
    for c in [&start, &stop] {
        assert_eq!(c["stream_id"], "hooked");
        let t = c["t"].as_u64().unwrap();
        assert_eq!(c["sign"].as_str().unwrap(), onair_auth::stream_callback_sign("mycallbackkey", t));
        assert!(t > now_secs(), "t is the signature's expiry");
    }
    assert_eq!(start["sequence"], stop["sequence"]);
    assert!(start["stream_param"].as_str().unwrap().contains("txTime="));
    let ms: u64 = stop["push_duration"].as_str().unwrap().parse().unwrap();
    assert!((1_500..=10_000).contains(&ms), "push_duration {ms}");
}
