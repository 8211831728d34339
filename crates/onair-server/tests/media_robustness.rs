//! Bad publishers and bad viewers never hurt the other streams and viewers: garbage
//! on the RTMP port, a stalled handshake, a publisher killed mid-GOP, an unsupported
//! codec, a viewer that stops reading.

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::time::Duration;

use common::*;
use media_util::*;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn bad_publishers_leave_other_streams_alone() {
    let s = Server::start(&media_toml("")).await;
    let mut good = publish(&push_url(&s, "good"), 16);
    wait_live(&s, "good").await;

    // Garbage instead of a handshake, garbage after a valid-looking C0, and a
    // connection that says nothing at all.
    let mut junk = tokio::net::TcpStream::connect(("127.0.0.1", s.rtmp_port)).await.unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut junk2 = tokio::net::TcpStream::connect(("127.0.0.1", s.rtmp_port)).await.unwrap();
    let mut bytes = vec![3u8];
    bytes.extend((0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    let _ = junk2.write_all(&bytes).await;
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", s.rtmp_port)).await.unwrap();

    // A publisher killed in the middle of a GOP.
    let mut doomed = publish(&push_url(&s, "doomed"), 20);
    wait_live(&s, "doomed").await;
    tokio::time::sleep(Duration::from_millis(450)).await;
    doomed.start_kill().unwrap();
    eventually("the killed stream ends", T, || async { s.http("GET", "/api/v1/streams/doomed", None).await.0 == 404 })
        .await;

    // An unsupported codec (Sorenson H.263 + MP3): refused with a clear log line.
    let mut old = publish_with(&push_url(&s, "oldcodec"), 5, &["-c:v", "flv", "-c:a", "libmp3lame"]);
    let status = exit_within(&mut old, Duration::from_secs(8)).await;
    assert!(status.is_some_and(|st| !st.success()), "unsupported codec must be refused: {status:?}");
    assert!(
        s.stderr().iter().any(|l| l.contains("not supported") && l.contains("oldcodec")),
        "log names the stream and the codec: {:?}",
        s.stderr()
    );

    // H.264 4:4:4 (what x264 picks for RGB input unless told): refused like a codec,
    // since most browsers would show nothing.
    let mut rgb = publish_with(
        &push_url(&s, "rgb444"),
        5,
        &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p", "-c:a", "aac"],
    );
    let status = exit_within(&mut rgb, Duration::from_secs(8)).await;
    assert!(status.is_some_and(|st| !st.success()), "a 4:4:4 stream must be refused: {status:?}");
    assert!(
        s.stderr().iter().any(|l| l.contains("4:4:4") && l.contains("rgb444") && l.contains("browsers")),
        "log names the stream and why: {:?}",
        s.stderr()
    );
    let (status, _) = s.http("GET", "/api/v1/streams/rgb444", None).await;
    assert_eq!(status, 404, "the refused stream is not live");

    // The good stream plays on, and the killed stream's name can be published again.
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("good.flv");
    assert!(record(&format!("http://127.0.0.1:{}/live/good.flv", s.port), 2.5, &file).await, "{:?}", s.stderr());
    assert_av(&probe(&file).await, 2.0, "good stream after the bad publishers");
    let mut again = publish(&push_url(&s, "doomed"), 5);
    wait_live(&s, "doomed").await;
    let _ = again.kill().await;
    let _ = good.kill().await;
}

#[tokio::test]
async fn a_viewer_that_stops_reading_does_not_hurt_others() {
    // A small ring and grace so the stalled viewer is caught quickly.
    let s = Server::start_with_env(
        &format!(
            "{}\n[rtmp]\nsend_buffer = 16384\n",
            media_toml("viewer_queue_packets = 64\nslow_viewer_grace_ms = 2000")
        ),
        // HTTP-FLV viewers that never read are freed by the kernel (TCP_USER_TIMEOUT).
        &[("ONAIR_HTTP__STALL_TIMEOUT_SECS", "2"), ("ONAIR_HTTP__SOCKET_SEND_BUFFER", "16384")],
    )
    .await;
    let mut publisher = publish(&push_url(&s, "busy"), 18);
    wait_live(&s, "busy").await;

    // Two viewers frozen with SIGSTOP: they stop reading their sockets.
    let spawn_reader = |url: String| {
        tokio::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "quiet", "-nostdin", "-i", &url, "-c", "copy", "-f", "null", "-"])
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut frozen_rtmp = spawn_reader(format!("rtmp://127.0.0.1:{}/live/busy", s.rtmp_port));
    let mut frozen_flv = spawn_reader(format!("http://127.0.0.1:{}/live/busy.flv", s.port));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for c in [&frozen_rtmp, &frozen_flv] {
        let pid = c.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    }
    // A never-reading raw client too.
    let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    raw.write_all(b"GET /live/busy.flv HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();

    // Meanwhile a normal viewer gets a clean stream.
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("busy.flv");
    assert!(record(&format!("http://127.0.0.1:{}/live/busy.flv", s.port), 6.0, &file).await, "{:?}", s.stderr());
    assert_av(&probe(&file).await, 5.5, "viewer next to stalled ones");

    // The stalled RTMP player was cut off (its socket accepted nothing for the grace period).
    eventually("stalled RTMP viewer cut off", Duration::from_secs(10), || async {
        s.metric("onair_media_viewers_cut_total").await >= 1.0
    })
    .await;
    // The frozen HTTP-FLV viewer and the raw never-reading one are gone too: the kernel
    // gave up on their sockets, hyper saw the error and dropped their subscriptions.
    eventually("stalled HTTP-FLV viewers freed", Duration::from_secs(20), || async {
        s.http("GET", "/api/v1/streams/busy", None).await.1["viewers"]["flv"] == 0
    })
    .await;
    drop(raw);
    for c in [&mut frozen_rtmp, &mut frozen_flv] {
        let pid = c.id().unwrap().to_string();
        let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
        let _ = c.kill().await;
    }
    let _ = publisher.kill().await;
}

#[tokio::test]
async fn a_stalled_publisher_is_dropped_and_its_name_freed() {
    let s = Server::start(&format!("{}\n[rtmp]\nidle_timeout_secs = 2\n", media_toml(""))).await;
    let mut good = publish(&push_url(&s, "steady"), 14);
    let mut stalled = publish(&push_url(&s, "frozen"), 14);
    wait_live(&s, "steady").await;
    wait_live(&s, "frozen").await;
    let pid = stalled.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap().success());
    eventually("the silent publisher is dropped", Duration::from_secs(8), || async {
        s.http("GET", "/api/v1/streams/frozen", None).await.0 == 404
    })
    .await;
    let _ = std::process::Command::new("kill").args(["-CONT", &pid]).status();
    let _ = stalled.kill().await;
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("steady.flv");
    assert!(record(&format!("http://127.0.0.1:{}/live/steady.flv", s.port), 2.0, &file).await);
    assert_av(&probe(&file).await, 1.5, "the other stream");
    let mut again = publish(&push_url(&s, "frozen"), 4);
    wait_live(&s, "frozen").await;
    let _ = again.kill().await;
    let _ = good.kill().await;
}
