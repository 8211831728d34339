//! The co-host mixer's pure parts: where each source goes on the canvas for a layout
//! ([`tiles`]), the ffmpeg filter graph that composes them ([`filter_graph`]), the
//! internal stream names, the program switch ([`ProgramSwitch`]) that decides, packet
//! by packet, whether viewers of a stream get the anchor's own feed or which mix, and
//! the bookkeeping of a program's mixer children ([`MixChildren`]: a change of plan is
//! made before the old mix is broken).
//!
//! The shell (`onair-media-server`'s `mixer`) runs the ffmpeg children and feeds the
//! switch; nothing here reads a clock or touches a socket.

use std::fmt::Write as _;

use crate::lifecycle::MixPlan;

/// Most guests composed with the anchor (the 2×2 grid's other three cells).
pub const MAX_GUESTS: usize = 3;

/// Suffix of the anchor's own feed while a mix is the program (`{stream}.raw`): what the
/// mixer reads and what guests watch. A room's stream name never holds a `.`, so these
/// names cannot collide with one.
pub const RAW_SUFFIX: &str = ".raw";
/// Suffix of the mixer's outputs (`{stream}.mix`, then `{stream}.{generation}.mix`), internal
/// streams forwarded into the program.
pub const MIX_SUFFIX: &str = ".mix";

/// The anchor's own feed while `program` is mixed.
pub fn raw_stream(program: &str) -> String {
    format!("{program}{RAW_SUFFIX}")
}

/// The first mixer child's output for `program` (generation 0, see [`mix_stream_gen`]).
pub fn mix_stream(program: &str) -> String {
    mix_stream_gen(program, 0)
}

/// The output of `program`'s mixer child of generation `generation`: `{program}.mix` for the
/// first, `{program}.{generation}.mix` for each later plan. Every plan gets its own name so the
/// new child can publish while the old one is still on air; all end in [`MIX_SUFFIX`].
pub fn mix_stream_gen(program: &str, generation: u32) -> String {
    if generation == 0 { format!("{program}{MIX_SUFFIX}") } else { format!("{program}.{generation}{MIX_SUFFIX}") }
}

/// Whether `stream` is one of the mixer's internal streams (never mixed, transcoded or
/// recorded itself).
pub fn is_internal(stream: &str) -> bool {
    [RAW_SUFFIX, MIX_SUFFIX].iter().any(|s| stream.len() > s.len() && stream.ends_with(s))
}

/// How the anchor and the guests share the picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layout {
    /// Everyone in one row, equal widths (anchor on the left).
    #[default]
    SideBySide,
    /// The anchor full frame, guests in small windows bottom right.
    PictureInPicture,
    /// A 2×2 grid (anchor top left).
    Grid,
}

impl Layout {
    /// Every layout, in the order the studio lists them.
    pub const ALL: [Layout; 3] = [Layout::SideBySide, Layout::PictureInPicture, Layout::Grid];

    /// The wire name (`side-by-side`, `pip`, `grid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Layout::SideBySide => "side-by-side",
            Layout::PictureInPicture => "pip",
            Layout::Grid => "grid",
        }
    }

    /// Parses a wire name; the error says which names exist.
    pub fn parse(s: &str) -> Result<Layout, String> {
        Layout::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| format!("unknown layout '{s}'; use side-by-side, pip or grid"))
    }
}

/// A source's place on the canvas, in pixels (all even, for 4:2:0 video).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tile {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

fn even(v: u32) -> u32 {
    v & !1
}

/// Where each of `sources` inputs (the anchor first) goes on a `w`×`h` canvas.
/// `sources` is clamped to 1..=1+[`MAX_GUESTS`].
pub fn tiles(layout: Layout, sources: usize, w: u32, h: u32) -> Vec<Tile> {
    let n = sources.clamp(1, 1 + MAX_GUESTS) as u32;
    let (w, h) = (even(w.max(2)), even(h.max(2)));
    match layout {
        Layout::SideBySide => {
            let tw = even(w / n);
            (0..n).map(|i| Tile { x: i * tw, y: 0, w: tw, h }).collect()
        }
        Layout::PictureInPicture => {
            let (tw, th) = (even(w / 4), even(h / 4));
            let margin = even((h / 36).max(2));
            let mut v = vec![Tile { x: 0, y: 0, w, h }];
            for i in 1..n {
                // Stacked upwards from the bottom-right corner.
                let y = h.saturating_sub(i * (th + margin));
                v.push(Tile { x: w.saturating_sub(tw + margin), y, w: tw, h: th });
            }
            v
        }
        Layout::Grid => {
            let (tw, th) = (even(w / 2), even(h / 2));
            (0..n).map(|i| Tile { x: (i % 2) * tw, y: (i / 2) * th, w: tw, h: th }).collect()
        }
    }
}

/// The mix's audio sample rate given its sources' rates (`None`: unknown or no audio).
/// 48 kHz as soon as one source runs at 48 kHz — a WebRTC publisher's Opus is bridged
/// to AAC at 48 kHz, and resampling a voice down and the mix back up (WHEP players get
/// Opus, 48 kHz) would cost quality for nothing; FLV carries 48 kHz AAC fine (the rate
/// is in the AudioSpecificConfig, not the tag header). Otherwise 44.1 kHz, what RTMP
/// encoders send.
pub fn mix_sample_rate(sources: &[Option<u32>]) -> u32 {
    if sources.contains(&Some(48_000)) { 48_000 } else { 44_100 }
}

/// The `-filter_complex` graph composing inputs `0..audio.len()` (input 0 the anchor)
/// onto a black `w`×`h` canvas at `fps`, with every input that has audio (`audio[i]`)
/// resampled to `rate` Hz and mixed by `amix`. Outputs are labelled `[vout]` and, when
/// any input has audio, `[aout]`. Each input is restarted at time 0
/// (`setpts=PTS-STARTPTS`) since every source has its own clock; each is fitted into
/// its tile keeping its aspect ratio.
pub fn filter_graph(layout: Layout, audio: &[bool], w: u32, h: u32, fps: u32, rate: u32) -> String {
    let places = tiles(layout, audio.len(), w, h);
    let (w, h) = (even(w.max(2)), even(h.max(2)));
    let mut g = String::with_capacity(512);
    let _ = write!(g, "color=c=black:s={w}x{h}:r={fps}[bg]");
    for (i, t) in places.iter().enumerate() {
        let _ = write!(
            g,
            ";[{i}:v]setpts=PTS-STARTPTS,scale={tw}:{th}:force_original_aspect_ratio=decrease,\
             pad={tw}:{th}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps}[v{i}]",
            tw = t.w,
            th = t.h,
        );
    }
    let mut prev = "bg".to_string();
    for (i, t) in places.iter().enumerate() {
        let out = if i + 1 == places.len() { "vout".to_string() } else { format!("o{i}") };
        // repeatlast: a source that stalls freezes in its tile instead of holding the others.
        let _ = write!(g, ";[{prev}][v{i}]overlay=x={}:y={}:eof_action=pass:repeatlast=1:shortest=0[{out}]", t.x, t.y);
        prev = out;
    }
    let with_audio: Vec<usize> = (0..places.len()).filter(|i| audio.get(*i).copied().unwrap_or(false)).collect();
    match with_audio.len() {
        0 => {}
        1 => {
            let _ = write!(g, ";[{}:a]asetpts=PTS-STARTPTS,aresample={rate}:async=1[aout]", with_audio[0]);
        }
        n => {
            for i in &with_audio {
                let _ = write!(g, ";[{i}:a]asetpts=PTS-STARTPTS,aresample={rate}:async=1[a{i}]");
            }
            g.push(';');
            for i in &with_audio {
                let _ = write!(g, "[a{i}]");
            }
            // normalize=0: each voice at its own level, not divided by the guest count.
            let _ = write!(g, "amix=inputs={n}:duration=longest:dropout_transition=0:normalize=0[aout]");
        }
    }
    g
}

/// Which feed viewers of a program stream get.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// The publisher's own packets.
    Anchor,
    /// The output of the mixer child of this generation ([`mix_stream_gen`]).
    Mix(u32),
}

impl Source {
    /// Whether this is a mix (of any generation).
    pub fn is_mix(self) -> bool {
        matches!(self, Source::Mix(_))
    }
}

/// What to do with one packet offered to the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Not part of the program (the other source, or waiting for a keyframe).
    Drop,
    /// Goes out at this timestamp.
    Pass(u64),
    /// The program switches to this packet's source here: send that source's codec
    /// configuration first, then the packet, at this timestamp.
    Switch(u64),
}

/// One packet as the switch sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offer {
    /// Which feed it comes from.
    pub from: Source,
    /// A coded frame (false: a codec configuration or metadata).
    pub frame: bool,
    /// A video keyframe: where a switch may happen.
    pub keyframe: bool,
    /// Whether the source carries video at all (audio-only sources switch on any frame).
    pub source_has_video: bool,
    /// The packet's timestamp on its source's clock, ms.
    pub dts: u64,
}

/// The program switch of one stream: the shell says which source it wants
/// ([`Self::want`]) and offers every packet of every source (the anchor, each running
/// mix generation); the switch happens at the wanted source's next keyframe (viewers
/// keep the current picture until then — from the anchor to a mix, back, or from one
/// mix generation to the next), and timestamps are rebased so the program's clock runs
/// on without a jump back.
#[derive(Debug, Clone)]
pub struct ProgramSwitch {
    want: Source,
    on: Source,
    /// Added to the current source's timestamps.
    offset: i64,
    /// The last timestamp that went out.
    last_out: u64,
    /// The current source restarted (a new clock): it goes on at its next keyframe.
    rebase: bool,
}

impl Default for ProgramSwitch {
    fn default() -> Self {
        ProgramSwitch { want: Source::Anchor, on: Source::Anchor, offset: 0, last_out: 0, rebase: false }
    }
}

/// The gap left at a switch between the last packet and the first of the new source
/// (about one frame at 30 fps).
const SWITCH_GAP_MS: u64 = 33;

impl ProgramSwitch {
    /// Asks for `source` (takes effect at its next keyframe).
    pub fn want(&mut self, source: Source) {
        self.want = source;
    }

    /// `source` started over (e.g. a new mixer child): its clock restarts, so if it
    /// is on, it is held until its next keyframe and rebased there.
    pub fn restart(&mut self, source: Source) {
        if self.on == source {
            self.rebase = true;
        }
    }

    /// A program timestamp of the current source back on that source's own clock.
    pub fn to_source(&self, program_dts: u64) -> u64 {
        (program_dts as i64).saturating_sub(self.offset).max(0) as u64
    }

    /// The source wanted.
    pub fn wanted(&self) -> Source {
        self.want
    }

    /// The source viewers get now.
    pub fn on(&self) -> Source {
        self.on
    }

    fn out(&mut self, dts: u64) -> u64 {
        let t = (dts as i64).saturating_add(self.offset).max(0) as u64;
        self.last_out = self.last_out.max(t);
        t
    }

    /// Decides about one packet.
    pub fn offer(&mut self, o: Offer) -> Decision {
        if o.from == self.on && !self.rebase {
            // The current source plays on (configs included) until the wanted one can
            // start.
            return Decision::Pass(self.out(o.dts));
        }
        let rebasing = o.from == self.on && self.rebase;
        if (o.from != self.want && !rebasing) || !o.frame {
            return Decision::Drop;
        }
        if o.source_has_video && !o.keyframe {
            return Decision::Drop;
        }
        self.on = o.from;
        self.rebase = false;
        let start = if self.last_out == 0 { 0 } else { self.last_out + SWITCH_GAP_MS };
        self.offset = start as i64 - o.dts as i64;
        Decision::Switch(self.out(o.dts))
    }
}

/// One mixer child as [`MixChildren`] knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MixChild {
    /// Its generation: it publishes [`mix_stream_gen`]`(program, generation)` and the program
    /// switch knows its packets as [`Source::Mix`]`(generation)`.
    pub generation: u32,
    /// What it composes.
    pub plan: MixPlan,
}

/// What the shell does for one event of [`MixChildren`], in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MixStep {
    /// Start a child of generation `generation` for `plan` and make the program want
    /// [`Source::Mix`]`(generation)`: viewers move onto it at its first keyframe. Its transcode
    /// slot is already held (newly taken, or handed over by a `Stop` just before).
    Start { generation: u32, plan: MixPlan },
    /// Stop the child of generation `generation`; `release`: give its transcode slot back
    /// (false: the `Start` that follows uses it).
    Stop { generation: u32, release: bool },
    /// Make the program want `Source` (effective at its next keyframe).
    Want(Source),
}

/// A program's mixer children, make-before-break: the **live** child is the one whose
/// mix viewers get (or last got); a new plan starts a **pending** child next to it,
/// which becomes live when the program switch put its first keyframe on air — only
/// then is the old child stopped. At most one of each: a newer plan replaces the
/// pending child (the latest plan wins), and with no transcode slot for a second
/// child the live one is stopped first (stop-then-start, a frozen picture until the
/// new mix's keyframe).
///
/// Every held child holds one `[media] max_transcodes` slot: the steps say when a slot
/// is taken (the `take_slot` callback of [`Self::plan`]) and given back
/// ([`MixStep::Stop`] with `release`).
#[derive(Debug, Clone, Default)]
pub struct MixChildren {
    live: Option<MixChild>,
    pending: Option<MixChild>,
    /// The next generation to hand out (never reused while this program is on air).
    next_gen: u32,
    /// The plan was withdrawn: the program is going back to the anchor's feed.
    withdrawn: bool,
}

impl MixChildren {
    /// The child viewers get (or got last), if any.
    pub fn live(&self) -> Option<&MixChild> {
        self.live.as_ref()
    }

    /// The child waiting for its first keyframe to go on air, if any.
    pub fn pending(&self) -> Option<&MixChild> {
        self.pending.as_ref()
    }

    /// No child at all (the program's entry can go).
    pub fn is_empty(&self) -> bool {
        self.live.is_none() && self.pending.is_none()
    }

    /// The plan the program is heading for: the pending child's, else the live one's.
    pub fn current_plan(&self) -> Option<&MixPlan> {
        self.pending.as_ref().or(self.live.as_ref()).map(|c| &c.plan)
    }

    fn start(&mut self, plan: &MixPlan) -> MixStep {
        let generation = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        self.pending = Some(MixChild { generation, plan: plan.clone() });
        MixStep::Start { generation, plan: plan.clone() }
    }

    /// The room layer wants `plan`. `take_slot` takes a transcode slot and says whether
    /// one was free (called only when a child is added). `None`: no slot for even one
    /// child, nothing changes.
    pub fn plan(&mut self, plan: &MixPlan, take_slot: impl FnOnce() -> bool) -> Option<Vec<MixStep>> {
        self.withdrawn = false;
        if let Some(p) = &self.pending {
            if p.plan == *plan {
                return Some(vec![MixStep::Want(Source::Mix(p.generation))]);
            }
            let old = p.generation;
            // Back to what is on air (a layout clicked and clicked back): the pending
            // child is not needed.
            if let Some(l) = self.live.as_ref().filter(|l| l.plan == *plan) {
                let want = MixStep::Want(Source::Mix(l.generation));
                self.pending = None;
                return Some(vec![MixStep::Stop { generation: old, release: true }, want]);
            }
            // The latest plan wins: the pending child's slot goes to the new one.
            return Some(vec![MixStep::Stop { generation: old, release: false }, self.start(plan)]);
        }
        if let Some(l) = &self.live {
            if l.plan == *plan {
                // The same mix (e.g. wanted again while being handed back).
                return Some(vec![MixStep::Want(Source::Mix(l.generation))]);
            }
            if take_slot() {
                return Some(vec![self.start(plan)]);
            }
            // One slot only: today's stop-then-start.
            let old = l.generation;
            self.live = None;
            return Some(vec![MixStep::Stop { generation: old, release: false }, self.start(plan)]);
        }
        take_slot().then(|| vec![self.start(plan)])
    }

    /// The program put generation `generation`'s first keyframe on air. A pending `generation` becomes
    /// live and the old live child stops; anything else (a live child's restart, a
    /// replaced child's last packets) changes nothing.
    pub fn on_air(&mut self, generation: u32) -> Vec<MixStep> {
        if self.pending.as_ref().is_none_or(|p| p.generation != generation) {
            return Vec::new();
        }
        let old = std::mem::replace(&mut self.live, self.pending.take());
        old.map(|o| MixStep::Stop { generation: o.generation, release: true }).into_iter().collect()
    }

    /// The child of generation `generation` gave up (it never produced a keyframe in time or
    /// died too often): it goes, and the program wants what is left — the live mix
    /// when a pending child failed, else the anchor's feed (unless a pending child is
    /// on its way).
    pub fn failed(&mut self, generation: u32) -> Vec<MixStep> {
        if self.pending.as_ref().is_some_and(|p| p.generation == generation) {
            self.pending = None;
            let back = self.live.as_ref().map_or(Source::Anchor, |l| Source::Mix(l.generation));
            return vec![MixStep::Stop { generation, release: true }, MixStep::Want(back)];
        }
        if self.live.as_ref().is_some_and(|l| l.generation == generation) {
            self.live = None;
            let mut steps = vec![MixStep::Stop { generation, release: true }];
            if self.pending.is_none() {
                steps.push(MixStep::Want(Source::Anchor));
            }
            return steps;
        }
        Vec::new()
    }

    /// The room layer no longer wants a mix: the pending child goes at once, the
    /// program wants the anchor's feed, and the live child stays until
    /// [`Self::handed_back`] (viewers keep the mix until the anchor's next keyframe).
    pub fn withdraw(&mut self) -> Vec<MixStep> {
        self.withdrawn = true;
        let mut steps: Vec<MixStep> = self
            .pending
            .take()
            .map(|p| MixStep::Stop { generation: p.generation, release: true })
            .into_iter()
            .collect();
        steps.push(MixStep::Want(Source::Anchor));
        steps
    }

    /// The hand-back after [`Self::withdraw`] is done (the anchor's feed is on air or
    /// the wait is over): the live child stops, unless a plan came meanwhile.
    pub fn handed_back(&mut self) -> Vec<MixStep> {
        if !self.withdrawn {
            return Vec::new();
        }
        self.live.take().map(|l| MixStep::Stop { generation: l.generation, release: true }).into_iter().collect()
    }

    /// The program went off air: every child stops.
    pub fn down(&mut self) -> Vec<MixStep> {
        [self.pending.take(), self.live.take()]
            .into_iter()
            .flatten()
            .map(|c| MixStep::Stop { generation: c.generation, release: true })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(raw_stream("r1"), "r1.raw");
        assert_eq!(mix_stream("r1"), "r1.mix");
        assert_eq!(mix_stream_gen("r1", 0), "r1.mix");
        assert_eq!(mix_stream_gen("r1", 7), "r1.7.mix");
        assert!(is_internal("r1.raw") && is_internal("r1.mix") && is_internal(&mix_stream_gen("r1", 3)));
        assert!(!is_internal("r1") && !is_internal(".raw") && !is_internal("r1-cohost-g"));
        for l in Layout::ALL {
            assert_eq!(Layout::parse(l.as_str()), Ok(l));
        }
        assert!(Layout::parse("mosaic").is_err_and(|e| e.contains("side-by-side, pip or grid")));
    }

    #[test]
    fn side_by_side_halves_and_thirds() {
        let t = tiles(Layout::SideBySide, 2, 1280, 720);
        assert_eq!(t, vec![Tile { x: 0, y: 0, w: 640, h: 720 }, Tile { x: 640, y: 0, w: 640, h: 720 }]);
        let t = tiles(Layout::SideBySide, 3, 1280, 720);
        assert_eq!(t.iter().map(|t| (t.x, t.w)).collect::<Vec<_>>(), vec![(0, 426), (426, 426), (852, 426)]);
        assert_eq!(tiles(Layout::SideBySide, 1, 640, 360), vec![Tile { x: 0, y: 0, w: 640, h: 360 }]);
        assert_eq!(tiles(Layout::SideBySide, 9, 640, 360).len(), 4, "clamped to the anchor and 3 guests");
    }

    #[test]
    fn pip_corner_windows_inside_the_canvas() {
        let t = tiles(Layout::PictureInPicture, 4, 1280, 720);
        assert_eq!(t[0], Tile { x: 0, y: 0, w: 1280, h: 720 });
        for g in &t[1..] {
            assert_eq!((g.w, g.h), (320, 180));
            assert!(g.x + g.w <= 1280 && g.y + g.h <= 720, "{g:?}");
            assert!(g.x >= 640, "on the right: {g:?}");
        }
        assert!(t[1].y > t[2].y && t[2].y > t[3].y, "stacked upwards");
        assert!(t[2].y + t[2].h <= t[1].y, "no overlap");
    }

    #[test]
    fn grid_quarters_and_odd_sizes_stay_even() {
        let t = tiles(Layout::Grid, 4, 1280, 720);
        assert_eq!(t.iter().map(|t| (t.x, t.y)).collect::<Vec<_>>(), vec![(0, 0), (640, 0), (0, 360), (640, 360)]);
        for t in tiles(Layout::Grid, 3, 1279, 719).into_iter().chain(tiles(Layout::SideBySide, 3, 999, 555)) {
            assert!(t.x % 2 == 0 && t.y % 2 == 0 && t.w % 2 == 0 && t.h % 2 == 0, "{t:?}");
        }
    }

    #[test]
    fn filter_text_side_by_side_with_audio() {
        let g = filter_graph(Layout::SideBySide, &[true, true], 640, 360, 25, 44_100);
        assert_eq!(
            g,
            "color=c=black:s=640x360:r=25[bg];\
             [0:v]setpts=PTS-STARTPTS,scale=320:360:force_original_aspect_ratio=decrease,pad=320:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25[v0];\
             [1:v]setpts=PTS-STARTPTS,scale=320:360:force_original_aspect_ratio=decrease,pad=320:360:(ow-iw)/2:(oh-ih)/2,setsar=1,fps=25[v1];\
             [bg][v0]overlay=x=0:y=0:eof_action=pass:repeatlast=1:shortest=0[o0];\
             [o0][v1]overlay=x=320:y=0:eof_action=pass:repeatlast=1:shortest=0[vout];\
             [0:a]asetpts=PTS-STARTPTS,aresample=44100:async=1[a0];\
             [1:a]asetpts=PTS-STARTPTS,aresample=44100:async=1[a1];\
             [a0][a1]amix=inputs=2:duration=longest:dropout_transition=0:normalize=0[aout]"
        );
    }

    #[test]
    fn filter_text_skips_silent_inputs() {
        let g = filter_graph(Layout::Grid, &[true, false, false], 640, 360, 30, 48_000);
        assert!(g.contains("[2:v]") && g.ends_with("[0:a]asetpts=PTS-STARTPTS,aresample=48000:async=1[aout]"), "{g}");
        assert!(!g.contains("amix") && !g.contains("[1:a]"));
        let g = filter_graph(Layout::PictureInPicture, &[false, false], 640, 360, 30, 44_100);
        assert!(!g.contains("aout") && g.contains("[vout]"));
        let g = filter_graph(Layout::SideBySide, &[false, true, true], 640, 360, 30, 44_100);
        assert!(g.contains("[a1][a2]amix=inputs=2"), "{g}");
    }

    fn frame(from: Source, dts: u64, keyframe: bool) -> Offer {
        Offer { from, frame: true, keyframe, source_has_video: true, dts }
    }

    #[test]
    fn switch_waits_for_a_keyframe_and_keeps_the_clock_running() {
        let mut s = ProgramSwitch::default();
        assert_eq!(s.offer(frame(Source::Anchor, 1000, true)), Decision::Pass(1000));
        assert_eq!(s.offer(frame(Source::Mix(0), 5, true)), Decision::Drop, "not wanted yet");
        s.want(Source::Mix(0));
        assert_eq!(s.offer(frame(Source::Mix(0), 40, false)), Decision::Drop, "mix joins at a keyframe");
        assert_eq!(s.offer(frame(Source::Anchor, 1033, false)), Decision::Pass(1033), "anchor plays on meanwhile");
        assert_eq!(s.offer(frame(Source::Mix(0), 80, true)), Decision::Switch(1066));
        assert_eq!(s.on(), Source::Mix(0));
        assert_eq!(s.offer(frame(Source::Mix(0), 120, false)), Decision::Pass(1106));
        assert_eq!(s.offer(frame(Source::Anchor, 1066, true)), Decision::Drop);
        let cfg = Offer { frame: false, ..frame(Source::Mix(0), 120, false) };
        assert_eq!(s.offer(cfg), Decision::Pass(1106), "configs of the current source pass");
        assert_eq!(s.offer(Offer { frame: false, ..frame(Source::Anchor, 1200, false) }), Decision::Drop);
        // Back to the anchor: at its next keyframe, after the mix's last packet.
        s.want(Source::Anchor);
        assert_eq!(s.offer(frame(Source::Anchor, 5000, false)), Decision::Drop);
        assert_eq!(s.offer(frame(Source::Mix(0), 160, false)), Decision::Pass(1146));
        assert_eq!(s.offer(frame(Source::Anchor, 5033, true)), Decision::Switch(1179));
        assert_eq!(s.offer(frame(Source::Anchor, 5066, false)), Decision::Pass(1212));
        assert_eq!(s.to_source(1212), 5066, "back on the anchor's clock");
        assert_eq!(s.offer(frame(Source::Mix(0), 200, true)), Decision::Drop);
    }

    #[test]
    fn a_restarted_mix_is_rebased_at_its_keyframe() {
        let mut s = ProgramSwitch::default();
        s.want(Source::Mix(0));
        assert_eq!(s.offer(frame(Source::Mix(0), 0, true)), Decision::Switch(0));
        assert_eq!(s.offer(frame(Source::Mix(0), 5000, false)), Decision::Pass(5000));
        s.restart(Source::Mix(0));
        assert_eq!(s.offer(frame(Source::Mix(0), 0, false)), Decision::Drop, "held until a keyframe");
        assert_eq!(s.offer(frame(Source::Mix(0), 40, true)), Decision::Switch(5033), "clock runs on");
        assert_eq!(s.offer(frame(Source::Mix(0), 80, false)), Decision::Pass(5073));
        s.restart(Source::Anchor);
        assert_eq!(
            s.offer(frame(Source::Mix(0), 120, false)),
            Decision::Pass(5113),
            "restart of another source: nothing"
        );
    }

    #[test]
    fn audio_only_sources_switch_on_any_frame() {
        let mut s = ProgramSwitch::default();
        s.want(Source::Mix(0));
        let o = Offer { from: Source::Mix(0), frame: true, keyframe: false, source_has_video: false, dts: 7 };
        assert_eq!(s.offer(o), Decision::Switch(0), "nothing went out before: starts at 0");
    }
}

#[cfg(test)]
mod children_tests {
    use super::*;

    fn plan(layout: Layout, guests: &[&str]) -> MixPlan {
        MixPlan { guests: guests.iter().map(|g| g.to_string()).collect(), layout }
    }

    /// Transcode slots as the shell keeps them: taken by `take_slot`, given back by a
    /// releasing `Stop`.
    struct Slots {
        free: usize,
        held: usize,
    }

    impl Slots {
        fn plan(&mut self, c: &mut MixChildren, p: &MixPlan) -> Option<Vec<MixStep>> {
            let (free, held) = (&mut self.free, &mut self.held);
            let steps = c.plan(p, || {
                if *free == 0 {
                    return false;
                }
                *free -= 1;
                *held += 1;
                true
            });
            if let Some(s) = &steps {
                self.apply(s);
            }
            steps
        }

        fn apply(&mut self, steps: &[MixStep]) {
            for s in steps {
                if let MixStep::Stop { release: true, .. } = s {
                    self.free += 1;
                    self.held -= 1;
                }
            }
        }

        /// Every child holds exactly one slot.
        fn check(&self, c: &MixChildren) {
            assert_eq!(self.held, c.live().iter().count() + c.pending().iter().count(), "{c:?}");
        }
    }

    /// A program mixing side by side (generation 0 live) while picture in picture
    /// (generation 1) is pending, with 4 slots.
    fn changing() -> (MixChildren, Slots, MixPlan, MixPlan) {
        let mut c = MixChildren::default();
        let mut slots = Slots { free: 4, held: 0 };
        let sbs = plan(Layout::SideBySide, &["g"]);
        let pip = plan(Layout::PictureInPicture, &["g"]);
        slots.plan(&mut c, &sbs);
        c.on_air(0);
        slots.plan(&mut c, &pip);
        (c, slots, sbs, pip)
    }

    #[test]
    fn a_new_plan_is_made_before_the_old_mix_breaks() {
        let mut c = MixChildren::default();
        let mut slots = Slots { free: 4, held: 0 };
        let sbs = plan(Layout::SideBySide, &["g"]);
        let pip = plan(Layout::PictureInPicture, &["g"]);
        // The first mix: pending until its keyframe went out, the anchor plays meanwhile.
        assert_eq!(slots.plan(&mut c, &sbs), Some(vec![MixStep::Start { generation: 0, plan: sbs.clone() }]));
        assert_eq!(c.on_air(0), vec![], "nothing to stop before the first mix");
        assert_eq!(c.live().map(|l| l.generation), Some(0));
        // A layout change: a second child next to the first, which stops only once the
        // new one is on air.
        assert_eq!(slots.plan(&mut c, &pip), Some(vec![MixStep::Start { generation: 1, plan: pip.clone() }]));
        slots.check(&c);
        assert_eq!((c.live().map(|l| l.generation), c.pending().map(|p| p.generation)), (Some(0), Some(1)));
        assert_eq!(c.current_plan(), Some(&pip));
        assert_eq!(c.on_air(0), vec![], "the live child's own restart changes nothing");
        let steps = c.on_air(1);
        assert_eq!(steps, vec![MixStep::Stop { generation: 0, release: true }]);
        slots.apply(&steps);
        slots.check(&c);
        assert_eq!((c.live().map(|l| l.generation), c.pending()), (Some(1), None));
        assert_eq!(c.on_air(1), vec![], "a second keyframe is no event");
        // The same plan again: nothing restarts.
        assert_eq!(slots.plan(&mut c, &pip), Some(vec![MixStep::Want(Source::Mix(1))]));
        assert_eq!(slots.free, 3);
    }

    #[test]
    fn quick_changes_keep_one_pending_child_and_the_latest_plan_wins() {
        let mut c = MixChildren::default();
        let mut slots = Slots { free: 4, held: 0 };
        let [sbs, pip, grid] = [Layout::SideBySide, Layout::PictureInPicture, Layout::Grid].map(|l| plan(l, &["g"]));
        slots.plan(&mut c, &sbs);
        c.on_air(0);
        slots.plan(&mut c, &pip);
        let steps = slots.plan(&mut c, &grid).expect("a slot");
        assert_eq!(
            steps,
            vec![MixStep::Stop { generation: 1, release: false }, MixStep::Start { generation: 2, plan: grid.clone() }],
            "the pending child's slot goes to the newest"
        );
        slots.check(&c);
        assert_eq!(c.on_air(1), vec![], "a replaced child's late keyframe is no event");
        // Clicked back to what is on air: the pending child is not needed.
        let steps = slots.plan(&mut c, &sbs).expect("a slot");
        assert_eq!(steps, vec![MixStep::Stop { generation: 2, release: true }, MixStep::Want(Source::Mix(0))]);
        slots.check(&c);
        assert_eq!((c.live().map(|l| l.generation), c.pending()), (Some(0), None));
        assert_eq!(slots.held, 1);
    }

    #[test]
    fn with_one_slot_the_old_child_stops_first() {
        let mut c = MixChildren::default();
        let mut slots = Slots { free: 1, held: 0 };
        let sbs = plan(Layout::SideBySide, &["g"]);
        let two = plan(Layout::SideBySide, &["g", "h"]);
        slots.plan(&mut c, &sbs);
        c.on_air(0);
        let steps = slots.plan(&mut c, &two).expect("a slot");
        assert_eq!(
            steps,
            vec![MixStep::Stop { generation: 0, release: false }, MixStep::Start { generation: 1, plan: two }]
        );
        slots.check(&c);
        assert_eq!(c.on_air(1), vec![], "nothing left to stop");
        // No slot at all: nothing happens.
        let mut none = MixChildren::default();
        assert_eq!(Slots { free: 0, held: 0 }.plan(&mut none, &sbs), None);
        assert!(none.is_empty());
    }

    #[test]
    fn a_failed_pending_child_leaves_the_old_mix_on_air() {
        let (mut c, mut slots, sbs, pip) = changing();
        let steps = c.failed(1);
        assert_eq!(steps, vec![MixStep::Stop { generation: 1, release: true }, MixStep::Want(Source::Mix(0))]);
        slots.apply(&steps);
        slots.check(&c);
        assert_eq!(c.current_plan(), Some(&sbs));
        assert_eq!(c.failed(1), vec![], "once");
        // The first child failing before any mix was on air: back to the anchor.
        let mut first = MixChildren::default();
        slots.plan(&mut first, &sbs);
        let steps = first.failed(0);
        assert_eq!(steps, vec![MixStep::Stop { generation: 0, release: true }, MixStep::Want(Source::Anchor)]);
        slots.apply(&steps);
        // The live child failing while a pending one is on its way: that one is wanted.
        slots.plan(&mut c, &pip);
        let steps = c.failed(0);
        assert_eq!(steps, vec![MixStep::Stop { generation: 0, release: true }]);
        slots.apply(&steps);
        slots.check(&c);
        assert_eq!(c.failed(2), vec![MixStep::Stop { generation: 2, release: true }, MixStep::Want(Source::Anchor)]);
    }

    #[test]
    fn withdrawing_hands_back_then_stops_the_live_child() {
        let (mut c, mut slots, sbs, pip) = changing();
        let steps = c.withdraw();
        assert_eq!(steps, vec![MixStep::Stop { generation: 1, release: true }, MixStep::Want(Source::Anchor)]);
        slots.apply(&steps);
        assert_eq!(c.live().map(|l| l.generation), Some(0), "the mix stays on air until the anchor's keyframe");
        let steps = c.handed_back();
        assert_eq!(steps, vec![MixStep::Stop { generation: 0, release: true }]);
        slots.apply(&steps);
        slots.check(&c);
        assert!(c.is_empty());
        // Wanted again during a hand-back: the live child carries on.
        slots.plan(&mut c, &sbs);
        c.on_air(2);
        c.withdraw();
        assert_eq!(slots.plan(&mut c, &sbs), Some(vec![MixStep::Want(Source::Mix(2))]));
        assert_eq!(c.handed_back(), vec![], "a plan came meanwhile");
        // Off air: everything stops.
        slots.plan(&mut c, &pip);
        let steps = c.down();
        assert_eq!(
            steps,
            vec![MixStep::Stop { generation: 3, release: true }, MixStep::Stop { generation: 2, release: true }]
        );
        slots.apply(&steps);
        slots.check(&c);
        assert_eq!(slots.free, 4);
    }

    #[test]
    fn the_switch_moves_from_one_mix_generation_to_the_next_at_its_keyframe() {
        let mut s = ProgramSwitch::default();
        let f = |from, dts, keyframe| Offer { from, frame: true, keyframe, source_has_video: true, dts };
        s.want(Source::Mix(0));
        assert_eq!(s.offer(f(Source::Mix(0), 0, true)), Decision::Switch(0));
        assert_eq!(s.offer(f(Source::Mix(0), 3000, false)), Decision::Pass(3000));
        s.want(Source::Mix(1));
        assert_eq!(s.offer(f(Source::Mix(1), 0, false)), Decision::Drop, "the new mix joins at a keyframe");
        assert_eq!(s.offer(f(Source::Mix(0), 3040, false)), Decision::Pass(3040), "the old mix plays on");
        assert_eq!(s.offer(f(Source::Mix(1), 40, true)), Decision::Switch(3073), "clock runs on");
        assert_eq!(s.on(), Source::Mix(1));
        assert_eq!(s.offer(f(Source::Mix(0), 3080, true)), Decision::Drop, "the old mix's last packets");
        assert_eq!(s.offer(f(Source::Mix(1), 80, false)), Decision::Pass(3113));
    }

    #[test]
    fn sample_rate_follows_webrtc_sources() {
        assert_eq!(mix_sample_rate(&[Some(44_100), Some(48_000)]), 48_000);
        assert_eq!(mix_sample_rate(&[Some(44_100), None]), 44_100);
        assert_eq!(mix_sample_rate(&[None]), 44_100);
    }
}
