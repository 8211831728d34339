//! Per-stream rates over a sliding window, with the clock injected (milliseconds).
//!
//! Counts land in one-second buckets; rates are computed over the last
//! `WINDOW_SECS` complete seconds, so a reading is stable and costs O(window).

/// Seconds the rates are averaged over.
pub const WINDOW_SECS: usize = 5;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    second: u64,
    bytes: u64,
    video_frames: u64,
    audio_frames: u64,
}

/// Ingest counters of one stream.
#[derive(Debug, Clone)]
pub struct RateMeter {
    buckets: [Bucket; WINDOW_SECS + 1],
    started_ms: u64,
    /// Bytes since the start.
    pub total_bytes: u64,
    /// Video frames since the start.
    pub total_video_frames: u64,
    /// Audio frames since the start.
    pub total_audio_frames: u64,
}

/// A reading of a [`RateMeter`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Rates {
    /// Bits per second (audio + video payload).
    pub bitrate_bps: u64,
    /// Video frames per second.
    pub video_fps: f64,
    /// Audio frames per second.
    pub audio_fps: f64,
}

impl RateMeter {
    /// A meter started at `now_ms`.
    pub fn new(now_ms: u64) -> RateMeter {
        RateMeter {
            buckets: [Bucket::default(); WINDOW_SECS + 1],
            started_ms: now_ms,
            total_bytes: 0,
            total_video_frames: 0,
            total_audio_frames: 0,
        }
    }

    fn bucket(&mut self, now_ms: u64) -> &mut Bucket {
        let second = now_ms / 1000;
        let b = &mut self.buckets[(second % (WINDOW_SECS as u64 + 1)) as usize];
        if b.second != second {
            *b = Bucket { second, ..Bucket::default() };
        }
        b
    }

    /// Counts one frame of `bytes` (video when `video`).
    pub fn record(&mut self, now_ms: u64, bytes: usize, video: bool) {
        let b = self.bucket(now_ms);
        b.bytes += bytes as u64;
        if video {
            b.video_frames += 1;
        } else {
            b.audio_frames += 1;
        }
        self.total_bytes += bytes as u64;
        if video {
            self.total_video_frames += 1;
        } else {
            self.total_audio_frames += 1;
        }
    }

    /// Rates over the last complete seconds (fewer right after the start).
    pub fn rates(&self, now_ms: u64) -> Rates {
        let current = now_ms / 1000;
        let first = self.started_ms / 1000;
        // Complete seconds in the window: never the current one, never before the start
        // (the starting second is partial, so it is skipped unless it is all we have).
        let from = current.saturating_sub(WINDOW_SECS as u64).max(first + 1).min(current);
        let secs = current - from;
        if secs == 0 {
            return Rates::default();
        }
        let (mut bytes, mut v, mut a) = (0, 0, 0);
        for b in &self.buckets {
            if b.second >= from && b.second < current {
                bytes += b.bytes;
                v += b.video_frames;
                a += b.audio_frames;
            }
        }
        Rates { bitrate_bps: bytes * 8 / secs, video_fps: v as f64 / secs as f64, audio_fps: a as f64 / secs as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_stream_reads_its_rate() {
        let mut m = RateMeter::new(10_500);
        // 30 fps video of 2500 bytes, 43 audio frames of 200 bytes per second, for 8 s.
        for ms in 10_500..18_500u64 {
            if ms % 1000 < 30 * 33 && ms % 33 == 0 {
                m.record(ms, 2500, true);
            }
            if ms % 23 == 0 && ms % 1000 < 43 * 23 {
                m.record(ms, 200, false);
            }
        }
        let r = m.rates(18_500);
        assert_eq!(r.video_fps, 30.0);
        assert_eq!(r.audio_fps, 43.0);
        assert_eq!(r.bitrate_bps, (30 * 2500 + 43 * 200) * 8);
    }

    #[test]
    fn idle_and_fresh_meters_read_zero() {
        let m = RateMeter::new(1_000);
        assert_eq!(m.rates(1_200), Rates::default());
        let mut m = RateMeter::new(0);
        m.record(100, 1000, true);
        assert_eq!(m.rates(60_000), Rates::default(), "nothing in the last seconds");
    }
}
