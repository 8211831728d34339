//! Low-latency HLS: a pure segmenter that cuts fMP4 parts and segments from frames, the
//! media playlist it renders, and the decision for blocking playlist reloads.
//!
//! Cutting rules:
//! - a stream starts at its first video keyframe (audio-only streams at the first frame);
//! - a segment ends at a video keyframe once it is at least the segment target long, so
//!   every segment starts with a keyframe (long GOPs make long segments; the playlist's
//!   `TARGETDURATION` follows the longest segment seen);
//! - a part ends before the frame that would take it past the part target, so every part
//!   is at most `PART-TARGET` long (RFC 8216bis §4.4.4.9) and a segment's last part is
//!   what remains; a part whose first video frame is a keyframe is `INDEPENDENT=YES`.
//!
//! The wall clock is an input (`push(frame, wall_ms)`), never read here, so every
//! behaviour is deterministic and testable with data tables.

use std::collections::VecDeque;
use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};

use crate::codec::StreamConfig;
use crate::fmp4::{Fmp4Error, Fragmenter, init_segment};
use crate::frame::{MediaFrame, TrackKind};

/// Segmenter settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HlsConfig {
    /// Minimum segment length in ms (segments are cut at the first keyframe after it).
    pub segment_target_ms: u64,
    /// Part target in ms, clamped to 200..=1000 (the range LL-HLS players handle well).
    pub part_target_ms: u64,
    /// Complete segments kept in the live playlist window.
    pub window: usize,
    /// Trailing complete segments whose parts are listed (and kept in memory).
    pub part_segments: usize,
}

impl Default for HlsConfig {
    fn default() -> Self {
        HlsConfig { segment_target_ms: 2000, part_target_ms: 500, window: 10, part_segments: 3 }
    }
}

impl HlsConfig {
    fn normalized(mut self) -> Self {
        self.part_target_ms = self.part_target_ms.clamp(200, 1000);
        self.segment_target_ms = self.segment_target_ms.max(self.part_target_ms);
        self.window = self.window.max(2);
        self.part_segments = self.part_segments.clamp(1, self.window);
        self
    }
}

/// A partial segment: one `moof` + `mdat`.
#[derive(Debug, Clone)]
pub struct Part {
    pub duration_ms: u64,
    /// Starts with a video keyframe (or the stream is audio-only).
    pub independent: bool,
    pub data: Bytes,
}

/// A complete media segment.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Media sequence number.
    pub msn: u64,
    pub duration_ms: u64,
    /// Wall-clock time of the first frame, Unix ms.
    pub program_date_time_ms: u64,
    /// How many parts it was cut into (kept after the parts themselves are dropped).
    pub part_count: usize,
    /// The parts, while the segment is among the last `part_segments`.
    pub parts: Vec<Part>,
    /// The whole segment (its parts back to back).
    pub data: Bytes,
    /// The codec configuration (init segment) it was muxed with: 0 for the first,
    /// one more at each [`Segmenter::reconfigure`] (each change is a discontinuity).
    pub generation: u64,
}

/// What a `push` produced, for the shell to wake waiters and write recordings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HlsEvent {
    /// Part `part` of segment `msn` is available.
    Part { msn: u64, part: usize },
    /// Segment `msn` is complete.
    Segment { msn: u64 },
}

#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    generation: u64,
    start_dts: u64,
    wall_ms: u64,
    parts: Vec<Part>,
    part_start_dts: u64,
    pending: Vec<MediaFrame>,
}

/// The LL-HLS segmenter of one stream.
#[derive(Debug)]
pub struct Segmenter {
    cfg: HlsConfig,
    init: Bytes,
    codecs: String,
    has_video: bool,
    fragmenter: Fragmenter,
    segments: VecDeque<Segment>,
    open: Option<OpenSegment>,
    next_msn: u64,
    /// dts of the previous driving frame, for the frame-interval estimate.
    last_driver_dts: Option<u64>,
    /// Smallest interval between driving frames seen (0 = not known yet).
    min_interval_ms: u64,
    /// The latest interval between driving frames.
    last_interval_ms: u64,
    max_segment_ms: u64,
    first_dts: Option<(u64, u64)>,
    ended: bool,
    /// The current init segment's generation (see [`Segment::generation`]).
    generation: u64,
    /// Init segments of the generations still in the window, oldest first.
    old_inits: VecDeque<(u64, Bytes)>,
    /// Whether a segment was opened in the current generation.
    generation_used: bool,
}

/// The file name of a generation's init segment (`init.mp4`, then `init-1.mp4`, …).
pub fn init_name(generation: u64) -> String {
    if generation == 0 { "init.mp4".to_string() } else { format!("init-{generation}.mp4") }
}

/// Reply to a blocking playlist request (`_HLS_msn` / `_HLS_part`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// The playlist already holds what was asked for: answer now.
    Ready,
    /// Not yet: hold the request (bounded) and ask again when a part lands.
    Wait,
    /// Too far ahead or malformed: answer 400 at once (RFC 8216bis §6.2.5.2), with
    /// what is wrong (the body of the 400).
    BadRequest(&'static str),
}

/// Why a blocking reload is a 400 (RFC 8216bis §6.2.5.2).
const PART_WITHOUT_MSN: &str = "_HLS_part needs _HLS_msn (the segment the part belongs to)";
const MSN_TOO_FAR: &str = "_HLS_msn is more than two segments past the last complete segment";
const PART_TOO_FAR: &str = "_HLS_part is beyond the Advance Part Limit of the segment in progress";

impl Segmenter {
    /// A segmenter for a stream with this codec configuration.
    pub fn new(cfg: HlsConfig, stream: &StreamConfig) -> Result<Self, Fmp4Error> {
        let init = init_segment(stream)?;
        Ok(Segmenter {
            cfg: cfg.normalized(),
            init,
            codecs: stream.codecs(),
            has_video: stream.video.is_some(),
            fragmenter: Fragmenter::new(stream),
            segments: VecDeque::new(),
            open: None,
            next_msn: 0,
            last_driver_dts: None,
            min_interval_ms: 0,
            last_interval_ms: 0,
            max_segment_ms: 0,
            first_dts: None,
            ended: false,
            generation: 0,
            old_inits: VecDeque::new(),
            generation_used: false,
        })
    }

    /// The stream's codec configuration changed (a new SPS, e.g. a co-host mix taking
    /// over): what is pending is cut into a last part and segment, and what follows is
    /// muxed with a new init segment in a new generation, which the playlist marks
    /// with `EXT-X-DISCONTINUITY` and its own `EXT-X-MAP`. Media sequence numbers run
    /// on. A change before any frame of the current generation only replaces its init.
    pub fn reconfigure(&mut self, stream: &StreamConfig) -> Result<Vec<HlsEvent>, Fmp4Error> {
        let init = init_segment(stream)?;
        let mut events = Vec::new();
        if self.generation_used {
            self.close_open(&mut events);
            self.old_inits.push_back((self.generation, self.init.clone()));
            self.generation += 1;
            self.generation_used = false;
            self.drop_unused_inits();
        }
        self.init = init;
        self.codecs = stream.codecs();
        self.has_video = stream.video.is_some();
        self.fragmenter = Fragmenter::new(stream);
        self.last_driver_dts = None;
        Ok(events)
    }

    fn drop_unused_inits(&mut self) {
        let oldest = self.segments.front().map_or(self.generation, |s| s.generation);
        self.old_inits.retain(|(g, _)| *g >= oldest);
    }

    /// The init segment of `generation` while it is in the window.
    pub fn init_of(&self, generation: u64) -> Option<&Bytes> {
        if generation == self.generation {
            return Some(&self.init);
        }
        self.old_inits.iter().find(|(g, _)| *g == generation).map(|(_, b)| b)
    }

    /// The current generation (see [`Segment::generation`]).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The init segment (`EXT-X-MAP`).
    pub fn init(&self) -> &Bytes {
        &self.init
    }

    /// RFC 6381 codecs of the stream, e.g. `avc1.64001f,mp4a.40.2`.
    pub fn codecs(&self) -> &str {
        &self.codecs
    }

    /// The settings in force (after clamping).
    pub fn config(&self) -> HlsConfig {
        self.cfg
    }

    /// Whether [`Self::finish`] was called.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Complete segments in the window, oldest first.
    pub fn segments(&self) -> impl Iterator<Item = &Segment> {
        self.segments.iter()
    }

    /// `TARGETDURATION` in whole seconds: the segment target or the longest segment seen.
    pub fn target_duration_s(&self) -> u64 {
        self.cfg.segment_target_ms.max(self.max_segment_ms).div_ceil(1000).max(1)
    }

    /// Feeds one frame; `wall_ms` is the Unix time it arrived (for PROGRAM-DATE-TIME).
    pub fn push(&mut self, frame: MediaFrame, wall_ms: u64) -> Vec<HlsEvent> {
        let mut events = Vec::new();
        if self.ended {
            return events;
        }
        let driver = !self.has_video || frame.kind == TrackKind::Video;
        if self.has_video && frame.kind == TrackKind::Audio && self.open.is_none() {
            // Audio before the first keyframe has no picture to go with; drop it.
            return events;
        }
        if driver {
            if let Some(last) = self.last_driver_dts
                && frame.dts > last
            {
                let d = frame.dts - last;
                self.last_interval_ms = d;
                self.min_interval_ms = if self.min_interval_ms == 0 { d } else { self.min_interval_ms.min(d) };
            }
            self.last_driver_dts = Some(frame.dts);
        }
        let start_ok = !self.has_video || frame.keyframe;
        match self.open.as_mut() {
            None => {
                if !driver || !start_ok {
                    return events;
                }
                self.first_dts.get_or_insert((frame.dts, wall_ms));
                self.open_segment(frame.dts);
            }
            Some(open) if driver => {
                let seg_elapsed = frame.dts.saturating_sub(open.start_dts);
                let segment_ends = start_ok && seg_elapsed >= self.cfg.segment_target_ms && !open.pending.is_empty();
                self.split_overflow(frame.dts, &mut events);
                if segment_ends {
                    self.close_part(frame.dts, &mut events);
                    self.close_segment(frame.dts, &mut events);
                    self.open_segment(frame.dts);
                } else {
                    self.cut_predicted(frame.dts, &mut events);
                }
            }
            Some(_) => {}
        }
        if let Some(open) = self.open.as_mut() {
            open.pending.push(frame);
        }
        events
    }

    /// Ends the stream: what is pending becomes the last part and segment, and the playlist
    /// gets `EXT-X-ENDLIST`.
    pub fn finish(&mut self) -> Vec<HlsEvent> {
        let mut events = Vec::new();
        if self.ended {
            return events;
        }
        self.close_open(&mut events);
        self.ended = true;
        events
    }

    /// What is pending becomes the last part, and the open segment is closed (one frame
    /// interval after the last driving frame).
    fn close_open(&mut self, events: &mut Vec<HlsEvent>) {
        if let Some(open) = self.open.as_ref() {
            let end = self.last_driver_dts.unwrap_or(open.part_start_dts).saturating_add(self.last_interval_ms.max(1));
            if !open.pending.is_empty() {
                self.split_overflow(end, events);
                self.close_part(end, events);
            }
            if self.open.as_ref().is_some_and(|o| !o.parts.is_empty()) {
                self.close_segment(end, events);
            }
        }
        self.open = None;
    }

    fn open_segment(&mut self, dts: u64) {
        let wall_ms = match self.first_dts {
            Some((d0, w0)) => w0 + dts.saturating_sub(d0),
            None => 0,
        };
        self.generation_used = true;
        self.open = Some(OpenSegment {
            msn: self.next_msn,
            generation: self.generation,
            start_dts: dts,
            wall_ms,
            parts: Vec::new(),
            part_start_dts: dts,
            pending: Vec::new(),
        });
        self.next_msn += 1;
    }

    /// When timestamps jitter, the last frame added may have taken the open part past the
    /// target (it would end at `dts`): the part is then cut before that frame, which opens
    /// the next part. Together with [`Self::cut_predicted`], parts never exceed `PART-TARGET`.
    fn split_overflow(&mut self, dts: u64, events: &mut Vec<HlsEvent>) {
        let target = self.cfg.part_target_ms;
        let has_video = self.has_video;
        let Some(open) = self.open.as_mut() else { return };
        if !open.pending.is_empty() && dts.saturating_sub(open.part_start_dts) > target {
            let is_driver = |f: &MediaFrame| !has_video || f.kind == TrackKind::Video;
            let split = open.pending.iter().rposition(is_driver).filter(|&i| i > 0);
            match split.map(|i| (i, open.pending[i].dts)) {
                Some((i, split_dts)) if split_dts > open.part_start_dts => {
                    let tail = open.pending.split_off(i);
                    self.close_part(split_dts, events);
                    if let Some(open) = self.open.as_mut() {
                        open.pending = tail;
                    }
                }
                // One frame longer than the target: nothing shorter is possible.
                _ => self.close_part(dts, events),
            }
        }
    }

    /// Closes the open part before a driving frame at `dts` as soon as even the shortest
    /// frame interval seen would take it past the target — so a 30 fps stream gets exact
    /// 500 ms parts without waiting for one more frame.
    fn cut_predicted(&mut self, dts: u64, events: &mut Vec<HlsEvent>) {
        let target = self.cfg.part_target_ms;
        let Some(open) = self.open.as_ref() else { return };
        if !open.pending.is_empty() && dts.saturating_sub(open.part_start_dts) + self.min_interval_ms > target {
            self.close_part(dts, events);
        }
    }

    fn close_part(&mut self, end_dts: u64, events: &mut Vec<HlsEvent>) {
        let Some(open) = self.open.as_mut() else { return };
        let frames = std::mem::take(&mut open.pending);
        let next_video = if self.has_video { Some(end_dts) } else { None };
        let Some(fragment) = self.fragmenter.fragment(&frames, next_video) else { return };
        let independent = if self.has_video {
            frames.iter().find(|f| f.kind == TrackKind::Video).is_some_and(|f| f.keyframe)
        } else {
            true
        };
        let duration_ms = end_dts.saturating_sub(open.part_start_dts);
        open.parts.push(Part { duration_ms, independent, data: fragment.data });
        open.part_start_dts = end_dts;
        events.push(HlsEvent::Part { msn: open.msn, part: open.parts.len() - 1 });
    }

    fn close_segment(&mut self, end_dts: u64, events: &mut Vec<HlsEvent>) {
        let Some(open) = self.open.take() else { return };
        let size = open.parts.iter().map(|p| p.data.len()).sum();
        let mut data = BytesMut::with_capacity(size);
        for p in &open.parts {
            data.extend_from_slice(&p.data);
        }
        let duration_ms = end_dts.saturating_sub(open.start_dts);
        self.max_segment_ms = self.max_segment_ms.max(duration_ms);
        events.push(HlsEvent::Segment { msn: open.msn });
        self.segments.push_back(Segment {
            msn: open.msn,
            duration_ms,
            program_date_time_ms: open.wall_ms,
            part_count: open.parts.len(),
            parts: open.parts,
            data: data.freeze(),
            generation: open.generation,
        });
        while self.segments.len() > self.cfg.window {
            self.segments.pop_front();
        }
        self.drop_unused_inits();
        // Parts are only listed for the last few segments; older ones free their copy.
        let keep_from = self.segments.len().saturating_sub(self.cfg.part_segments);
        for s in self.segments.iter_mut().take(keep_from) {
            s.parts = Vec::new();
        }
    }

    /// Segment `msn` if it is in the window.
    pub fn segment(&self, msn: u64) -> Option<&Segment> {
        let first = self.segments.front()?.msn;
        self.segments.get(usize::try_from(msn.checked_sub(first)?).ok()?)
    }

    /// Part `part` of segment `msn` (complete or in progress), while it is kept.
    pub fn part(&self, msn: u64, part: usize) -> Option<&Part> {
        if let Some(open) = &self.open
            && open.msn == msn
        {
            return open.parts.get(part);
        }
        self.segment(msn)?.parts.get(part)
    }

    /// The last part written (segment, part index): what an `EXT-X-RENDITION-REPORT`
    /// of this variant names in a sibling's playlist.
    pub fn last_part(&self) -> Option<(u64, usize)> {
        if let Some(o) = &self.open
            && !o.parts.is_empty()
        {
            return Some((o.msn, o.parts.len() - 1));
        }
        let s = self.segments.back()?;
        Some((s.msn, s.parts.len().saturating_sub(1)))
    }

    /// The media sequence number and part index the preload hint points at, if live.
    pub fn next_part(&self) -> Option<(u64, usize)> {
        self.open.as_ref().map(|o| (o.msn, o.parts.len()))
    }

    /// Parts for a new live-fMP4 viewer to start with: from the last independent part of
    /// the segment in progress (or the last complete segment), so playback starts on a
    /// keyframe at once instead of waiting for the next one.
    pub fn live_start(&self) -> Vec<Bytes> {
        let from_parts = |parts: &[Part]| -> Vec<Bytes> {
            let start = parts.iter().rposition(|p| p.independent).unwrap_or(0);
            parts[start..].iter().map(|p| p.data.clone()).collect()
        };
        match &self.open {
            Some(o) if o.parts.first().is_some_and(|p| p.independent) => from_parts(&o.parts),
            _ => {
                let mut out = self.segments.back().map(|s| from_parts(&s.parts)).unwrap_or_default();
                if let Some(o) = &self.open
                    && !out.is_empty()
                {
                    out.extend(o.parts.iter().map(|p| p.data.clone()));
                }
                out
            }
        }
    }

    /// The Advance Part Limit of RFC 8216bis: 3 / part target (s) below one second, else 3.
    fn advance_part_limit(&self) -> usize {
        if self.cfg.part_target_ms < 1000 { 3000usize.div_ceil(self.cfg.part_target_ms as usize) } else { 3 }
    }

    /// Whether a missing part (`Some`) or segment (`None`) of segment `msn` is worth
    /// holding a request for: only the preload-hinted part (the one the playlist's
    /// `EXT-X-PRELOAD-HINT` names) and the segment in progress. Anything else missing —
    /// a part past the hint included — is 404 at once, as docs/media.md says: a player
    /// only asks ahead for what the playlist hinted.
    pub fn awaits(&self, msn: u64, part: Option<u64>) -> bool {
        match (self.next_part(), part) {
            (Some((open, next)), Some(p)) => msn == open && usize::try_from(p).is_ok_and(|p| p == next),
            (Some((open, _)), None) => msn == open,
            (None, _) => false,
        }
    }

    /// Decides a blocking reload request for `_HLS_msn=msn&_HLS_part=part`.
    pub fn reload(&self, msn: Option<u64>, part: Option<u64>) -> Reload {
        let Some(msn) = msn else {
            // `_HLS_part` without `_HLS_msn` is an error (§6.2.5.2).
            return if part.is_some() { Reload::BadRequest(PART_WITHOUT_MSN) } else { Reload::Ready };
        };
        let part = part.map(|p| usize::try_from(p).unwrap_or(usize::MAX));
        // The in-progress segment's msn, i.e. the last complete one + 1.
        let open_msn = self.next_msn.saturating_sub(if self.open.is_some() { 1 } else { 0 });
        // "greater than the Media Sequence Number of the last Media Segment in the current
        // Playlist plus two" → 400. The last complete segment is open_msn − 1.
        if msn > open_msn.saturating_add(1) {
            return Reload::BadRequest(MSN_TOO_FAR);
        }
        if self.ended {
            return Reload::Ready;
        }
        let open_parts = self.open.as_ref().map_or(0, |o| o.parts.len());
        match part {
            None => {
                if msn < open_msn || (self.open.is_none() && msn < self.next_msn) {
                    Reload::Ready
                } else {
                    Reload::Wait
                }
            }
            Some(p) if msn < open_msn => {
                // A part index past the segment's last part means part 0 of the next one.
                let count = self.segment(msn).map_or(0, |s| s.part_count);
                if self.segment(msn).is_none() || p < count || msn + 1 < open_msn || open_parts > 0 {
                    Reload::Ready
                } else {
                    Reload::Wait
                }
            }
            Some(p) if msn == open_msn && self.open.is_some() => {
                if p < open_parts {
                    Reload::Ready
                } else if p >= open_parts.saturating_add(self.advance_part_limit()) {
                    Reload::BadRequest(PART_TOO_FAR)
                } else {
                    Reload::Wait
                }
            }
            Some(_) => Reload::Wait,
        }
    }

    /// Renders the live media playlist. `prefix` is prepended to every URI (e.g. `NAME/`
    /// when the playlist is `/live/NAME.m3u8` and media lives under `/live/NAME/`);
    /// `skip` asks for a delta update (`_HLS_skip=YES`).
    pub fn playlist(&self, prefix: &str, skip: bool) -> String {
        let td = self.target_duration_s();
        let part_s = self.cfg.part_target_ms as f64 / 1000.0;
        let skip_until = 6.0 * td as f64;
        let mut out = String::with_capacity(2048);
        let _ = writeln!(out, "#EXTM3U");
        let _ = writeln!(out, "#EXT-X-VERSION:9");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{td}");
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL={:.1},PART-HOLD-BACK={:.3},HOLD-BACK={:.1}",
            skip_until,
            3.0 * part_s,
            3.0 * td as f64
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={part_s:.3}");
        let first_msn =
            self.segments.front().map(|s| s.msn).or(self.open.as_ref().map(|o| o.msn)).unwrap_or(self.next_msn);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
        // One discontinuity per generation change: the count before the first segment.
        let first_gen = self
            .segments
            .front()
            .map(|s| s.generation)
            .or(self.open.as_ref().map(|o| o.generation))
            .unwrap_or(self.generation);
        if first_gen > 0 {
            let _ = writeln!(out, "#EXT-X-DISCONTINUITY-SEQUENCE:{first_gen}");
        }

        // Delta update: skip the oldest segments that end more than CAN-SKIP-UNTIL before
        // the live edge (§6.2.5.1).
        let mut skipped = 0usize;
        if skip {
            let open_ms = self.open.as_ref().map_or(0, |o| o.parts.iter().map(|p| p.duration_ms).sum::<u64>());
            let mut after: u64 = self.segments.iter().map(|s| s.duration_ms).sum::<u64>() + open_ms;
            for s in &self.segments {
                after -= s.duration_ms;
                if (after as f64) / 1000.0 >= skip_until {
                    skipped += 1;
                } else {
                    break;
                }
            }
            if skipped > 0 {
                let _ = writeln!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
            }
        }
        let parts_from = self.segments.len().saturating_sub(self.cfg.part_segments);
        let mut gen_listed: Option<u64> = None;
        let mut map = |out: &mut String, generation: u64| {
            if gen_listed != Some(generation) {
                if gen_listed.is_some() {
                    let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
                }
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{prefix}{}\"", init_name(generation));
                gen_listed = Some(generation);
            }
        };
        if skipped == 0 || self.segments.len() <= skipped {
            map(&mut out, first_gen);
        }
        for (i, s) in self.segments.iter().enumerate().skip(skipped) {
            map(&mut out, s.generation);
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(s.program_date_time_ms));
            if i >= parts_from {
                for (j, p) in s.parts.iter().enumerate() {
                    write_part(&mut out, prefix, s.msn, j, p);
                }
            }
            let _ = writeln!(out, "#EXTINF:{:.3},", s.duration_ms as f64 / 1000.0);
            let _ = writeln!(out, "{prefix}{}.m4s", s.msn);
        }
        if let Some(o) = &self.open {
            map(&mut out, o.generation);
            if !o.parts.is_empty() {
                let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", iso8601(o.wall_ms));
            }
            for (j, p) in o.parts.iter().enumerate() {
                write_part(&mut out, prefix, o.msn, j, p);
            }
            let _ = writeln!(out, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"{prefix}{}.{}.m4s\"", o.msn, o.parts.len());
        }
        if self.ended {
            let _ = writeln!(out, "#EXT-X-ENDLIST");
        }
        out
    }
}

fn write_part(out: &mut String, prefix: &str, msn: u64, index: usize, p: &Part) {
    let _ = write!(out, "#EXT-X-PART:DURATION={:.3},URI=\"{prefix}{msn}.{index}.m4s\"", p.duration_ms as f64 / 1000.0);
    if p.independent {
        out.push_str(",INDEPENDENT=YES");
    }
    out.push('\n');
}

/// One variant of a multivariant playlist (a rendition of a stream).
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    /// The variant's media playlist, relative to the multivariant one.
    pub uri: String,
    /// Peak bits per second (video + audio + container overhead).
    pub bandwidth: u64,
    /// Picture size, when known.
    pub resolution: Option<(u32, u32)>,
    /// RFC 6381 codecs (`avc1.64001f,mp4a.40.2`).
    pub codecs: String,
    /// Frames per second, when known.
    pub frame_rate: Option<f64>,
}

/// The multivariant playlist of an ABR ladder: one `EXT-X-STREAM-INF` per variant,
/// highest bandwidth first (players start from the first listed unless told otherwise,
/// and hls.js/Safari pick by BANDWIDTH from there).
pub fn multivariant_playlist(variants: &[Variant]) -> String {
    let mut sorted: Vec<&Variant> = variants.iter().collect();
    sorted.sort_by_key(|v| std::cmp::Reverse(v.bandwidth));
    let mut out = String::from("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for v in sorted {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth.max(1));
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(f) = v.frame_rate.filter(|f| *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={f:.3}");
        }
        let _ = writeln!(out, ",CODECS=\"{}\"", v.codecs);
        let _ = writeln!(out, "{}", v.uri);
    }
    out
}

/// The `EXT-X-RENDITION-REPORT` line for a sibling variant whose last part is
/// `(msn, part)`: lets a player switching to it ask for the right part at once.
pub fn rendition_report(uri: &str, last: (u64, usize)) -> String {
    format!("#EXT-X-RENDITION-REPORT:URI=\"{uri}\",LAST-MSN={},LAST-PART={}\n", last.0, last.1)
}

/// One segment of a recording, for [`vod_playlist`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VodSegment {
    pub uri: String,
    pub duration_ms: u64,
    /// Its init segment's URI (a change is a discontinuity).
    pub init: String,
}

/// A VOD playlist (`EXT-X-PLAYLIST-TYPE:VOD` … `EXT-X-ENDLIST`) for a finished recording.
pub fn vod_playlist(segments: &[VodSegment]) -> String {
    let td = segments.iter().map(|s| s.duration_ms).max().unwrap_or(1000).div_ceil(1000).max(1);
    let mut out = String::with_capacity(64 + segments.len() * 32);
    let _ = writeln!(out, "#EXTM3U");
    let _ = writeln!(out, "#EXT-X-VERSION:7");
    let _ = writeln!(out, "#EXT-X-TARGETDURATION:{td}");
    let _ = writeln!(out, "#EXT-X-PLAYLIST-TYPE:VOD");
    let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:0");
    let _ = writeln!(out, "#EXT-X-INDEPENDENT-SEGMENTS");
    let mut init: Option<&str> = None;
    for s in segments {
        if init != Some(s.init.as_str()) {
            if init.is_some() {
                let _ = writeln!(out, "#EXT-X-DISCONTINUITY");
            }
            let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", s.init);
            init = Some(&s.init);
        }
        let _ = writeln!(out, "#EXTINF:{:.3},", s.duration_ms as f64 / 1000.0);
        let _ = writeln!(out, "{}", s.uri);
    }
    let _ = writeln!(out, "#EXT-X-ENDLIST");
    out
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (civil-from-days, H. Hinnant).
pub fn iso8601(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, unix_ms % 1000)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn multivariant_lists_every_variant_highest_first_and_reports() {
        let v = |uri: &str, bw: u64, h: u32| Variant {
            uri: uri.into(),
            bandwidth: bw,
            resolution: Some((h * 16 / 9, h)),
            codecs: "avc1.64001f,mp4a.40.2".into(),
            frame_rate: Some(25.0),
        };
        let text = multivariant_playlist(&[v("cam_360p.m3u8", 900_000, 360), v("cam.m3u8", 3_000_000, 720)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "#EXTM3U");
        assert!(lines.contains(&"#EXT-X-INDEPENDENT-SEGMENTS"));
        assert_eq!(
            lines[3],
            "#EXT-X-STREAM-INF:BANDWIDTH=3000000,RESOLUTION=1280x720,FRAME-RATE=25.000,CODECS=\"avc1.64001f,mp4a.40.2\""
        );
        assert_eq!(lines[4], "cam.m3u8");
        assert!(lines[5].contains("BANDWIDTH=900000,RESOLUTION=640x360"));
        assert_eq!(lines[6], "cam_360p.m3u8");
        assert_eq!(
            rendition_report("cam_360p.m3u8", (12, 3)),
            "#EXT-X-RENDITION-REPORT:URI=\"cam_360p.m3u8\",LAST-MSN=12,LAST-PART=3\n"
        );
    }

    use super::*;

    fn v(dts: u64, key: bool) -> MediaFrame {
        MediaFrame { kind: TrackKind::Video, dts, cts: 0, keyframe: key, data: Bytes::from_static(&[0, 0, 0, 1, 0x65]) }
    }
    fn a(dts: u64) -> MediaFrame {
        MediaFrame { kind: TrackKind::Audio, dts, cts: 0, keyframe: true, data: Bytes::from_static(&[1, 2, 3]) }
    }

    fn segmenter(part_ms: u64) -> Segmenter {
        let cfg = HlsConfig { part_target_ms: part_ms, ..HlsConfig::default() };
        Segmenter::new(cfg, &crate::fmp4::tests::config()).unwrap()
    }

    /// Feeds `secs` of 30 fps video with a keyframe every `gop` frames, plus 44.1 kHz audio.
    fn feed(s: &mut Segmenter, from_frame: u64, frames: u64, gop: u64) -> Vec<HlsEvent> {
        let mut events = Vec::new();
        // Millisecond timestamps rounded as ffmpeg writes them (0, 33, 67, 100, …).
        let mut audio_next = (from_frame * 1000 + 15) / 30;
        for i in from_frame..from_frame + frames {
            let dts = (i * 1000 + 15) / 30;
            while audio_next <= dts {
                events.extend(s.push(a(audio_next), 1_700_000_000_000 + audio_next));
                audio_next += 23;
            }
            events.extend(s.push(v(dts, i % gop == 0), 1_700_000_000_000 + dts));
        }
        events
    }

    #[test]
    fn a_new_codec_configuration_is_a_discontinuity_with_its_own_init() {
        let mut s = segmenter(500);
        feed(&mut s, 0, 90, 30);
        let before: Vec<u64> = s.segments().map(|x| x.msn).collect();
        assert!(!before.is_empty());
        let first_init = s.init().clone();
        let ev = s.reconfigure(&crate::fmp4::tests::config()).unwrap();
        assert!(ev.iter().any(|e| matches!(e, HlsEvent::Segment { .. })), "pending frames cut: {ev:?}");
        assert_eq!(s.generation(), 1);
        assert!(s.reconfigure(&crate::fmp4::tests::config()).unwrap().is_empty());
        assert_eq!(s.generation(), 1, "no frame since the last change: same generation");
        feed(&mut s, 90, 90, 30);
        let p = s.playlist("x/", false);
        assert!(p.contains("#EXT-X-MAP:URI=\"x/init.mp4\""), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"x/init-1.mp4\"\n"), "{p}");
        assert!(!p.contains("DISCONTINUITY-SEQUENCE"), "{p}");
        let msns: Vec<u64> = s.segments().map(|x| x.msn).collect();
        assert!(msns.windows(2).all(|w| w[1] == w[0] + 1), "media sequence runs on: {msns:?}");
        assert_eq!(s.init_of(0), Some(&first_init));
        assert!(s.init_of(1).is_some() && s.init_of(2).is_none());
        // Once the old generation left the window: counted, its init dropped.
        feed(&mut s, 180, 600, 30);
        let p = s.playlist("x/", false);
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{p}");
        assert!(!p.contains("x/init.mp4") && !p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
        assert!(s.init_of(0).is_none());
    }

    #[test]
    fn segments_cut_at_keyframes_after_target_parts_within_target() {
        for (part_ms, gop, want_seg_ms) in [(500, 30, 2000), (200, 30, 2000), (1000, 60, 2000), (500, 45, 3000)] {
            let mut s = segmenter(part_ms);
            feed(&mut s, 0, 30 * 9, gop);
            let segs: Vec<_> = s.segments().collect();
            assert!(segs.len() >= 2, "part {part_ms} gop {gop}");
            for seg in &segs {
                assert_eq!(seg.duration_ms, want_seg_ms, "part {part_ms} gop {gop}");
                let sum: u64 = seg.parts.iter().map(|p| p.duration_ms).sum();
                if !seg.parts.is_empty() {
                    assert_eq!(sum, seg.duration_ms);
                    assert!(seg.parts[0].independent);
                }
                for p in &seg.parts {
                    assert!(p.duration_ms <= part_ms, "part {} > {part_ms}", p.duration_ms);
                }
                // Parts are not needlessly short (≥ 85 % of the target except a segment's last).
                for p in seg.parts.iter().rev().skip(1) {
                    assert!(p.duration_ms * 100 >= part_ms * 85, "part {} ≪ {part_ms}", p.duration_ms);
                }
            }
            assert_eq!(s.target_duration_s(), want_seg_ms / 1000);
            // Targets that are a whole number of frames give equal parts, no runt at the end.
            for seg in segs.iter().filter(|s| !s.parts.is_empty()) {
                assert_eq!(seg.part_count as u64, want_seg_ms / part_ms, "part {part_ms} gop {gop}");
            }
        }
    }

    #[test]
    fn audio_before_first_keyframe_is_dropped_and_start_waits_for_keyframe() {
        let mut s = segmenter(500);
        assert!(s.push(a(0), 0).is_empty());
        assert!(s.push(v(0, false), 0).is_empty());
        assert_eq!(s.next_part(), None);
        s.push(v(33, true), 0);
        assert_eq!(s.next_part(), Some((0, 0)));
    }

    #[test]
    fn window_is_bounded_and_old_parts_freed() {
        let mut s = segmenter(500);
        feed(&mut s, 0, 30 * 40, 30);
        let segs: Vec<_> = s.segments().collect();
        assert_eq!(segs.len(), 10);
        assert_eq!(segs.iter().filter(|s| !s.parts.is_empty()).count(), 3);
        assert!(segs.iter().all(|s| s.part_count == 4));
        assert!(s.segment(segs[0].msn - 1).is_none());
    }

    #[test]
    fn playlist_invariants() {
        let mut s = segmenter(500);
        feed(&mut s, 0, 30 * 9, 30);
        let p = s.playlist("cam/", false);
        let attr = |name: &str| -> f64 {
            let i = p.find(name).unwrap() + name.len() + 1;
            p[i..].split([',', '\n']).next().unwrap().parse().unwrap()
        };
        let td = attr("#EXT-X-TARGETDURATION");
        let part = attr("PART-TARGET");
        assert!(attr("PART-HOLD-BACK") >= 3.0 * part);
        assert!(attr(",HOLD-BACK") >= 3.0 * td);
        assert!(attr("CAN-SKIP-UNTIL") >= 6.0 * td);
        assert!(p.contains("#EXT-X-MAP:URI=\"cam/init.mp4\""));
        assert!(p.contains("#EXT-X-PART:DURATION=0.500,URI=\"cam/1.0.m4s\",INDEPENDENT=YES"));
        assert!(p.contains("#EXTINF:2.000,\ncam/0.m4s\n"));
        assert!(p.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z"));
        let (msn, part_idx) = s.next_part().unwrap();
        assert!(p.contains(&format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"cam/{msn}.{part_idx}.m4s\"")));
        assert!(!p.contains("ENDLIST"));
        s.finish();
        let p = s.playlist("cam/", false);
        assert!(p.ends_with("#EXT-X-ENDLIST\n"));
        assert!(!p.contains("PRELOAD-HINT"));
    }

    #[test]
    fn reload_decisions() {
        let mut s = segmenter(500);
        // 4.5 s at 1 s GOPs: segments 0 and 1 complete (2 s each), segment 2 open with one part.
        feed(&mut s, 0, 30 * 4 + 16, 30);
        assert_eq!(s.next_part(), Some((2, 1)));
        use Reload::*;
        let table: &[(Option<u64>, Option<u64>, Reload)] = &[
            (None, None, Ready),
            (None, Some(0), BadRequest(PART_WITHOUT_MSN)),
            (Some(0), None, Ready),
            (Some(1), None, Ready),
            (Some(2), None, Wait),
            (Some(3), None, Wait),                    // last complete (1) + 2
            (Some(4), None, BadRequest(MSN_TOO_FAR)), // beyond last + 2
            (Some(2), Some(0), Ready),
            (Some(2), Some(1), Wait), // the preload-hinted part
            (Some(2), Some(6), Wait),
            (Some(2), Some(7), BadRequest(PART_TOO_FAR)), // 1 + advance part limit (6)
            (Some(1), Some(3), Ready),
            (Some(1), Some(9), Ready), // past the last part → part 0 of segment 2, which exists
            (Some(3), Some(0), Wait),
            (Some(99), Some(0), BadRequest(MSN_TOO_FAR)),
        ];
        for (msn, part, want) in table {
            assert_eq!(s.reload(*msn, *part), *want, "msn {msn:?} part {part:?}");
        }
        // Held requests for missing media: the hinted part and the open segment only.
        assert!(s.awaits(2, Some(1)), "the preload-hinted part");
        assert!(s.awaits(2, None), "the segment in progress");
        assert!(!s.awaits(2, Some(2)), "one past the hint: 404 at once");
        assert!(!s.awaits(2, Some(3)), "two past the hint: 404 at once");
        assert!(!s.awaits(3, Some(0)) && !s.awaits(3, None), "the next segment is not hinted yet");
        s.finish();
        assert_eq!(s.reload(Some(3), None), Ready);
    }

    #[test]
    fn skip_delta_update() {
        let mut s = segmenter(500);
        feed(&mut s, 0, 30 * 30, 30);
        let full = s.playlist("", false);
        let delta = s.playlist("", true);
        // 14 segments of 2 s made, 10 in the window; TD 2 → skip until 12 s: keep the last 6.
        assert!(delta.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n"), "{delta}");
        assert_eq!(full.matches("#EXTINF").count(), 10);
        assert_eq!(delta.matches("#EXTINF").count(), 6);
    }

    #[test]
    fn live_start_begins_independent() {
        let mut s = segmenter(500);
        assert!(s.live_start().is_empty());
        feed(&mut s, 0, 30 * 3, 30);
        let start = s.live_start();
        assert!(!start.is_empty());
        // 3 s at 1 s GOPs: segment 1 is open since 2.0 s and its first part (a keyframe)
        // is where a new viewer starts.
        let (msn, _) = s.next_part().unwrap();
        assert_eq!(msn, 1);
        let first = s.part(1, 0).unwrap();
        assert!(first.independent);
        assert_eq!(start[0], first.data);
    }

    #[test]
    fn vod_and_dates() {
        let p = vod_playlist(&[
            VodSegment { uri: "0.m4s".into(), duration_ms: 2000, init: "init.mp4".into() },
            VodSegment { uri: "1.m4s".into(), duration_ms: 2500, init: "init.mp4".into() },
        ]);
        assert_eq!(p.matches("#EXT-X-MAP:URI=\"init.mp4\"").count(), 1);
        assert!(!p.contains("DISCONTINUITY"));
        let switched = vod_playlist(&[
            VodSegment { uri: "0.m4s".into(), duration_ms: 2000, init: "init.mp4".into() },
            VodSegment { uri: "1.m4s".into(), duration_ms: 2000, init: "init-1.mp4".into() },
        ]);
        assert!(
            switched.contains("0.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-MAP:URI=\"init-1.mp4\"\n#EXTINF:2.000,\n1.m4s\n"),
            "{switched}"
        );
        assert!(p.contains("#EXT-X-TARGETDURATION:3\n"));
        assert!(p.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"));
        assert!(p.ends_with("#EXTINF:2.500,\n1.m4s\n#EXT-X-ENDLIST\n"));
        for (ms, want) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_123, "2000-02-29T00:00:00.123Z"),
            (1_795_651_200_999, "2026-11-26T00:00:00.999Z"),
        ] {
            assert_eq!(iso8601(ms), want);
        }
    }

    proptest::proptest! {
        #[test]
        fn parts_never_exceed_target(part_ms in 200u64..=1000, fps in 10u64..60, gop in 1u64..120, n in 1u64..400) {
            let cfg = HlsConfig { part_target_ms: part_ms, ..HlsConfig::default() };
            let mut s = Segmenter::new(cfg, &crate::fmp4::tests::config()).unwrap();
            for i in 0..n {
                s.push(v(i * 1000 / fps, i % gop == 0), 0);
            }
            s.finish();
            for seg in s.segments() {
                for p in &seg.parts {
                    proptest::prop_assert!(p.duration_ms <= part_ms.max(1000 / fps + 1));
                }
                if !seg.parts.is_empty() {
                    proptest::prop_assert_eq!(seg.parts.iter().map(|p| p.duration_ms).sum::<u64>(), seg.duration_ms);
                }
            }
        }
    }
}
