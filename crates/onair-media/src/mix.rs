//! The co-host mixer's pure parts: where each source goes on the canvas for a layout
//! ([`tiles`]), the ffmpeg filter graph that composes them ([`filter_graph`]), the
//! internal stream names, and the program switch ([`ProgramSwitch`]) that decides, packet
//! by packet, whether viewers of a stream get the anchor's own feed or the mix.
//!
//! The shell (`onair-media-server`'s `mixer`) runs the ffmpeg child and feeds the switch;
//! nothing here reads a clock or touches a socket.

use std::fmt::Write as _;

/// Most guests composed with the anchor (the 2×2 grid's other three cells).
pub const MAX_GUESTS: usize = 3;

/// Suffix of the anchor's own feed while a mix is the program (`{stream}.raw`): what the
/// mixer reads and what guests watch. A room's stream name never holds a `.`, so these
/// names cannot collide with one.
pub const RAW_SUFFIX: &str = ".raw";
/// Suffix of the mixer's output (`{stream}.mix`), an internal stream forwarded into the
/// program.
pub const MIX_SUFFIX: &str = ".mix";

/// The anchor's own feed while `program` is mixed.
pub fn raw_stream(program: &str) -> String {
    format!("{program}{RAW_SUFFIX}")
}

/// The mixer's output for `program`.
pub fn mix_stream(program: &str) -> String {
    format!("{program}{MIX_SUFFIX}")
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

/// The `-filter_complex` graph composing inputs `0..audio.len()` (input 0 the anchor)
/// onto a black `w`×`h` canvas at `fps`, with every input that has audio (`audio[i]`)
/// mixed by `amix`. Outputs are labelled `[vout]` and, when any input has audio,
/// `[aout]`. Each input is restarted at time 0 (`setpts=PTS-STARTPTS`) since every
/// source has its own clock; each is fitted into its tile keeping its aspect ratio.
pub fn filter_graph(layout: Layout, audio: &[bool], w: u32, h: u32, fps: u32) -> String {
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
            let _ = write!(g, ";[{}:a]asetpts=PTS-STARTPTS,aresample=44100:async=1[aout]", with_audio[0]);
        }
        n => {
            for i in &with_audio {
                let _ = write!(g, ";[{i}:a]asetpts=PTS-STARTPTS,aresample=44100:async=1[a{i}]");
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The publisher's own packets.
    Anchor,
    /// The mixer's output.
    Mix,
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
/// ([`Self::want`]) and offers every packet of both; the switch happens at the wanted
/// source's next keyframe (viewers keep the current picture until then), and
/// timestamps are rebased so the program's clock runs on without a jump back.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(raw_stream("r1"), "r1.raw");
        assert_eq!(mix_stream("r1"), "r1.mix");
        assert!(is_internal("r1.raw") && is_internal("r1.mix"));
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
        let g = filter_graph(Layout::SideBySide, &[true, true], 640, 360, 25);
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
        let g = filter_graph(Layout::Grid, &[true, false, false], 640, 360, 30);
        assert!(g.contains("[2:v]") && g.ends_with("[0:a]asetpts=PTS-STARTPTS,aresample=44100:async=1[aout]"), "{g}");
        assert!(!g.contains("amix") && !g.contains("[1:a]"));
        let g = filter_graph(Layout::PictureInPicture, &[false, false], 640, 360, 30);
        assert!(!g.contains("aout") && g.contains("[vout]"));
        let g = filter_graph(Layout::SideBySide, &[false, true, true], 640, 360, 30);
        assert!(g.contains("[a1][a2]amix=inputs=2"), "{g}");
    }

    fn frame(from: Source, dts: u64, keyframe: bool) -> Offer {
        Offer { from, frame: true, keyframe, source_has_video: true, dts }
    }

    #[test]
    fn switch_waits_for_a_keyframe_and_keeps_the_clock_running() {
        let mut s = ProgramSwitch::default();
        assert_eq!(s.offer(frame(Source::Anchor, 1000, true)), Decision::Pass(1000));
        assert_eq!(s.offer(frame(Source::Mix, 5, true)), Decision::Drop, "not wanted yet");
        s.want(Source::Mix);
        assert_eq!(s.offer(frame(Source::Mix, 40, false)), Decision::Drop, "mix joins at a keyframe");
        assert_eq!(s.offer(frame(Source::Anchor, 1033, false)), Decision::Pass(1033), "anchor plays on meanwhile");
        assert_eq!(s.offer(frame(Source::Mix, 80, true)), Decision::Switch(1066));
        assert_eq!(s.on(), Source::Mix);
        assert_eq!(s.offer(frame(Source::Mix, 120, false)), Decision::Pass(1106));
        assert_eq!(s.offer(frame(Source::Anchor, 1066, true)), Decision::Drop);
        let cfg = Offer { frame: false, ..frame(Source::Mix, 120, false) };
        assert_eq!(s.offer(cfg), Decision::Pass(1106), "configs of the current source pass");
        assert_eq!(s.offer(Offer { frame: false, ..frame(Source::Anchor, 1200, false) }), Decision::Drop);
        // Back to the anchor: at its next keyframe, after the mix's last packet.
        s.want(Source::Anchor);
        assert_eq!(s.offer(frame(Source::Anchor, 5000, false)), Decision::Drop);
        assert_eq!(s.offer(frame(Source::Mix, 160, false)), Decision::Pass(1146));
        assert_eq!(s.offer(frame(Source::Anchor, 5033, true)), Decision::Switch(1179));
        assert_eq!(s.offer(frame(Source::Anchor, 5066, false)), Decision::Pass(1212));
        assert_eq!(s.to_source(1212), 5066, "back on the anchor's clock");
        assert_eq!(s.offer(frame(Source::Mix, 200, true)), Decision::Drop);
    }

    #[test]
    fn a_restarted_mix_is_rebased_at_its_keyframe() {
        let mut s = ProgramSwitch::default();
        s.want(Source::Mix);
        assert_eq!(s.offer(frame(Source::Mix, 0, true)), Decision::Switch(0));
        assert_eq!(s.offer(frame(Source::Mix, 5000, false)), Decision::Pass(5000));
        s.restart(Source::Mix);
        assert_eq!(s.offer(frame(Source::Mix, 0, false)), Decision::Drop, "held until a keyframe");
        assert_eq!(s.offer(frame(Source::Mix, 40, true)), Decision::Switch(5033), "clock runs on");
        assert_eq!(s.offer(frame(Source::Mix, 80, false)), Decision::Pass(5073));
        s.restart(Source::Anchor);
        assert_eq!(s.offer(frame(Source::Mix, 120, false)), Decision::Pass(5113), "restart of another source: nothing");
    }

    #[test]
    fn audio_only_sources_switch_on_any_frame() {
        let mut s = ProgramSwitch::default();
        s.want(Source::Mix);
        let o = Offer { from: Source::Mix, frame: true, keyframe: false, source_has_video: false, dts: 7 };
        assert_eq!(s.offer(o), Decision::Switch(0), "nothing went out before: starts at 0");
    }
}
