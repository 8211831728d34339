//! Renditions: ffmpeg publishes a 640x360 test pattern; the server's own ffmpeg child
//! makes a 240p rendition with a text overlay and publishes it back as `cam_240p`,
//! which then plays like any stream (HTTP-FLV probed with ffprobe) and goes away with
//! its source. Skips with a message when ffmpeg is not installed (CI installs it).

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::time::Duration;

use common::*;
use media_util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_240p_rendition_with_overlay_is_published_plays_and_ends_with_its_source() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start_with_env(
        &media_toml(
            "record = false\nsnapshot_secs = 0\noverlay_text = \"OnAir\"\n\
             renditions = [{ name = \"240p\", height = 240, video_kbps = 300 }]\n",
        ),
        &[("ONAIR_LOG", "warn,onair_media_server::renditions=info")],
    )
    .await;
    let mut src = publish(&push_url(&s, "cam"), 14);
    wait_live(&s, "cam").await;
    let v = wait_live(&s, "cam_240p").await;
    assert_eq!(v["videoCodec"], "h264", "{v}");

    // The source's player info lists the live rendition.
    eventually("cam.json lists cam_240p", T, || async {
        let (status, info) = s.http("GET", "/live/cam.json", None).await;
        status == 200 && info["renditions"][0]["stream"] == "cam_240p"
    })
    .await;

    // 2 s of the rendition over HTTP-FLV: H.264 at 240 lines + AAC.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.flv");
    assert!(record(&format!("http://127.0.0.1:{}/live/cam_240p.flv", s.port), 2.0, &out).await, "{:?}", s.stderr());
    let p = probe(&out).await;
    let codecs: Vec<&str> = p.streams.iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert_eq!(p.streams.len(), 2, "streams {codecs:?}");
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{codecs:?}");
    let video = p.streams.iter().find(|s| s["codec_name"] == "h264").unwrap();
    assert_eq!(video["height"].as_u64(), Some(240), "{video}");
    assert_eq!(video["width"].as_u64(), Some(426), "{video}");
    assert!(p.duration >= 1.5, "duration {}", p.duration);

    // A rendition is never transcoded again.
    let (status, _) = s.http("GET", "/api/v1/streams/cam_240p_240p", None).await;
    assert_eq!(status, 404);

    // The source ends → the rendition child is stopped and its stream ends.
    src.start_kill().unwrap();
    eventually("the rendition ends with its source", Duration::from_secs(10), || async {
        s.http("GET", "/api/v1/streams/cam_240p", None).await.0 == 404
    })
    .await;
    let log = s.stderr();
    assert!(log.iter().any(|l| l.contains("renditions on")), "{log:?}");
    assert!(log.iter().any(|l| l.contains("rendition started") && l.contains("cam_240p")), "{log:?}");
    assert!(!log.iter().any(|l| l.contains("restarting") || l.contains("giving up")), "{log:?}");
}

#[tokio::test]
async fn without_ffmpeg_renditions_are_off_with_a_clear_message() {
    let s = Server::start(&media_toml(
        "ffmpeg = \"/nonexistent/ffmpeg\"\nrenditions = [{ name = \"240p\", height = 240, video_kbps = 300 }]\n",
    ))
    .await;
    eventually("the renditions-off warning", T, || async {
        s.stderr().iter().any(|l| l.contains("renditions off: ffmpeg not found"))
    })
    .await;
    // The server itself runs normally.
    let (status, _) = s.http("GET", "/api/v1/streams/nothing", None).await;
    assert_eq!(status, 404);
}
