//! Stream monitoring: a publish session's health computed from the frames the
//! registry sees, sampled into a bounded ring, and the alerts it raises.
//!
//! Pure: the shell feeds every frame with its arrival time ([`StreamMonitor::frame`]),
//! asks for a sample every few seconds with the viewer counts it knows
//! ([`StreamMonitor::sample`]) and tells it when the publisher left
//! ([`StreamMonitor::end`]). Each call returns the alert changes (raised or cleared)
//! the shell turns into webhooks, metrics and the studio's list.
//!
//! What is measured, per sample window:
//! * bitrate and frame rates from the payload bytes and frames that arrived;
//! * the keyframe interval: the decode-time distance of the last two video keyframes;
//! * A/V drift: the last video timestamp minus the last audio timestamp (a publisher
//!   whose tracks drift apart shows a growing value);
//! * dropped frames: video timestamp gaps beyond 2.5 typical frame intervals, counted
//!   as the frames that would have filled them;
//! * late frames: frames arriving more than `late_ms` after the time their timestamp
//!   promises, measured against the earliest frame of the session (a stalled uplink
//!   delivers a burst of late frames).

use std::collections::VecDeque;

use serde_json::{Value, json};

/// Tuning of the monitor and its alert thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MonitorConfig {
    /// Samples kept per stream (the ring's length).
    pub history_len: usize,
    /// A sample whose bitrate is below this raises `low_bitrate` (0 = off).
    pub low_bitrate_bps: u64,
    /// No video keyframe for this long raises `no_keyframe` (0 = off).
    pub keyframe_timeout_ms: u64,
    /// A frame this much behind its timestamp's promise is late.
    pub late_ms: u64,
    /// Alert changes remembered for the API (newest last).
    pub recent_alerts: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            history_len: 300,
            low_bitrate_bps: 0,
            keyframe_timeout_ms: 10_000,
            late_ms: 1_000,
            recent_alerts: 50,
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    /// The ingest bitrate fell below `low_bitrate_bps`.
    LowBitrate,
    /// No video keyframe for `keyframe_timeout_ms`.
    NoKeyframe,
    /// The publisher left (the session ended).
    PublisherGone,
}

impl AlertKind {
    /// Every kind, for metrics that must read 0 when nothing is wrong.
    pub const ALL: [AlertKind; 3] = [AlertKind::LowBitrate, AlertKind::NoKeyframe, AlertKind::PublisherGone];

    /// The name used in the API, webhooks and metric labels.
    pub fn name(self) -> &'static str {
        match self {
            AlertKind::LowBitrate => "low_bitrate",
            AlertKind::NoKeyframe => "no_keyframe",
            AlertKind::PublisherGone => "publisher_gone",
        }
    }
}

/// An alert raised or cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertChange {
    /// What.
    pub kind: AlertKind,
    /// Raised (true) or cleared (false).
    pub raised: bool,
    /// When (the injected clock, Unix ms).
    pub at_ms: u64,
    /// A sentence for people.
    pub detail: String,
}

impl AlertChange {
    /// The API's / webhook's shape.
    pub fn to_json(&self) -> Value {
        json!({
            "alert": self.kind.name(),
            "state": if self.raised { "raised" } else { "cleared" },
            "at": self.at_ms,
            "detail": self.detail,
        })
    }
}

/// One point of a stream's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// End of the window (Unix ms).
    pub at_ms: u64,
    /// Ingest bitrate over the window, bit/s.
    pub bitrate_bps: u64,
    /// Video frames per second over the window.
    pub video_fps: f64,
    /// Audio frames per second over the window.
    pub audio_fps: f64,
    /// Decode-time distance of the last two keyframes, ms (None before the second).
    pub keyframe_interval_ms: Option<u64>,
    /// Last video dts minus last audio dts, ms (None without both tracks).
    pub av_drift_ms: Option<i64>,
    /// Video frames missing from the timestamps in the window.
    pub dropped_frames: u64,
    /// Frames that arrived late in the window.
    pub late_frames: u64,
    /// Viewers by protocol at the end of the window (the shell's counts).
    pub viewers: Vec<(&'static str, u64)>,
}

impl Sample {
    /// The API's shape.
    pub fn to_json(&self) -> Value {
        let viewers: serde_json::Map<String, Value> =
            self.viewers.iter().map(|(p, n)| ((*p).to_string(), json!(n))).collect();
        json!({
            "at": self.at_ms,
            "bitrateBps": self.bitrate_bps,
            "videoFps": (self.video_fps * 100.0).round() / 100.0,
            "audioFps": (self.audio_fps * 100.0).round() / 100.0,
            "keyframeIntervalMs": self.keyframe_interval_ms,
            "avDriftMs": self.av_drift_ms,
            "droppedFrames": self.dropped_frames,
            "lateFrames": self.late_frames,
            "viewers": viewers,
        })
    }
}

/// Counts of the current window.
#[derive(Debug, Clone, Copy, Default)]
struct Window {
    started_ms: u64,
    bytes: u64,
    video_frames: u64,
    audio_frames: u64,
    dropped: u64,
    late: u64,
}

/// One publish session's monitor.
#[derive(Debug, Clone)]
pub struct StreamMonitor {
    cfg: MonitorConfig,
    started_ms: u64,
    window: Window,
    last_video_dts: Option<u64>,
    last_audio_dts: Option<u64>,
    /// Decode times of the last two keyframes.
    keys: [Option<u64>; 2],
    /// Arrival of the last keyframe (or the start, before the first).
    last_key_at_ms: u64,
    has_video: bool,
    /// Typical video frame interval (ms), learned from the timestamps.
    frame_interval_ms: Option<f64>,
    /// min(arrival − dts) over the session: the zero of lateness.
    clock_base: Option<i128>,
    ring: VecDeque<Sample>,
    active: Vec<AlertKind>,
    recent: VecDeque<AlertChange>,
    ended_ms: Option<u64>,
    /// Session totals.
    pub dropped_total: u64,
    /// Session totals.
    pub late_total: u64,
}

impl StreamMonitor {
    /// A monitor for a session that started at `now_ms`.
    pub fn new(cfg: MonitorConfig, now_ms: u64) -> StreamMonitor {
        StreamMonitor {
            cfg,
            started_ms: now_ms,
            window: Window { started_ms: now_ms, ..Window::default() },
            last_video_dts: None,
            last_audio_dts: None,
            keys: [None, None],
            last_key_at_ms: now_ms,
            has_video: false,
            frame_interval_ms: None,
            clock_base: None,
            ring: VecDeque::with_capacity(cfg.history_len.min(1024)),
            active: Vec::new(),
            recent: VecDeque::new(),
            ended_ms: None,
            dropped_total: 0,
            late_total: 0,
        }
    }

    /// One frame of `bytes` payload with decode time `dts` (ms), arrived at `now_ms`.
    pub fn frame(&mut self, now_ms: u64, video: bool, keyframe: bool, dts: u64, bytes: usize) {
        self.window.bytes += bytes as u64;
        // Lateness: how far behind the session's best arrival-vs-timestamp offset this
        // frame is. The base only moves earlier, so a burst after a stall stays late.
        let offset = now_ms as i128 - dts as i128;
        let base = *self.clock_base.get_or_insert(offset);
        if offset < base {
            self.clock_base = Some(offset);
        } else if (offset - base) as u64 > self.cfg.late_ms {
            self.window.late += 1;
            self.late_total += 1;
        }
        if !video {
            self.window.audio_frames += 1;
            self.last_audio_dts = Some(dts);
            return;
        }
        self.has_video = true;
        self.window.video_frames += 1;
        if let Some(prev) = self.last_video_dts.filter(|p| dts > *p) {
            let gap = (dts - prev) as f64;
            match self.frame_interval_ms {
                Some(typical) if gap > typical * 2.5 => {
                    let missing = (gap / typical).round() as u64;
                    let missing = missing.saturating_sub(1);
                    self.window.dropped += missing;
                    self.dropped_total += missing;
                }
                // Learn the typical interval from ordinary gaps only (a slow average,
                // so one odd gap does not move it much).
                Some(typical) => self.frame_interval_ms = Some(typical * 0.9 + gap * 0.1),
                None => self.frame_interval_ms = Some(gap),
            }
        }
        if self.last_video_dts.is_none_or(|p| dts > p) {
            self.last_video_dts = Some(dts);
        }
        if keyframe {
            self.keys = [self.keys[1], Some(dts)];
            self.last_key_at_ms = now_ms;
        }
    }

    /// Closes the window at `now_ms`: appends a sample (the oldest goes when the ring
    /// is full) and evaluates the alerts.
    pub fn sample(&mut self, now_ms: u64, viewers: Vec<(&'static str, u64)>) -> Vec<AlertChange> {
        let w = std::mem::replace(&mut self.window, Window { started_ms: now_ms, ..Window::default() });
        let elapsed = now_ms.saturating_sub(w.started_ms).max(1);
        let per_sec = |n: u64| n as f64 * 1000.0 / elapsed as f64;
        let sample = Sample {
            at_ms: now_ms,
            bitrate_bps: w.bytes * 8 * 1000 / elapsed,
            video_fps: per_sec(w.video_frames),
            audio_fps: per_sec(w.audio_frames),
            keyframe_interval_ms: match self.keys {
                [Some(a), Some(b)] => Some(b.saturating_sub(a)),
                _ => None,
            },
            av_drift_ms: match (self.last_video_dts, self.last_audio_dts) {
                (Some(v), Some(a)) => Some(v as i64 - a as i64),
                _ => None,
            },
            dropped_frames: w.dropped,
            late_frames: w.late,
            viewers,
        };
        let mut changes = Vec::new();
        // The first window of a session is partial (the encoder is starting): no bitrate verdict.
        let settled = w.started_ms > self.started_ms;
        if self.cfg.low_bitrate_bps > 0 && settled {
            let low = sample.bitrate_bps < self.cfg.low_bitrate_bps;
            let detail = format!(
                "ingest bitrate {} kbit/s, threshold {} kbit/s",
                sample.bitrate_bps / 1000,
                self.cfg.low_bitrate_bps / 1000
            );
            self.set(AlertKind::LowBitrate, low, now_ms, detail, &mut changes);
        }
        if self.cfg.keyframe_timeout_ms > 0 && self.has_video {
            let since = now_ms.saturating_sub(self.last_key_at_ms);
            let stale = since >= self.cfg.keyframe_timeout_ms;
            let detail =
                format!("no video keyframe for {} s (limit {} s)", since / 1000, self.cfg.keyframe_timeout_ms / 1000);
            self.set(AlertKind::NoKeyframe, stale, now_ms, detail, &mut changes);
        }
        if self.ring.len() >= self.cfg.history_len.max(1) {
            self.ring.pop_front();
        }
        self.ring.push_back(sample);
        changes
    }

    /// The publisher left at `now_ms` (`why` as the log says it): raises
    /// `publisher_gone` and clears the others (they described a session that is over).
    pub fn end(&mut self, now_ms: u64, why: &str) -> Vec<AlertChange> {
        if self.ended_ms.is_some() {
            return Vec::new();
        }
        self.ended_ms = Some(now_ms);
        let mut changes = Vec::new();
        for kind in [AlertKind::LowBitrate, AlertKind::NoKeyframe] {
            self.set(kind, false, now_ms, "the session ended".into(), &mut changes);
        }
        let secs = now_ms.saturating_sub(self.started_ms) / 1000;
        let detail = format!("the publisher left after {secs} s ({why})");
        self.set(AlertKind::PublisherGone, true, now_ms, detail, &mut changes);
        changes
    }

    fn set(&mut self, kind: AlertKind, on: bool, now_ms: u64, detail: String, out: &mut Vec<AlertChange>) {
        let was = self.active.contains(&kind);
        if was == on {
            return;
        }
        if on {
            self.active.push(kind);
        } else {
            self.active.retain(|k| *k != kind);
        }
        let change = AlertChange { kind, raised: on, at_ms: now_ms, detail };
        if self.recent.len() >= self.cfg.recent_alerts.max(1) {
            self.recent.pop_front();
        }
        self.recent.push_back(change.clone());
        out.push(change);
    }

    /// The samples, oldest first.
    pub fn history(&self) -> impl Iterator<Item = &Sample> {
        self.ring.iter()
    }

    /// The newest sample.
    pub fn last(&self) -> Option<&Sample> {
        self.ring.back()
    }

    /// Alerts raised and not cleared.
    pub fn active(&self) -> &[AlertKind] {
        &self.active
    }

    /// The last alert changes, oldest first.
    pub fn recent_alerts(&self) -> impl Iterator<Item = &AlertChange> {
        self.recent.iter()
    }

    /// When the session ended (None while live).
    pub fn ended_at(&self) -> Option<u64> {
        self.ended_ms
    }

    /// When the session started.
    pub fn started_at(&self) -> u64 {
        self.started_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> MonitorConfig {
        MonitorConfig { history_len: 4, low_bitrate_bps: 100_000, keyframe_timeout_ms: 5_000, ..Default::default() }
    }

    /// 30 fps video (a keyframe every `gop` frames, 2000 bytes) + 43 fps audio
    /// (200 bytes) in real time from `from_ms` for `secs` seconds; dts = arrival − t0.
    fn feed(m: &mut StreamMonitor, t0: u64, from_ms: u64, secs: u64, gop: u64) {
        for ms in from_ms..from_ms + secs * 1000 {
            let dts = ms - t0;
            if dts.is_multiple_of(33) {
                let n = dts / 33;
                m.frame(ms, true, n.is_multiple_of(gop), dts, 2000);
            }
            if dts.is_multiple_of(23) {
                m.frame(ms, false, true, dts, 200);
            }
        }
    }

    #[test]
    fn a_steady_stream_reads_its_rates_and_gop() {
        let mut m = StreamMonitor::new(cfg(), 1_000);
        feed(&mut m, 1_000, 1_000, 2, 30);
        assert!(m.sample(3_000, vec![("flv", 2)]).is_empty(), "first window: no bitrate verdict");
        feed(&mut m, 1_000, 3_000, 2, 30);
        let changes = m.sample(5_000, vec![("flv", 3)]);
        assert!(changes.is_empty(), "{changes:?}");
        let s = m.last().cloned().unwrap_or_else(|| panic!("a sample"));
        assert!((s.video_fps - 30.3).abs() < 0.6, "{}", s.video_fps);
        assert!((s.audio_fps - 43.5).abs() < 0.6, "{}", s.audio_fps);
        let expected = (2000.0 * s.video_fps + 200.0 * s.audio_fps) * 8.0;
        assert!((s.bitrate_bps as f64 - expected).abs() < expected * 0.02, "{} vs {expected}", s.bitrate_bps);
        assert_eq!(s.keyframe_interval_ms, Some(990), "30 frames of 33 ms");
        assert!(s.av_drift_ms.is_some_and(|d| d.abs() < 33), "{:?}", s.av_drift_ms);
        assert_eq!((s.dropped_frames, s.late_frames), (0, 0));
        assert_eq!(s.viewers, vec![("flv", 3)]);
        assert_eq!(s.to_json()["viewers"]["flv"], 3);
    }

    #[test]
    fn the_ring_is_bounded() {
        let mut m = StreamMonitor::new(cfg(), 0);
        for i in 1..=10 {
            m.sample(i * 2000, Vec::new());
        }
        let at: Vec<u64> = m.history().map(|s| s.at_ms).collect();
        assert_eq!(at, vec![14_000, 16_000, 18_000, 20_000]);
    }

    #[test]
    fn gaps_are_dropped_frames_and_bursts_after_a_stall_are_late() {
        let mut m = StreamMonitor::new(cfg(), 0);
        // 10 frames at 40 ms, then a 200 ms gap (4 missing), then more.
        for i in 0..10u64 {
            m.frame(i * 40, true, i == 0, i * 40, 100);
        }
        m.frame(360 + 200, true, false, 360 + 200, 100);
        assert_eq!(m.dropped_total, 4);
        // A 3 s stall of the uplink: the next 5 frames arrive together, late.
        for i in 0..5u64 {
            m.frame(4_000, true, false, 600 + i * 40, 100);
        }
        assert_eq!(m.late_total, 5);
        let s = {
            m.sample(4_000, Vec::new());
            m.last().cloned().unwrap_or_else(|| panic!("a sample"))
        };
        assert_eq!((s.dropped_frames, s.late_frames), (4, 5));
        // Timestamps going backwards are neither drops nor a new maximum.
        m.frame(4_040, true, false, 10, 100);
        assert_eq!(m.dropped_total, 4);
    }

    #[test]
    fn alerts_are_raised_once_and_cleared() {
        let mut m = StreamMonitor::new(cfg(), 0);
        feed(&mut m, 0, 0, 2, 30);
        assert!(m.sample(2_000, Vec::new()).is_empty());
        // Keyframes stop: video goes on without them.
        let no_keys = |m: &mut StreamMonitor, from: u64, to: u64| {
            for ms in (from..to).filter(|ms| ms % 33 == 0) {
                m.frame(ms, true, false, ms, 2000);
            }
        };
        no_keys(&mut m, 2_000, 9_000);
        let changes = m.sample(9_000, Vec::new());
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!((changes[0].kind, changes[0].raised), (AlertKind::NoKeyframe, true));
        assert!(changes[0].detail.contains("no video keyframe for 7 s"), "{}", changes[0].detail);
        no_keys(&mut m, 9_000, 10_000);
        assert!(m.sample(10_000, Vec::new()).is_empty(), "raised once");
        m.frame(10_100, true, true, 10_100, 2000);
        // Nothing else arrived in [10_000, 11_000): the bitrate is low now.
        let changes = m.sample(11_000, Vec::new());
        let kinds: Vec<(AlertKind, bool)> = changes.iter().map(|c| (c.kind, c.raised)).collect();
        assert_eq!(kinds, vec![(AlertKind::LowBitrate, true), (AlertKind::NoKeyframe, false)]);
        assert_eq!(m.active(), &[AlertKind::LowBitrate]);
        let end = m.end(12_000, "the client closed");
        let kinds: Vec<(AlertKind, bool)> = end.iter().map(|c| (c.kind, c.raised)).collect();
        assert_eq!(kinds, vec![(AlertKind::LowBitrate, false), (AlertKind::PublisherGone, true)]);
        assert!(end[1].detail.contains("after 12 s"), "{}", end[1].detail);
        assert!(m.end(13_000, "again").is_empty(), "ends once");
        assert_eq!(m.ended_at(), Some(12_000));
        assert_eq!(m.recent_alerts().count(), 5);
        assert_eq!(m.recent_alerts().last().map(|c| c.to_json()["alert"].clone()), Some(json!("publisher_gone")));
    }

    #[test]
    fn audio_only_streams_never_miss_keyframes() {
        let mut m = StreamMonitor::new(cfg(), 0);
        for ms in (0..20_000u64).step_by(23) {
            m.frame(ms, false, true, ms, 200);
        }
        assert!(m.sample(20_000, Vec::new()).is_empty());
        assert_eq!(m.last().and_then(|s| s.av_drift_ms), None);
    }
}
