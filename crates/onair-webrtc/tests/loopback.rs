//! Real peers over real UDP on loopback: a str0m client publishes the H.264 fixture and
//! synthetic Opus through the engine; the frames come out as FLV tag bodies; those are
//! fanned out (as the stream registry would) to two str0m players — one there from the
//! start, one joining mid-GOP — which must receive the same NAL bytes, keyframe first.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Client, LOCALHOST, access_units, picture};
use futures_util::StreamExt;
use onair_media::codec::parse_avcc;
use onair_media::flv::{VideoBody, parse_video};
use onair_media::nal;
use onair_webrtc::{Feed, FrameSource, IngestFrame, Limits, PlayFrame, SessionState};
use str0m::Event;
use str0m::media::{Direction, Frequency, MediaTime};
use tokio::sync::broadcast;

/// Synthetic Opus packet `i` (str0m does not look inside; the bytes identify it).
fn opus(i: usize) -> Vec<u8> {
    let mut p = vec![0xfc, (i >> 8) as u8, i as u8];
    p.extend((0..37).map(|k| (k * 7 + i) as u8));
    p
}

/// A player's source over a broadcast ring, like `registry::Subscription`: the latest
/// sequence header first, then live frames; overtaken → `Gap`.
fn source(header: Option<PlayFrame>, rx: broadcast::Receiver<PlayFrame>) -> FrameSource {
    let first = futures_util::stream::iter(header);
    let live = futures_util::stream::unfold(rx, |mut rx| async move {
        match rx.recv().await {
            Ok(f) => Some((f, rx)),
            Err(broadcast::error::RecvError::Lagged(_)) => Some((PlayFrame::Gap, rx)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    });
    Box::pin(first.chain(live))
}

#[derive(Default, Debug)]
struct Received {
    video: Vec<(bool, Vec<Vec<u8>>)>,
    /// When each video frame arrived.
    video_at: Vec<Instant>,
    audio: Vec<Vec<u8>>,
}

async fn run_player(mut c: Client, until: Instant) -> Received {
    let mut got = Received::default();
    let (video, audio) = (c.video, c.audio);
    c.run_until(until, &mut |_, e| {
        if let Event::MediaData(d) = e {
            if d.mid == video {
                let nals: Vec<Vec<u8>> = nal::split_annexb(&d.data).into_iter().map(<[u8]>::to_vec).collect();
                let key = nals.iter().any(|n| nal::nal_type(n) == Some(5));
                got.video.push((key, nals));
                got.video_at.push(Instant::now());
            } else if d.mid == audio {
                got.audio.push(d.data.to_vec());
            }
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_and_play_over_loopback() {
    let aus = access_units();
    assert_eq!(aus.len(), 50, "fixture: 50 frames");
    let engine = common::engine(Limits::default()).await;

    // The publisher connects first.
    let (mut publisher, offer) = Client::new(Direction::SendOnly).await;
    let published = engine.publish(&offer, "s1", LOCALHOST).await.unwrap();
    publisher.accept(&published.answer);
    publisher.connect().await;
    let mut ingest = published.frames;

    // Player 1 is there from the start.
    let (tx, _) = broadcast::channel::<PlayFrame>(1024);
    let (mut p1, offer) = Client::new(Direction::RecvOnly).await;
    let playing1 = engine.play(&offer, "s1", LOCALHOST, Feed::spawn("s1", source(None, tx.subscribe()))).await.unwrap();
    p1.accept(&playing1.answer);
    p1.connect().await;

    // The consumer: FLV bodies in, checked, fanned out to players.
    let fan = tx.clone();
    let last_header = std::sync::Arc::new(parking_lot::Mutex::new(None::<PlayFrame>));
    let keep_header = last_header.clone();
    let consumer = tokio::spawn(async move {
        let mut video = Vec::new();
        let mut audio = Vec::new();
        let mut headers = Vec::new();
        while let Some(f) = ingest.recv().await {
            match f {
                IngestFrame::Video { timestamp, body } => {
                    let frame = PlayFrame::FlvVideo { timestamp: u64::from(timestamp), body: body.clone() };
                    match parse_video(&body).unwrap() {
                        VideoBody::SequenceHeader(rec) => {
                            *keep_header.lock() = Some(frame.clone());
                            headers.push(rec);
                        }
                        VideoBody::Frame { keyframe, data, .. } => video.push((timestamp, keyframe, data)),
                        VideoBody::EndOfSequence => {}
                    }
                    let _ = fan.send(frame);
                }
                IngestFrame::Opus { timestamp, data } => {
                    audio.push((timestamp, data.clone()));
                    let _ = fan.send(PlayFrame::Opus { timestamp: u64::from(timestamp), data });
                }
            }
        }
        (video, audio, headers)
    });

    // Publish 2 s of video (25 fps) and audio (50 packets/s) in real time; player 2
    // joins after ~0.9 s, in the middle of a GOP (keyframes every 10 frames = 0.4 s).
    let start = Instant::now();
    let end = start + Duration::from_millis(2000);
    let late_tx = tx.clone();
    let late_engine = engine.clone();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let asked = Instant::now();
        let (mut p2, offer) = Client::new(Direction::RecvOnly).await;
        // As the registry does: the current sequence header first, then live frames.
        let header = last_header.lock().clone();
        let playing = late_engine
            .play(&offer, "s1", LOCALHOST, Feed::spawn("s1", source(header, late_tx.subscribe())))
            .await
            .unwrap();
        p2.accept(&playing.answer);
        let got = run_player(p2, end + Duration::from_millis(1500)).await;
        (got, playing, asked)
    });
    let p1_task = tokio::spawn(run_player(p1, end + Duration::from_millis(1500)));

    let mut keyframe_requests = 0;
    let mut sent_at = Vec::new();
    let (vmid, amid) = (publisher.video, publisher.audio);
    for tick in 0..100usize {
        let at = start + Duration::from_millis(20 * tick as u64);
        publisher
            .run_until(at, &mut |_, e| keyframe_requests += usize::from(matches!(e, Event::KeyframeRequest(_))))
            .await;
        let now = Instant::now();
        let pt = publisher.rtc.writer(amid).unwrap().payload_params().next().unwrap().pt();
        publisher
            .rtc
            .writer(amid)
            .unwrap()
            .write(pt, now, MediaTime::new(960 * tick as u64, Frequency::FORTY_EIGHT_KHZ), opus(tick))
            .unwrap();
        if tick % 2 == 0 {
            let i = tick / 2;
            let data = nal::nals_to_annexb(aus[i].iter().map(Vec::as_slice));
            let w = publisher.rtc.writer(vmid).unwrap();
            let pt = w.payload_params().next().unwrap().pt();
            w.write(pt, now, MediaTime::from_90khz(3600 * i as u64), data).unwrap();
            sent_at.push(now);
        }
    }
    publisher
        .run_until(end + Duration::from_millis(1000), &mut |_, e| {
            keyframe_requests += usize::from(matches!(e, Event::KeyframeRequest(_)))
        })
        .await;

    // Stats while everything is connected.
    let pstats = engine.stats(published.id).unwrap();
    assert_eq!(pstats.state, SessionState::Connected);
    assert!(pstats.bytes_rx > 10_000, "{pstats:?}");
    assert!(pstats.frames >= 150, "{pstats:?}");
    let s1 = engine.stats(playing1.id).unwrap();
    assert_eq!(s1.state, SessionState::Connected);
    assert!(s1.bytes_tx > 10_000, "{s1:?}");
    eprintln!("publisher stats: {pstats:?}\nplayer stats: {s1:?}");

    let r1 = p1_task.await.unwrap();
    let (r2, playing2, asked) = late.await.unwrap();
    assert!(*playing2.keyframe_wanted.borrow() >= 1, "the late joiner asked for a keyframe");
    engine.close(published.id).await;
    let (video, audio, headers) = tokio::time::timeout(Duration::from_secs(5), consumer).await.unwrap().unwrap();

    // Ingest: the SPS/PPS became one sequence header (x264 repeats identical ones);
    // every picture arrived, keyframes where the fixture has IDRs, NAL bytes intact.
    assert_eq!(headers.len(), 1);
    let cfg = parse_avcc(&headers[0]).unwrap();
    assert_eq!((cfg.width, cfg.height, cfg.profile), (160, 120, 66));
    assert_eq!(cfg.sps[0], aus[0].iter().find(|n| nal::nal_type(n) == Some(7)).unwrap().clone());
    assert_eq!(video.len(), 50, "every picture reached the consumer");
    for (i, (ts, key, data)) in video.iter().enumerate() {
        assert_eq!(*key, i % 10 == 0, "frame {i} keyframe flag");
        let nals: Vec<Vec<u8>> = nal::split_avcc(data, 4).unwrap().into_iter().map(<[u8]>::to_vec).collect();
        assert_eq!(nals, picture(&aus[i]), "frame {i} NAL bytes");
        // 40 ms apart on the RTP clock (the first anchors the timeline).
        assert_eq!(u64::from(*ts - video[0].0), 40 * i as u64, "frame {i} timestamp");
    }
    assert_eq!(audio.len(), 100);
    for (i, (ts, data)) in audio.iter().enumerate() {
        assert_eq!(data.as_ref(), opus(i).as_slice(), "opus packet {i}");
        assert_eq!(u64::from(*ts - audio[0].0), 20 * i as u64);
    }
    // Both tracks start within 50 ms of each other on the common timeline.
    assert!(video[0].0.abs_diff(audio[0].0) < 50, "video {} audio {}", video[0].0, audio[0].0);

    // Player 1: every picture, in order, the same NAL bytes (SPS/PPS in front of keyframes).
    assert_eq!(r1.video.len(), 50, "player 1 got every picture");
    for (i, (key, nals)) in r1.video.iter().enumerate() {
        assert_eq!(*key, i % 10 == 0, "player 1 frame {i}");
        assert_eq!(picture(nals), picture(&aus[i]), "player 1 frame {i} NAL bytes");
        if *key {
            assert_eq!(nal::nal_type(&nals[0]), Some(7), "SPS first in keyframe {i}");
        }
    }
    assert_eq!(r1.audio.len(), 100);
    assert!(r1.audio.iter().enumerate().all(|(i, a)| *a == opus(i)), "player 1 audio intact");

    // Player 2 joined mid-GOP: its first picture is a keyframe, then the rest in order.
    let (first_key, first) = r2.video.first().expect("late joiner got video");
    assert!(*first_key, "late joiner starts on a keyframe");
    let k = aus.iter().position(|au| picture(au) == picture(first)).unwrap();
    assert!(k >= 10 && k % 10 == 0, "late joiner starts at keyframe {k}");
    assert_eq!(r2.video.len(), 50 - k, "late joiner got everything from its keyframe on");
    for (j, (_, nals)) in r2.video.iter().enumerate() {
        assert_eq!(picture(nals), picture(&aus[k + j]), "late joiner frame {j}");
    }
    // Numbers (not asserted tightly: the machine is shared): publisher write → player
    // depacketised frame, through the engine, the FLV conversion and back; and the late
    // joiner's time from making its offer to its first (key)frame.
    let mut lat: Vec<Duration> =
        r1.video_at.iter().zip(&sent_at).map(|(r, s)| r.saturating_duration_since(*s)).collect();
    lat.sort();
    let ttff = r2.video_at[0].saturating_duration_since(asked);
    eprintln!(
        "loopback WHIP→WHEP frame latency p50 {:?} p99 {:?} max {:?}; late joiner: first frame {:?} after its offer (keyframe {k})",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100],
        lat[lat.len() - 1],
        ttff
    );
    assert!(lat[lat.len() / 2] < Duration::from_millis(200), "p50 {:?}", lat[lat.len() / 2]);
    // Its join asked the WebRTC publisher for a keyframe (PLI).
    assert!(keyframe_requests >= 1, "publisher saw a keyframe request");

    // Closing the publisher ended its session and released it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(engine.stats(published.id).is_none());
    assert!(!engine.is_published("s1"));
}
