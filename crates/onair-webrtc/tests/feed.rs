//! A stream's shared feed: packetised once, a late viewer starts at the last keyframe,
//! audio is never replayed, the ring follows the GOP, the end of the source ends it.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::access_units;
use onair_media::nal;
use onair_webrtc::convert::H264Ingest;
use onair_webrtc::{Feed, FrameSource, PlayFrame, TrackKind};
use tokio::sync::{broadcast, mpsc};

/// The fixture's access units as FLV video tag bodies (sequence header first) with their
/// frame index, 40 ms apart.
fn flv_frames() -> Vec<(u64, Bytes)> {
    let mut ingest = H264Ingest::new();
    let mut out = Vec::new();
    for (i, au) in access_units().iter().enumerate() {
        let annexb = nal::nals_to_annexb(au.iter().map(Vec::as_slice));
        for body in ingest.push(&annexb, false).bodies {
            out.push((i as u64 * 40, body));
        }
    }
    out
}

fn source(mut rx: mpsc::UnboundedReceiver<PlayFrame>) -> FrameSource {
    Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn a_late_viewer_starts_at_the_last_keyframe_and_the_end_closes_the_ring() {
    let frames = flv_frames();
    let (tx, rx) = mpsc::unbounded_channel();
    let feed = Feed::spawn("s", source(rx));
    // An early viewer holds the feed (a feed nobody reads stops after a while).
    let mut early = feed.subscribe().unwrap();
    assert!(early.backlog.is_empty());

    // The sequence header, 15 pictures (keyframes at 0 and 10) and an Opus packet.
    for (ts, body) in &frames[..16] {
        tx.send(PlayFrame::FlvVideo { timestamp: *ts, body: body.clone() }).unwrap();
    }
    tx.send(PlayFrame::Opus { timestamp: 600, data: Bytes::from_static(&[0xfc, 1, 2, 3]) }).unwrap();
    settle().await;

    let late = feed.subscribe().unwrap();
    let kinds: Vec<(TrackKind, bool)> = late.backlog.iter().map(|f| (f.kind, f.keyframe)).collect();
    // Pictures 10..=14: the last keyframe and what followed it; no audio.
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    assert_eq!(kinds[0], (TrackKind::Video, true));
    assert!(kinds[1..].iter().all(|k| *k == (TrackKind::Video, false)));
    assert_eq!(late.backlog[0].time, 400 * 90, "90 kHz from the frame's pts");
    assert!(late.backlog.windows(2).all(|w| w[0].seq < w[1].seq));
    // A keyframe carries its SPS and PPS in front, each as its own small packet.
    assert_eq!(late.backlog[0].payloads[0][0] & 0x1f, 7);
    assert_eq!(late.backlog[0].payloads[1][0] & 0x1f, 8);

    // The early viewer got everything once, in order, audio included.
    let mut seen = Vec::new();
    while let Ok(f) = early.rx.try_recv() {
        seen.push(f);
    }
    assert_eq!(seen.len(), 16, "15 pictures and one Opus packet");
    assert_eq!(seen.last().unwrap().kind, TrackKind::Audio);
    assert_eq!(seen.last().unwrap().time, 600 * 48, "48 kHz");
    assert!(seen.windows(2).all(|w| w[0].seq + 1 == w[1].seq));

    // Pictures 15..=20: the keyframe at 20 starts the GOP over.
    for (ts, body) in &frames[16..22] {
        tx.send(PlayFrame::FlvVideo { timestamp: *ts, body: body.clone() }).unwrap();
    }
    settle().await;
    let gop = feed.gop();
    assert!(gop[0].keyframe && gop[0].time == 800 * 90, "GOP from picture 20");
    assert_eq!(gop.len(), 1);

    // A gap (the feed's own reader lagged) holds video back until the next keyframe.
    tx.send(PlayFrame::Gap).unwrap();
    tx.send(PlayFrame::FlvVideo { timestamp: frames[22].0, body: frames[22].1.clone() }).unwrap();
    settle().await;
    assert_eq!(feed.gop().len(), 1, "a picture after a gap is not sent");

    // The source ends: the feed stops and its ring closes.
    drop(tx);
    settle().await;
    assert!(!feed.is_live());
    assert!(feed.subscribe().is_none());
    let mut rx = late.rx;
    loop {
        match rx.recv().await {
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => break,
        }
    }
}
