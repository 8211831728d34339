//! Relays, files played as live, slates and the ABR ladder, black-box with real peers:
//! a second OnAir process is the relays' external destination (over RTMP, and over
//! RTMPS through TLS listeners the test runs in front of it, one whose certificate the
//! relaying server trusts through `[tls] ca_file` and one it must refuse); ffmpeg publishes and
//! makes the files; ffprobe reads what comes out. Skips when ffmpeg is missing.

#![allow(clippy::unwrap_used)]

mod common;
mod media_util;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use media_util::*;
use serde_json::{Value, json};
use tokio::process::Command;

const LONG: Duration = Duration::from_secs(40);

async fn relays(s: &Server, room: &str) -> Vec<Value> {
    let (status, v) = s.http("GET", &s.admin(&format!("/api/v1/rooms/{room}/relays")), None).await;
    assert_eq!(status, 200, "{v}");
    v["relays"].as_array().cloned().unwrap_or_default()
}

async fn relay_state(s: &Server, room: &str, id: &str) -> Value {
    relays(s, room).await.into_iter().find(|r| r["id"] == id).unwrap_or(Value::Null)
}

/// Reads 2 s of `url` into a file and checks ffprobe finds H.264 + AAC there.
async fn assert_plays(url: &str, what: &str) -> Probe {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("grab.flv");
    assert!(record(url, 2.0, &out).await, "{what}: nothing to read at {url}");
    let p = probe(&out).await;
    let codecs: Vec<&str> = p.streams.iter().filter_map(|s| s["codec_name"].as_str()).collect();
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{what}: {codecs:?}");
    p
}

/// A TLS listener on a free port that forwards each connection, decrypted, to
/// `127.0.0.1:{to}`: an RTMPS ingest in front of a plain RTMP server, as CDNs run.
/// Returns its port and its self-signed certificate (PEM), for a client to trust.
async fn tls_front(to: u16) -> (u16, String) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap().self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    let pem = cert.pem();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", to)).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (port, pem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_forward_over_rtmp_and_rtmps_retry_and_resume_and_never_show_keys() {
    if !have_ffmpeg() {
        return;
    }
    // The destination: another OnAir on a fixed RTMP port (it comes back on the same one).
    let dest_rtmp = reserved_port();
    let mut dest = Server::start_with_env(
        &media_toml("record = false\nsnapshot_secs = 0\n"),
        &[("ONAIR_RTMP__LISTEN", &format!("127.0.0.1:{dest_rtmp}"))],
    )
    .await;
    // Two RTMPS fronts of it: the relaying server trusts the first one's certificate
    // (`[tls] ca_file`), not the second's.
    let (tls_port, trusted_pem) = tls_front(dest_rtmp).await;
    let (untrusted_port, _) = tls_front(dest_rtmp).await;
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("ca.pem");
    std::fs::write(&ca_file, trusted_pem).unwrap();
    let src = Server::start_with_env(
        &format!(
            "{}[tls]\nca_file = {:?}\n",
            media_toml("record = false\nsnapshot_secs = 0\nrelay_backoff_ms = 300\nrelay_backoff_max_ms = 1000\n"),
            ca_file.display().to_string()
        ),
        &[("ONAIR_LOG", "warn,onair_media_server::relays=info")],
    )
    .await;
    src.create_room("show").await;

    // Bad input first: clear refusals.
    let add = |body: Value| {
        let path = src.admin("/api/v1/rooms/show/relays");
        let s = &src;
        async move { s.http("POST", &path, Some(&body)).await }
    };
    for (body, want) in [
        (json!({"url": "http://example.com/live/key"}), "rtmp:// or rtmps://"),
        (json!({"url": "rtmp://example.com/live"}), "stream key"),
        (json!({"url": "rtmp://user:pw@example.com/live/k"}), "control characters"),
    ] {
        let (status, v) = add(body.clone()).await;
        assert_eq!(status, 400, "{body}: {v}");
        assert!(v["message"].as_str().unwrap_or("").contains(want), "{body}: {v}");
    }
    let (status, _) = src.http("GET", "/api/v1/rooms/show/relays", None).await;
    assert_eq!(status, 401, "relays are not public");

    // Four destinations: the second OnAir over RTMP, the same over RTMPS (trusted and
    // not), and a port where nothing listens.
    let signed_rtmp = signed(&dest, "relayed", &format!("{:X}", now_secs() + 3600), PUSH_KEY);
    let secret = signed_rtmp.split("txSecret=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let (status, plain) = add(json!({"url": signed_rtmp})).await;
    assert_eq!(status, 201, "{plain}");
    assert!(!plain.to_string().contains(&secret), "the key is masked: {plain}");
    assert_eq!(plain["state"], "idle", "{plain}");
    let (status, dup) = add(json!({"url": signed_rtmp})).await;
    assert_eq!(status, 409, "{dup}");
    let tls_key = signed(&dest, "relayed_tls", &format!("{:X}", now_secs() + 3600), PUSH_KEY);
    let tls_key = tls_key.rsplit('/').next().unwrap();
    let (status, tls) = add(json!({"url": format!("rtmps://127.0.0.1:{tls_port}/live"), "key": tls_key})).await;
    assert_eq!(status, 201, "{tls}");
    assert_eq!(tls["tls"], true);
    let bad_key = signed(&dest, "relayed_untrusted", &format!("{:X}", now_secs() + 3600), PUSH_KEY);
    let bad_key = bad_key.rsplit('/').next().unwrap().to_string();
    let (status, untrusted) =
        add(json!({"url": format!("rtmps://127.0.0.1:{untrusted_port}/live"), "key": bad_key})).await;
    assert_eq!(status, 201, "{untrusted}");
    let untrusted_id = untrusted["id"].as_str().unwrap().to_string();
    let dead_port = reserved_port();
    let (status, dead) = add(json!({"url": format!("rtmp://127.0.0.1:{dead_port}/live/deadkey0123456789")})).await;
    assert_eq!(status, 201, "{dead}");
    assert_eq!(dead["url"], format!("rtmp://127.0.0.1:{dead_port}/live/****6789"));
    let (plain_id, tls_id, dead_id) =
        (plain["id"].as_str().unwrap(), tls["id"].as_str().unwrap(), dead["id"].as_str().unwrap());

    // The anchor goes live: both live destinations receive the stream unchanged.
    let mut anchor = publish(&push_url(&src, "show"), 60);
    wait_live(&src, "show").await;
    wait_live(&dest, "relayed").await;
    wait_live(&dest, "relayed_tls").await;
    for name in ["relayed", "relayed_tls"] {
        let p = assert_plays(&format!("http://127.0.0.1:{}/live/{name}.flv", dest.port), name).await;
        let video = p.streams.iter().find(|s| s["codec_name"] == "h264").unwrap();
        assert_eq!(video["height"].as_u64(), Some(360), "copied, not re-encoded: {video}");
    }
    eventually("both relays live with bytes and uptime, the dead one retrying", LONG, || async {
        let (a, b, c) = (
            relay_state(&src, "show", plain_id).await,
            relay_state(&src, "show", tls_id).await,
            relay_state(&src, "show", dead_id).await,
        );
        a["state"] == "live"
            && b["state"] == "live"
            && a["bytes"].as_u64().unwrap_or(0) > 10_000
            && a["uptimeSecs"].as_u64().unwrap_or(0) >= 1
            && c["state"] == "retrying"
            && c["failures"].as_u64().unwrap_or(0) >= 2
            && c["lastError"].as_str().is_some_and(|e| !e.is_empty())
    })
    .await;
    // The untrusted RTMPS destination never gets the stream: retried (or given up)
    // with the certificate named as the reason, its key still masked.
    eventually("the untrusted RTMPS relay refused for its certificate", LONG, || async {
        let u = relay_state(&src, "show", &untrusted_id).await;
        (u["state"] == "retrying" || u["state"] == "failed")
            && u["failures"].as_u64().unwrap_or(0) >= 2
            && u["lastError"].as_str().is_some_and(|e| e.contains("TLS certificate") && e.contains("[tls] ca_file"))
    })
    .await;
    let u = relay_state(&src, "show", &untrusted_id).await;
    let bad_secret = bad_key.split("txSecret=").nth(1).unwrap().split('&').next().unwrap();
    assert!(!u.to_string().contains(bad_secret), "the key is masked in the error: {u}");
    assert_eq!(dest.http("GET", "/api/v1/streams/relayed_untrusted", None).await.0, 404, "nothing went through");
    let (status, _) = src.http("DELETE", &src.admin(&format!("/api/v1/rooms/show/relays/{untrusted_id}")), None).await;
    assert_eq!(status, 204);
    let metrics = src.metrics().await;
    assert!(
        metrics.lines().any(|l| l.starts_with("onair_relay_live{") && l.contains(plain_id) && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("onair_relay_bytes{") && l.contains(tls_id)), "{metrics}");

    // The unreachable destination is removed while live; the others go on.
    let (status, _) = src.http("DELETE", &src.admin(&format!("/api/v1/rooms/show/relays/{dead_id}")), None).await;
    assert_eq!(status, 204);
    assert_eq!(relays(&src, "show").await.len(), 2);

    // The destination dies: the relays retry with backoff, the source stays live.
    dest.kill().await;
    eventually("relays retrying while the destination is down", LONG, || async {
        relay_state(&src, "show", plain_id).await["state"] == "retrying"
    })
    .await;
    assert_eq!(src.http("GET", "/api/v1/streams/show", None).await.0, 200, "the source is not affected");
    // It comes back on the same port: the relays resume by themselves.
    dest.restart().await;
    wait_live(&dest, "relayed").await;
    wait_live(&dest, "relayed_tls").await;
    assert_plays(&format!("http://127.0.0.1:{}/live/relayed.flv", dest.port), "after the restart").await;
    eventually("relays live again", LONG, || async { relay_state(&src, "show", plain_id).await["state"] == "live" })
        .await;

    // The source ends: the relays go idle and the destination's stream ends.
    anchor.start_kill().unwrap();
    eventually("relays idle with their source gone", LONG, || async {
        relay_state(&src, "show", plain_id).await["state"] == "idle"
            && dest.http("GET", "/api/v1/streams/relayed", None).await.0 == 404
    })
    .await;

    // No stream key in any log line or answer; the stored list is owner-only.
    let all = format!("{:?}{:?}{}", src.stderr(), src.stdout(), json!(relays(&src, "show").await));
    assert!(!all.contains(&secret) && !all.contains("deadkey0123456789"), "a key leaked");
    assert!(src.stderr().iter().any(|l| l.contains("relay live")), "{:?}", src.stderr());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(src.data_dir().join("relays.json")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

/// An 8 s 320x240 H.264/AAC file made by ffmpeg (the show played as live).
async fn make_clip(path: &Path, secs: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let ok = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", &format!("testsrc2=size=320x240:rate=25:duration={secs}")])
        .args(["-f", "lavfi", "-i", &format!("sine=frequency=660:sample_rate=44100:duration={secs}")])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()
        .await
        .unwrap();
    assert!(ok.success());
}

async fn room_state(s: &Server, room: &str) -> String {
    let (_, v) = s.http("GET", &format!("/api/v1/rooms/{room}"), None).await;
    v["state"].as_str().unwrap_or("").to_string()
}

async fn stream_height(s: &Server, name: &str) -> Option<u64> {
    let (status, v) = s.http("GET", &format!("/api/v1/streams/{name}"), None).await;
    (status == 200).then(|| v["height"].as_u64()).flatten()
}

async fn playout_state(s: &Server, room: &str) -> String {
    let (_, v) = s.http("GET", &s.admin(&format!("/api/v1/rooms/{room}/playout")), None).await;
    v["playout"]["state"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_plays_as_live_the_anchor_takes_over_and_hands_back_and_the_room_ends_with_it() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start_with_env(
        &media_toml("record = false\nsnapshot_secs = 0\n"),
        &[("ONAIR_LOG", "warn,onair_media_server::playout=info,onair_media_server::publish=info")],
    )
    .await;
    s.create_room("vod").await;
    make_clip(&s.data_dir().join("media/clip.mp4"), 10).await;
    std::fs::write(s.data_dir().join("media/bad.mp4"), b"this is not a video file at all").unwrap();
    let play = |body: Value| {
        let path = s.admin("/api/v1/rooms/vod/playout");
        let s = &s;
        async move { s.http("POST", &path, Some(&body)).await }
    };

    // Refused at scheduling time, each with its reason.
    let (status, v) = play(json!({"items": [{"path": "media/bad.mp4"}]})).await;
    assert_eq!(status, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not a playable media file"), "{v}");
    assert!(!v["message"].as_str().unwrap().contains(&s.data_dir().display().to_string()), "no server paths: {v}");
    let (status, v) = play(json!({"items": [{"path": "../../../../../../etc/hostname"}]})).await;
    assert_eq!(status, 403, "{v}");
    let (status, v) = play(json!({"items": [{"path": "media/none.mp4"}]})).await;
    assert_eq!(status, 404, "{v}");
    let (status, v) = play(json!({"items": []})).await;
    assert_eq!(status, 400, "{v}");
    let (status, v) = s.http("PUT", &s.admin("/api/v1/uploads/junk.mp4"), Some(&json!("not media"))).await;
    assert_eq!(status, 422, "an unplayable upload is refused: {v}");
    assert!(!s.data_dir().join("uploads/junk.mp4").exists());
    // A room owner who is not an app admin may not name data-dir paths.
    let (status, _) = s
        .http(
            "POST",
            &s.as_user("/api/v1/rooms/vod/playout", "someone"),
            Some(&json!({"items": [{"path": "media/clip.mp4"}]})),
        )
        .await;
    assert_eq!(status, 403);

    // The file goes on air: the room goes live with it, FLV and HLS play it.
    let (status, v) = play(json!({"items": [{"path": "media/clip.mp4"}], "endRoom": true})).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["items"][0]["video"], "h264", "{v}");
    wait_live(&s, "vod").await;
    assert_eq!(stream_height(&s, "vod").await, Some(240));
    eventually("the room is live", T, || async { room_state(&s, "vod").await == "live" }).await;
    assert_plays(&format!("http://127.0.0.1:{}/live/vod.flv", s.port), "the file over FLV").await;
    let (status, hls) = s.http_raw("GET", "/live/vod.m3u8", None).await;
    assert_eq!(status, 200);
    assert!(hls.contains("#EXTINF"), "{hls}");

    // The anchor pushes for real: the file yields, the anchor is on air.
    let mut anchor = publish(&push_url(&s, "vod"), 4);
    eventually("the anchor's 360p stream replaced the file", LONG, || async {
        stream_height(&s, "vod").await == Some(360)
    })
    .await;
    assert_eq!(playout_state(&s, "vod").await, "yielded");
    let _ = exit_within(&mut anchor, Duration::from_secs(20)).await;
    // The anchor leaves: the file comes back where it was, then ends, and so does the room.
    eventually("the file is handed back", LONG, || async {
        playout_state(&s, "vod").await == "playing" && stream_height(&s, "vod").await == Some(240)
    })
    .await;
    eventually("the file finished and the room ended with it", Duration::from_secs(60), || async {
        playout_state(&s, "vod").await == "finished" && room_state(&s, "vod").await == "ended"
    })
    .await;
    let log = s.stderr();
    assert!(log.iter().any(|l| l.contains("takes over from the house publisher")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slate_plays_while_upcoming_without_making_the_room_live_and_yields_to_the_anchor() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start(&media_toml("record = true\nsnapshot_secs = 0\n")).await;
    s.create_room("sl").await;
    let (status, v) = s
        .http(
            "PUT",
            &s.admin("/api/v1/rooms/sl/slate"),
            Some(&json!({"text": "Starting soon", "pausedText": "Back soon"})),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s.http("PUT", &s.admin("/api/v1/rooms/sl/slate"), Some(&json!({}))).await;
    assert_eq!(status, 400, "an empty slate: {v}");
    // The slate is on air as the room's stream, yet the room stays upcoming.
    wait_live(&s, "sl").await;
    assert_eq!(stream_height(&s, "sl").await, Some(720));
    assert_plays(&format!("http://127.0.0.1:{}/live/sl.flv", s.port), "the slate").await;
    assert_eq!(room_state(&s, "sl").await, "upcoming");
    // The anchor pushes: the slate yields and the room goes live.
    let mut anchor = publish(&push_url(&s, "sl"), 4);
    eventually("the anchor replaced the slate", LONG, || async { stream_height(&s, "sl").await == Some(360) }).await;
    eventually("the room is live", T, || async { room_state(&s, "sl").await == "live" }).await;
    let _ = exit_within(&mut anchor, Duration::from_secs(20)).await;
    // Paused: the slate comes back (its paused text), the room stays paused.
    eventually("the slate is back while paused", LONG, || async {
        stream_height(&s, "sl").await == Some(720) && room_state(&s, "sl").await == "paused"
    })
    .await;
    // Nothing of the slate became a recording (only the anchor's 4 s did).
    let recs = s.data_dir().join("recordings/sl");
    let n = std::fs::read_dir(&recs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 1, "one recording, the anchor's");
    let (status, _) = s.http("DELETE", &s.admin("/api/v1/rooms/sl/slate"), None).await;
    assert_eq!(status, 204);
    eventually("the slate is gone", LONG, || async { s.http("GET", "/api/v1/streams/sl", None).await.0 == 404 }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_ladder_makes_a_multivariant_playlist_of_every_rendition() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start(&media_toml("record = false\nsnapshot_secs = 0\n")).await;
    s.create_room("abr").await;
    let ladder = json!({"renditions": [
        {"name": "360p", "height": 360, "videoKbps": 500},
        {"name": "240p", "height": 240, "videoKbps": 250},
    ]});
    let (status, v) = s.http("PUT", &s.admin("/api/v1/rooms/abr/ladder"), Some(&ladder)).await;
    assert_eq!(status, 200, "{v}");
    let (status, v) = s
        .http(
            "PUT",
            &s.admin("/api/v1/rooms/abr/ladder"),
            Some(&json!({"renditions": [{"name": "a/b", "height": 240}]})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let _anchor = publish(&push_url(&s, "abr"), 40);
    wait_live(&s, "abr").await;
    wait_live(&s, "abr_360p").await;
    wait_live(&s, "abr_240p").await;
    let deadline = std::time::Instant::now() + LONG;
    let master = loop {
        let (status, text) = s.http_raw("GET", "/live/abr/master.m3u8", None).await;
        if status == 200 && text.matches("#EXT-X-STREAM-INF").count() == 3 {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "master playlist: {status} {text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(master.contains("RESOLUTION=640x360") && master.contains("RESOLUTION=426x240"), "{master}");
    assert!(master.contains("CODECS=\"avc1."), "{master}");
    for uri in ["../abr.m3u8", "../abr_360p.m3u8", "../abr_240p.m3u8"] {
        assert!(master.lines().any(|l| l == uri), "{uri} in {master}");
    }
    // Each media playlist reports the other variants' live edge.
    let (_, media) = s.http_raw("GET", "/live/abr_240p.m3u8", None).await;
    assert!(media.contains("#EXT-X-RENDITION-REPORT:URI=\"abr.m3u8\",LAST-MSN="), "{media}");
    assert!(media.contains("#EXT-X-RENDITION-REPORT:URI=\"abr_360p.m3u8\""), "{media}");
    // ffprobe reads every variant through the multivariant playlist.
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json", "-show_programs"])
        .arg(format!("http://127.0.0.1:{}/live/abr/master.m3u8", s.port))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let heights: Vec<u64> = v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["streams"].as_array().cloned().unwrap_or_default())
        .filter_map(|st| st["height"].as_u64())
        .collect();
    for h in [360, 240] {
        assert!(heights.contains(&h), "variant of height {h} read: {heights:?}");
    }
    assert_eq!(heights.len(), 3, "{heights:?}");
}

/// `PUT path` with a binary body; the status and the answer as JSON.
async fn put_bytes(s: &Server, path: &str, body: &[u8]) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp.write_all(body).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), tcp.read_to_end(&mut raw)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    // Chunked or not, the JSON object is the part between the outer braces.
    let json = body.find('{').and_then(|a| body.rfind('}').map(|b| &body[a..=b])).unwrap_or("null");
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_file_and_a_path_play_as_a_scheduled_looped_playlist_until_stopped() {
    if !have_ffmpeg() {
        return;
    }
    let s = Server::start(&media_toml("record = false\nsnapshot_secs = 0\nmax_upload_mb = 5\n")).await;
    s.create_room("pl").await;
    let dir = tempfile::tempdir().unwrap();
    make_clip(&dir.path().join("a.mp4"), 2).await;
    make_clip(&s.data_dir().join("media/b.mp4"), 2).await;
    let (status, v) =
        put_bytes(&s, &s.admin("/api/v1/uploads/a.mp4"), &std::fs::read(dir.path().join("a.mp4")).unwrap()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["probe"]["video"], "h264", "{v}");
    let (status, v) = put_bytes(&s, &s.admin("/api/v1/uploads/big.mp4"), &vec![0u8; 6 * 1024 * 1024]).await;
    assert_eq!(status, 413, "{v}");
    assert!(v["message"].as_str().unwrap_or("").contains("max_upload_mb (5 MiB)"), "JSON naming the limit: {v}");
    // The server's own code (as every API face answers), not the HTTP status again.
    assert_eq!(v["code"], 93000, "{v}");
    assert!(!s.data_dir().join("uploads/big.mp4").exists() && !s.data_dir().join("uploads/.big.mp4.part").exists());
    let (status, v) = put_bytes(&s, &s.admin("/api/v1/uploads/..%2Fx.mp4"), b"x").await;
    assert!(status == 400 || status == 404, "{status} {v}");

    // Two items, looped, starting in 2 s.
    let start_at = now_secs() + 2;
    let (status, v) = s
        .http(
            "POST",
            &s.admin("/api/v1/rooms/pl/playout"),
            Some(&json!({"items": [{"upload": "a.mp4"}, {"path": "media/b.mp4"}], "loop": true, "startAt": start_at})),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["state"], "scheduled", "{v}");
    assert_eq!(s.http("GET", "/api/v1/streams/pl", None).await.0, 404, "not before its start");
    wait_live(&s, "pl").await;
    assert!(now_secs() + 1 >= start_at, "started on time");
    // Past the playlist's 4 s it is still on air (looped), the position going on.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (_, v) = s.http("GET", &s.admin("/api/v1/rooms/pl/playout"), None).await;
    assert_eq!(v["playout"]["state"], "playing", "{v}");
    assert_eq!(s.http("GET", "/api/v1/streams/pl", None).await.0, 200);
    assert_plays(&format!("http://127.0.0.1:{}/live/pl.flv", s.port), "the looped playlist").await;
    // Stopped: the stream ends.
    let (status, _) = s.http("DELETE", &s.admin("/api/v1/rooms/pl/playout"), None).await;
    assert_eq!(status, 204);
    eventually("the stream ends when stopped", LONG, || async {
        s.http("GET", "/api/v1/streams/pl", None).await.0 == 404
    })
    .await;
    let (status, _) = s.http("DELETE", &s.admin("/api/v1/rooms/pl/playout"), None).await;
    assert_eq!(status, 404);
}
