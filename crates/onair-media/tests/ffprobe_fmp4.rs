//! Real media through the pure muxers: ffmpeg encodes a test pattern with a tone to FLV,
//! the frames go through the LL-HLS segmenter, and ffprobe reads what comes out (the HLS
//! VOD playlist with its fMP4 segments, and the init + parts concatenation that the live
//! fMP4 stream sends). Skips with a message when ffmpeg/ffprobe are absent.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

use onair_media::codec::StreamConfig;
use onair_media::flv::{self, FlvDemuxer, Parsed};
use onair_media::frame::{CodecConfig, MediaFrame, TrackKind};
use onair_media::hls::{HlsConfig, HlsEvent, Segmenter, VodSegment, vod_playlist};

fn have(tool: &str) -> bool {
    Command::new(tool).arg("-version").output().is_ok_and(|o| o.status.success())
}

/// Reads an FLV file with the crate's own demuxer and tag parser.
fn read_flv(data: &[u8]) -> (Vec<CodecConfig>, Vec<MediaFrame>) {
    let mut demux = FlvDemuxer::new();
    demux.push(data);
    let (mut configs, mut frames) = (Vec::new(), Vec::new());
    while let Some(tag) = demux.next_tag().unwrap() {
        let kind = match tag.tag_type {
            8 => TrackKind::Audio,
            9 => TrackKind::Video,
            _ => continue,
        };
        match flv::parse_media(kind, &tag.body, u64::from(tag.timestamp)).unwrap() {
            Parsed::Config(c) => configs.push(c),
            Parsed::Frame(f) => frames.push(f),
            Parsed::Nothing => {}
        }
    }
    (configs, frames)
}

fn ffprobe_json(args: &[&str], input: &Path) -> serde_json::Value {
    let out = Command::new("ffprobe").args(["-v", "error", "-of", "json"]).args(args).arg(input).output().unwrap();
    assert!(out.status.success(), "ffprobe failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn check_streams(probe: &serde_json::Value, min_duration: f64) {
    let streams = probe["streams"].as_array().unwrap();
    let codecs: Vec<&str> = streams.iter().map(|s| s["codec_name"].as_str().unwrap()).collect();
    assert_eq!(codecs.len(), 2, "{probe}");
    assert!(codecs.contains(&"h264") && codecs.contains(&"aac"), "{codecs:?}");
    let video = streams.iter().find(|s| s["codec_name"] == "h264").unwrap();
    assert_eq!((video["width"].as_u64(), video["height"].as_u64()), (Some(640), Some(360)));
    let duration: f64 = probe["format"]["duration"].as_str().unwrap().parse().unwrap();
    assert!(duration >= min_duration, "duration {duration}");
}

fn check_monotonic(path: &Path) -> usize {
    let probe = ffprobe_json(&["-show_entries", "packet=stream_index,dts_time", "-show_packets"], path);
    let mut last = [f64::MIN; 2];
    let packets = probe["packets"].as_array().unwrap();
    for p in packets {
        let i = p["stream_index"].as_u64().unwrap() as usize;
        let dts: f64 = p["dts_time"].as_str().unwrap().parse().unwrap();
        assert!(dts > last[i], "stream {i}: dts {dts} after {}", last[i]);
        last[i] = dts;
    }
    packets.len()
}

#[test]
fn hls_segments_and_live_fmp4_read_by_ffprobe() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("SKIPPED: ffmpeg/ffprobe not installed");
        return;
    }
    let dir = tempfile::TempDir::new().unwrap();
    let flv = dir.path().join("in.flv");
    let status = Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "6"])
        .args(["-c:v", "libx264", "-g", "30", "-bf", "2", "-c:a", "aac", "-b:a", "64k"])
        .arg(&flv)
        .status()
        .unwrap();
    assert!(status.success());
    let (configs, frames) = read_flv(&std::fs::read(&flv).unwrap());
    let mut stream = StreamConfig::default();
    for c in &configs {
        stream.apply(c).unwrap();
    }
    assert_eq!(stream.codecs(), "avc1.64001e,mp4a.40.2");

    let mut seg = Segmenter::new(HlsConfig::default(), &stream).unwrap();
    let mut events = Vec::new();
    for f in frames {
        events.extend(seg.push(f, 1_700_000_000_000));
    }
    // Parts as they were produced (for the live stream) — collected before the window drops them.
    let mut live = seg.init().to_vec();
    let mut vod = Vec::new();
    let mut seen_parts = 0;
    events.extend(seg.finish());
    for e in &events {
        match *e {
            HlsEvent::Part { .. } => seen_parts += 1,
            HlsEvent::Segment { msn } => {
                let s = seg.segment(msn).unwrap();
                std::fs::write(dir.path().join(format!("{msn}.m4s")), &s.data).unwrap();
                vod.push(VodSegment { uri: format!("{msn}.m4s"), duration_ms: s.duration_ms, init: "init.mp4".into() });
                live.extend_from_slice(&s.data);
            }
        }
    }
    assert_eq!(vod.len(), 3, "6 s at 1 s GOPs and a 2 s target");
    assert!(seen_parts >= 12, "parts: {seen_parts}");
    std::fs::write(dir.path().join("init.mp4"), seg.init()).unwrap();
    let m3u8 = dir.path().join("index.m3u8");
    std::fs::write(&m3u8, vod_playlist(&vod)).unwrap();

    let probe = ffprobe_json(&["-show_streams", "-show_format"], &m3u8);
    check_streams(&probe, 5.5);
    assert!(check_monotonic(&m3u8) > 400);

    let mp4 = dir.path().join("live.mp4");
    std::fs::write(&mp4, &live).unwrap();
    let probe = ffprobe_json(&["-show_streams", "-show_format"], &mp4);
    check_streams(&probe, 5.5);
    assert!(check_monotonic(&mp4) > 400);

    // A full decode finds no errors (frame flags, composition offsets, audio config).
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-xerror", "-i"])
        .arg(&mp4)
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
