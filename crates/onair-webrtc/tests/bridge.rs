//! The audio bridge with a real `ffmpeg`: real Opus (libopus via ffmpeg) becomes AAC in
//! FLV audio tag bodies on the caller's timeline, and real AAC becomes 20 ms Opus packets.
//! Skips with a message when ffmpeg is absent (as the other media tests do; `.ci/run`
//! installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use onair_media::codec::parse_asc;
use onair_media::flv::{AudioBody, FlvDemuxer, TAG_AUDIO, parse_audio};
use onair_webrtc::bridge::{AudioBridge, AudioPacket, BridgeKind};
use onair_webrtc::ogg::{OggReader, opus_packet_samples};

fn have_ffmpeg() -> bool {
    let ok = std::process::Command::new("ffmpeg").arg("-version").output().is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("skipped: ffmpeg is not installed");
    }
    ok
}

fn ffmpeg(args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new("ffmpeg").args(args).output().expect("ffmpeg runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

const SINE: &[&str] = &[
    "-hide_banner",
    "-loglevel",
    "error",
    "-f",
    "lavfi",
    "-i",
    "sine=frequency=440:sample_rate=48000:duration=2",
    "-ac",
    "2",
];

#[tokio::test]
async fn opus_in_aac_out() {
    if !have_ffmpeg() {
        return;
    }
    let mut args = SINE.to_vec();
    args.extend([
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
        "-frame_duration",
        "20",
        "-page_duration",
        "20000",
        "-f",
        "ogg",
        "pipe:1",
    ]);
    let mut r = OggReader::new();
    r.push(&ffmpeg(&args));
    let mut packets = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        packets.push(p.data);
    }
    let packets = &packets[2..]; // OpusHead, OpusTags
    assert!((100..=101).contains(&packets.len()), "{}", packets.len());

    let mut bridge = AudioBridge::spawn(BridgeKind::OpusToAac, "ffmpeg", 96).unwrap();
    let t0 = Instant::now();
    for (i, p) in packets.iter().enumerate() {
        assert!(bridge.send(AudioPacket { timestamp: 1000 + 20 * i as u64, data: Bytes::from(p.clone()) }));
    }
    let first = tokio::time::timeout(Duration::from_secs(20), bridge.recv()).await.unwrap().unwrap();
    let first_latency = t0.elapsed();
    bridge.finish();
    let mut out = vec![first];
    while let Some(p) = tokio::time::timeout(Duration::from_secs(20), bridge.recv()).await.unwrap() {
        out.push(p);
    }
    match parse_audio(&out[0].data).unwrap() {
        AudioBody::SequenceHeader(asc) => {
            let c = parse_asc(&asc).unwrap();
            assert_eq!((c.object_type, c.sample_rate, c.channels), (2, 48000, 2));
        }
        other => panic!("first is not a sequence header: {other:?}"),
    }
    let frames: Vec<&AudioPacket> = out[1..].iter().collect();
    // 2 s at 1024 samples per AAC frame is 93.75 frames (+ encoder priming/flush).
    assert!((92..=97).contains(&frames.len()), "{} AAC frames", frames.len());
    assert!(frames.iter().all(|p| matches!(parse_audio(&p.data), Ok(AudioBody::Frame(_)))));
    assert!(frames.windows(2).all(|w| w[0].timestamp <= w[1].timestamp), "monotonic");
    let (a, z) = (frames[0].timestamp, frames[frames.len() - 1].timestamp);
    assert!((980..=1050).contains(&a), "first AAC frame at {a}");
    assert!((2900..=3050).contains(&z), "last AAC frame at {z}");
    eprintln!("opus→aac: first output after {first_latency:?} (all input queued at once)");
}

#[tokio::test]
async fn aac_in_opus_out() {
    if !have_ffmpeg() {
        return;
    }
    let mut args = SINE.to_vec();
    args.extend(["-c:a", "aac", "-b:a", "96k", "-f", "flv", "pipe:1"]);
    let mut d = FlvDemuxer::new();
    d.push(&ffmpeg(&args));
    let mut bridge = AudioBridge::spawn(BridgeKind::AacToOpus, "ffmpeg", 64).unwrap();
    let mut n = 0;
    while let Some(tag) = d.next_tag().unwrap() {
        if tag.tag_type == TAG_AUDIO {
            assert!(bridge.send(AudioPacket { timestamp: 5000 + u64::from(tag.timestamp), data: tag.body }));
            n += 1;
        }
    }
    assert!(n > 90);
    bridge.finish();
    let mut out = Vec::new();
    while let Some(p) = tokio::time::timeout(Duration::from_secs(20), bridge.recv()).await.unwrap() {
        out.push(p);
    }
    eprintln!("{} opus packets, first ts {:?}", out.len(), out.first().map(|p| p.timestamp));
    assert!((98..=103).contains(&out.len()), "{} Opus packets", out.len());
    assert!(out.iter().all(|p| opus_packet_samples(&p.data) == Some(960)), "20 ms packets");
    for w in out.windows(2) {
        assert_eq!(w[1].timestamp - w[0].timestamp, 20, "20 ms apart");
    }
    let a = out[0].timestamp;
    assert!((4990..=5030).contains(&a), "first Opus packet at {a}");
}

/// Fed in real time (one Opus packet every 20 ms), how far behind its input does AAC come
/// out? Printed, and bounded loosely (the machine is shared).
#[tokio::test]
async fn opus_to_aac_delay_in_real_time() {
    if !have_ffmpeg() {
        return;
    }
    let mut args = SINE.to_vec();
    args.extend([
        "-c:a",
        "libopus",
        "-b:a",
        "64k",
        "-frame_duration",
        "20",
        "-page_duration",
        "20000",
        "-f",
        "ogg",
        "pipe:1",
    ]);
    let mut r = OggReader::new();
    r.push(&ffmpeg(&args));
    let mut packets = Vec::new();
    while let Some(p) = r.next_packet().unwrap() {
        packets.push(p.data);
    }
    let packets: Vec<Vec<u8>> = packets.split_off(2);
    let mut bridge = AudioBridge::spawn(BridgeKind::OpusToAac, "ffmpeg", 96).unwrap();
    let start = tokio::time::Instant::now();
    let mut input = packets.into_iter().enumerate().map(|(i, p)| (20 * i as u64, Bytes::from(p))).peekable();
    let mut delays = Vec::new();
    loop {
        let next = input.peek().map(|(ts, _)| start + Duration::from_millis(*ts));
        tokio::select! {
            _ = tokio::time::sleep_until(next.unwrap_or(start)), if next.is_some() => {
                if let Some((timestamp, data)) = input.next() {
                    assert!(bridge.send(AudioPacket { timestamp, data }));
                }
                if input.peek().is_none() {
                    bridge.finish();
                }
            }
            p = tokio::time::timeout(Duration::from_secs(5), bridge.recv()) => {
                let Ok(Some(p)) = p else { break };
                if matches!(parse_audio(&p.data), Ok(AudioBody::Frame(_))) {
                    let due = start + Duration::from_millis(p.timestamp);
                    delays.push(tokio::time::Instant::now().saturating_duration_since(due));
                }
            }
        }
    }
    delays.sort();
    assert!(delays.len() > 80, "{} frames", delays.len());
    eprintln!("opus→aac in real time: delay p50 {:?} max {:?}", delays[delays.len() / 2], delays[delays.len() - 1]);
    assert!(delays[delays.len() / 2] < Duration::from_millis(1000));
}
