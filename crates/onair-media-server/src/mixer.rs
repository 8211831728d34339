//! Co-host mixes: while the room layer asks for one ([`MixControl::set_mix`]), an
//! `ffmpeg` child per program stream composes the publisher's own feed and up to three
//! guest streams into one picture with mixed audio, and the result becomes what the
//! program stream's viewers get.
//!
//! The path of a mixed stream `S`:
//! 1. the registry copies the publisher's packets to `S.raw` (a "tap", an ordinary
//!    stream the mixer and the guests read);
//! 2. the child plays `S.raw` and each guest stream from this server over loopback
//!    RTMP, composes them ([`onair_media::mix::filter_graph`]) and publishes its
//!    generation's output (`S.mix`, then `S.1.mix`, `S.2.mix`, …:
//!    [`onair_media::mix::mix_stream_gen`]) back over loopback RTMP with a signed URL,
//!    like a rendition;
//! 3. a forwarder reads that output and offers its packets to `S`'s program switch,
//!    which moves `S`'s viewers onto it at its first keyframe (fresh sequence headers,
//!    timestamps running on) and back to the publisher's feed at the publisher's next
//!    keyframe when the mix is no longer wanted.
//!
//! A change of plan (a guest joins or leaves, another layout) is made before the old
//! mix is broken: a new child of the next generation starts next to the running one,
//! viewers move onto it at its first keyframe, and only then does the old child stop
//! ([`onair_media::mix::MixChildren`] decides; this shell runs what it says). A new
//! child with no keyframe on air within [`KEYFRAME_WAIT`] is killed and retried like
//! a crashed one while the old mix stays on air.
//!
//! Out of process for the reasons renditions are: x264 is CPU-heavy and its crash must
//! not take the server down. Children count against `[media] max_transcodes` (two for
//! a moment during a change; with one slot left the old child stops first), die with
//! their program stream and are restarted a bounded number of times.
//!
//! It knows streams, not rooms: the hub says which streams to mix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use onair_media::lifecycle::{MixControl, MixPlan};
use onair_media::mix::{
    MAX_GUESTS, MixChildren, MixStep, Source, filter_graph, mix_sample_rate, mix_stream_gen, raw_stream,
};
use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::MediaService;
use crate::registry::{Protocol, Recv, RegistryEvent};
use crate::renditions::{live_encode_args, run_ffmpeg};

/// Restarts of a mixer child that died while its plan still stands.
const MAX_RESTARTS: u32 = 3;
/// Canvas when the publisher's size is not known yet.
const DEFAULT_SIZE: (u32, u32) = (1280, 720);
/// Frame rate of the mix.
const FPS: u32 = 25;
/// Video bitrate of the mix, kbit/s.
const MIX_KBPS: u32 = 2500;
/// How long the mixer child stays after the mix is no longer wanted, waiting for the
/// publisher's next keyframe so viewers never see a frozen picture in between.
const HANDBACK_WAIT: Duration = Duration::from_secs(6);
/// How long a new child has to get its first keyframe on air (connect, probe every
/// source, encode: 3–6 s on a busy 2-core machine) before it counts as failed; the
/// mix it replaces stays on air meanwhile.
pub const KEYFRAME_WAIT: Duration = Duration::from_secs(10);

/// The ffmpeg arguments composing `inputs` (the publisher's feed first) per `layout`
/// onto a `w`×`h` canvas and publishing to `dst`. `audio[i]` says whether input `i`
/// carries audio; the mix's audio runs at `rate` Hz ([`mix_sample_rate`]).
pub fn mixer_args(
    inputs: &[String],
    audio: &[bool],
    layout: onair_media::mix::Layout,
    (w, h): (u32, u32),
    rate: u32,
    dst: &str,
) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-loglevel", "error", "-nostdin"].iter().map(|s| s.to_string()).collect();
    for i in inputs {
        // Live sources: start decoding at once; a dead source ends its input after 10 s.
        for s in ["-fflags", "nobuffer", "-rw_timeout", "10000000", "-i"] {
            a.push(s.to_string());
        }
        a.push(i.clone());
    }
    a.push("-filter_complex".into());
    a.push(filter_graph(layout, audio, w, h, FPS, rate));
    a.extend(["-map".into(), "[vout]".into()]);
    if audio.iter().any(|x| *x) {
        a.extend(["-map".into(), "[aout]".into()]);
    }
    a.extend(live_encode_args(MIX_KBPS, 128, rate, dst));
    a
}

/// A program's mixer children: which is live or pending (the pure part) and how to
/// stop each one's task.
#[derive(Default)]
struct Program {
    children: MixChildren,
    /// Generation → its task's stop.
    stops: HashMap<u32, CancellationToken>,
}

/// Runs the mixer children.
pub struct Mixer {
    media: Arc<MediaService>,
    ffmpeg: String,
    /// Program stream → the plan the room layer wants (kept while the program is off
    /// air, so a re-published stream is mixed again).
    plans: Mutex<HashMap<String, MixPlan>>,
    /// Program stream → its children. Locked before a stream's own state, never after.
    programs: Mutex<HashMap<String, Program>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Asks a WebRTC publisher for a keyframe (a browser sends one only when asked).
    keyframe: Option<KeyframeRequest>,
    /// Itself, for the tasks [`MixControl::set_mix`] starts.
    me: std::sync::Weak<Mixer>,
}

/// Asks the publisher of a stream for a keyframe (WebRTC publishers; a no-op for others).
pub type KeyframeRequest = Arc<dyn Fn(&str) + Send + Sync>;

impl Mixer {
    /// Starts the mixer when ffmpeg is present and the RTMP listener is on (children
    /// read and publish over loopback RTMP); otherwise logs why it is off.
    pub async fn start(
        media: Arc<MediaService>,
        keyframe: Option<KeyframeRequest>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Option<Arc<Self>> {
        if media.rtmp_addr.is_none() {
            tracing::warn!("co-host mixing off: it needs the RTMP listener ([rtmp] listen)");
            return None;
        }
        let ffmpeg = media.cfg.hls.ffmpeg.clone();
        if !crate::hls::ffmpeg_available(&ffmpeg).await {
            tracing::warn!(ffmpeg = %ffmpeg, "co-host mixing off: ffmpeg not found (install ffmpeg or set [media] ffmpeg)");
            return None;
        }
        let me = Arc::new_cyclic(|me| Mixer {
            media: media.clone(),
            ffmpeg,
            plans: Mutex::new(HashMap::new()),
            programs: Mutex::new(HashMap::new()),
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            keyframe,
            me: me.clone(),
        });
        let m = me.clone();
        let mut events = media.registry.watch();
        tasks.spawn(async move {
            loop {
                let ev = tokio::select! {
                    _ = m.shutdown.cancelled() => break,
                    ev = events.recv() => ev,
                };
                match ev {
                    // A program that comes (back) on air with a plan standing is mixed.
                    Ok(RegistryEvent::Published(name)) => m.apply(&name),
                    Ok(RegistryEvent::Unpublished(name)) => m.program_down(&name),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let programs: Vec<String> = m.plans.lock().keys().cloned().collect();
                        for p in programs {
                            m.apply(&p);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            for (_, p) in m.programs.lock().drain() {
                for stop in p.stops.values() {
                    stop.cancel();
                }
            }
        });
        tracing::info!(max = media.cfg.max_transcodes, "co-host mixing on");
        Some(me)
    }

    /// The plan `program` is mixed with (or about to be), if any.
    pub fn running(&self, program: &str) -> Option<MixPlan> {
        self.programs.lock().get(program).and_then(|p| p.children.current_plan().cloned())
    }

    /// Does what [`MixChildren`] decided for `program` (whose entry `p` is, locked).
    fn exec(self: &Arc<Self>, program: &str, p: &mut Program, steps: Vec<MixStep>) {
        let stream = self.media.registry.get(program);
        for step in steps {
            match step {
                MixStep::Start { generation, plan } => {
                    let stop = self.shutdown.child_token();
                    p.stops.insert(generation, stop.clone());
                    if let Some(s) = &stream {
                        s.want_program(Source::Mix(generation));
                    }
                    let me = self.clone();
                    let program = program.to_string();
                    self.tasks.spawn(async move { me.run(&program, generation, plan, stop).await });
                }
                MixStep::Stop { generation, release } => {
                    if let Some(stop) = p.stops.remove(&generation) {
                        stop.cancel();
                    }
                    if release {
                        self.media.give_back_transcodes(1);
                    }
                }
                MixStep::Want(source) => {
                    if let Some(s) = &stream {
                        s.want_program(source);
                    }
                }
            }
        }
    }

    /// Brings `program`'s children in line with its plan.
    fn apply(self: &Arc<Self>, program: &str) {
        let plan = self.plans.lock().get(program).cloned();
        let Some(plan) = plan else { return };
        let Some(stream) = self.media.registry.get(program) else { return };
        if stream.is_relayed() {
            return; // mixed at the origin
        }
        let mut programs = self.programs.lock();
        let p = programs.entry(program.to_string()).or_default();
        let Some(steps) = p.children.plan(&plan, || self.media.take_transcodes(1)) else {
            tracing::warn!(stream = %program, max = self.media.cfg.max_transcodes, "no co-host mix for this stream: [media] max_transcodes reached");
            programs.remove(program);
            return;
        };
        let started: Vec<u32> = steps
            .iter()
            .filter_map(|s| if let MixStep::Start { generation, .. } = s { Some(*generation) } else { None })
            .collect();
        // The child reads the tap: it must be there first.
        let tap = if started.is_empty() { Ok(true) } else { self.media.registry.start_tap(program) };
        let next_to = p.children.live().map(|l| l.generation);
        for generation in &started {
            tracing::info!(stream = %program, generation, ?next_to, guests = ?plan.guests, layout = plan.layout.as_str(), "co-host mix: new plan");
        }
        self.exec(program, p, steps);
        if let Err(e) = tap {
            tracing::warn!(stream = %program, error = %e, "no co-host mix: the publisher's feed cannot be copied");
            for generation in started {
                let steps = p.children.failed(generation);
                self.exec(program, p, steps);
            }
        }
    }

    /// Whether `generation` is `program`'s live child.
    fn is_live(&self, program: &str, generation: u32) -> bool {
        self.programs.lock().get(program).and_then(|p| p.children.live()).is_some_and(|l| l.generation == generation)
    }

    /// The program put `generation`'s first keyframe on air: the child it replaced goes.
    fn on_air(self: &Arc<Self>, program: &str, generation: u32) {
        let mut programs = self.programs.lock();
        let Some(p) = programs.get_mut(program) else { return };
        let steps = p.children.on_air(generation);
        if !steps.is_empty() {
            tracing::info!(stream = %program, generation, "co-host mix: the new mix is on air; the previous child stops");
        }
        self.exec(program, p, steps);
    }

    /// `generation`'s task gave up: the mix it replaced (or the publisher's feed) stays.
    fn failed(self: &Arc<Self>, program: &str, generation: u32) {
        let mut programs = self.programs.lock();
        let Some(p) = programs.get_mut(program) else { return };
        let steps = p.children.failed(generation);
        self.exec(program, p, steps);
    }

    fn program_down(self: &Arc<Self>, program: &str) {
        // The tap ended with the publisher; the plan stays for a re-publish.
        let mut programs = self.programs.lock();
        if let Some(mut p) = programs.remove(program) {
            let steps = p.children.down();
            self.exec(program, &mut p, steps);
        }
    }

    /// Gives `program`'s viewers the publisher's feed again: the live child stays until
    /// the switch happened (the publisher's next keyframe) or a few seconds passed.
    fn hand_back(self: &Arc<Self>, program: &str) {
        {
            let mut programs = self.programs.lock();
            let Some(p) = programs.get_mut(program) else { return };
            let steps = p.children.withdraw();
            self.exec(program, p, steps);
        }
        let Some(stream) = self.media.registry.get(program) else {
            self.program_down(program);
            return;
        };
        let me = self.clone();
        let program = program.to_string();
        self.tasks.spawn(async move {
            let deadline = tokio::time::Instant::now() + HANDBACK_WAIT;
            let mut asked = tokio::time::Instant::now() - Duration::from_secs(1);
            while stream.program() != Source::Anchor && tokio::time::Instant::now() < deadline {
                // The switch waits for the publisher's next keyframe: a WebRTC anchor is
                // asked for one (a browser may send the next one only after many seconds).
                if asked.elapsed() >= Duration::from_secs(1) {
                    asked = tokio::time::Instant::now();
                    me.media.ask_keyframe(&program);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            {
                let mut programs = me.programs.lock();
                let Some(p) = programs.get_mut(&program) else { return };
                let steps = p.children.handed_back();
                me.exec(&program, p, steps);
                // Unless a new plan came meanwhile.
                if !p.children.is_empty() || me.plans.lock().contains_key(&program) {
                    return;
                }
                programs.remove(&program);
            }
            stream.stop_tap();
            tracing::info!(stream = %program, on = ?stream.program(), "co-host mix ended; the publisher's feed is the program again");
        });
    }

    /// One generation's child, restarted a few times with backoff if it dies (or, not
    /// yet on air, shows no keyframe within [`KEYFRAME_WAIT`]), and the forwarder of its
    /// output into the program.
    async fn run(self: Arc<Self>, program: &str, generation: u32, plan: MixPlan, stop: CancellationToken) {
        let out = mix_stream_gen(program, generation);
        let raw = raw_stream(program);
        let guests: Vec<String> = plan.guests.iter().take(MAX_GUESTS).cloned().collect();
        let mut restarts = 0;
        loop {
            let mut sources = vec![raw.clone()];
            sources.extend(guests.iter().cloned());
            let streams: Vec<_> = sources.iter().map(|s| self.media.registry.get(s)).collect();
            let audio: Vec<bool> = streams.iter().map(|s| s.as_ref().is_some_and(|s| s.has_audio())).collect();
            let rate = mix_sample_rate(&streams.iter().map(|s| s.as_ref()?.audio_sample_rate()).collect::<Vec<_>>());
            let size = self
                .media
                .registry
                .get(program)
                .map(|s| s.stats(onair_shell::now_ms()))
                .and_then(|st| Some((st.width?, st.height?)))
                .filter(|(w, h)| *w >= 16 && *h >= 16)
                .unwrap_or(DEFAULT_SIZE);
            let inputs: Vec<String> = sources.iter().map(|s| self.media.loopback_play(s)).collect();
            let args = mixer_args(&inputs, &audio, plan.layout, size, rate, &self.media.loopback_push(&out));
            let started = tokio::time::Instant::now();
            tracing::info!(stream = %program, generation, ?guests, layout = plan.layout.as_str(), ?size, rate, "co-host mix starting");
            // This attempt only: the watchdog ends it, `stop` ends the generation.
            let attempt = stop.child_token();
            let forward =
                tokio::spawn(forward(self.clone(), program.to_string(), generation, out.clone(), attempt.clone()));
            let watchdog = {
                let (me, program, attempt) = (self.clone(), program.to_string(), attempt.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(KEYFRAME_WAIT).await;
                    if !me.is_live(&program, generation) {
                        attempt.cancel();
                    }
                })
            };
            // The child starts reading within a second or two; a browser publisher sends
            // a keyframe only when asked, so ask (twice: the first may come too early).
            let ask = self.keyframe.clone().map(|ask| {
                let mut who = vec![program.to_string()];
                who.extend(guests.iter().cloned());
                tokio::spawn(async move {
                    for wait in [1500, 2500] {
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                        for s in &who {
                            ask(s);
                        }
                    }
                })
            });
            let done = run_ffmpeg(&self.ffmpeg, &args, &attempt).await;
            forward.abort();
            watchdog.abort();
            if let Some(t) = ask {
                t.abort();
            }
            let (status, err) = match done {
                Ok(Some(done)) => done,
                Ok(None) if stop.is_cancelled() => return,
                Ok(None) => (None, format!("no keyframe on air within {KEYFRAME_WAIT:?}; the previous mix stays")),
                Err(e) => {
                    tracing::error!(stream = %program, generation, error = %e, "co-host mix: cannot start ffmpeg");
                    break;
                }
            };
            if stop.is_cancelled() || self.media.registry.get(program).is_none() {
                return;
            }
            if started.elapsed() > Duration::from_secs(60) {
                restarts = 0;
            }
            restarts += 1;
            if restarts > MAX_RESTARTS {
                tracing::error!(stream = %program, generation, ?status, stderr = %err, "co-host mix failed {MAX_RESTARTS} restarts; viewers keep the previous mix or the publisher's feed");
                break;
            }
            let backoff = Duration::from_secs(1 << restarts);
            tracing::warn!(stream = %program, generation, ?status, stderr = %err, restart = restarts, ?backoff, "co-host mix ffmpeg died; restarting");
            if let Some(s) = self.media.registry.get(program) {
                s.restart_mix(generation);
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
        }
        // Given up (the plan stays until the room layer changes it).
        self.failed(program, generation);
    }
}

/// Reads generation `generation`'s output `out` (as an internal consumer, whenever it is
/// published) and offers every packet to `program`'s switch, until stopped (the caller
/// aborts it with its child) or the program ends; tells the mixer when the switch put
/// this mix on air. A previous attempt's `out` may still be ending when this one
/// starts: an ended subscription is simply taken again.
async fn forward(me: Arc<Mixer>, program: String, generation: u32, out: String, stop: CancellationToken) {
    loop {
        let mut sub = loop {
            if let Some(sub) = me.media.registry.subscribe(&out, Protocol::Internal) {
                break sub;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.cancelled() => return,
            }
        };
        loop {
            let r = tokio::select! {
                r = sub.recv() => r,
                _ = stop.cancelled() => return,
            };
            match r {
                Recv::Packet(p) => match me.media.registry.get(&program) {
                    Some(s) => {
                        if s.feed_mix(generation, &p) {
                            me.on_air(&program, generation);
                        }
                    }
                    None => return,
                },
                Recv::Skipped(n) => {
                    tracing::warn!(stream = %program, generation, packets = n, "mix forwarder fell behind")
                }
                Recv::Ended => break,
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = stop.cancelled() => return,
        }
    }
}

impl MixControl for Mixer {
    fn set_mix(&self, program: &str, plan: Option<MixPlan>) {
        let Some(me) = self.me.upgrade() else { return };
        match plan.filter(|p| !p.guests.is_empty()) {
            Some(plan) => {
                me.plans.lock().insert(program.to_string(), plan);
                me.apply(program);
            }
            None => {
                if me.plans.lock().remove(program).is_some() {
                    me.hand_back(program);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use onair_media::mix::Layout;

    #[test]
    fn args_read_every_source_and_publish_the_mix() {
        let a = mixer_args(
            &["rtmp://127.0.0.1:1935/live/r.raw".into(), "rtmp://127.0.0.1:1935/live/r-cohost-g".into()],
            &[true, false],
            Layout::SideBySide,
            (640, 360),
            48_000,
            "rtmp://127.0.0.1:1935/live/r.mix?txSecret=x",
        );
        let inputs: Vec<&str> =
            a.iter().enumerate().filter(|(_, s)| *s == "-i").map(|(i, _)| a[i + 1].as_str()).collect();
        assert_eq!(inputs, ["rtmp://127.0.0.1:1935/live/r.raw", "rtmp://127.0.0.1:1935/live/r-cohost-g"]);
        let at = |flag: &str| a.iter().position(|s| s == flag).map(|i| a[i + 1].as_str());
        assert_eq!(
            at("-filter_complex"),
            Some(filter_graph(Layout::SideBySide, &[true, false], 640, 360, FPS, 48_000).as_str())
        );
        let maps: Vec<&str> =
            a.iter().enumerate().filter(|(_, s)| *s == "-map").map(|(i, _)| a[i + 1].as_str()).collect();
        assert_eq!(maps, ["[vout]", "[aout]"]);
        assert_eq!(at("-ar"), Some("48000"), "the mix's audio at the rate asked");
        assert_eq!(a.last().map(String::as_str), Some("rtmp://127.0.0.1:1935/live/r.mix?txSecret=x"));
        let silent = mixer_args(&["a".into(), "b".into()], &[false, false], Layout::Grid, (640, 360), 44_100, "d");
        assert!(!silent.iter().any(|s| s == "[aout]"), "no audio map without audio");
    }
}
