//! Co-host mixes: while the room layer asks for one ([`MixControl::set_mix`]), one
//! `ffmpeg` child per program stream composes the publisher's own feed and up to three
//! guest streams into one picture with mixed audio, and the result becomes what the
//! program stream's viewers get.
//!
//! The path of a mixed stream `S`:
//! 1. the registry copies the publisher's packets to `S.raw` (a "tap", an ordinary
//!    stream the mixer and the guests read);
//! 2. the child plays `S.raw` and each guest stream from this server over loopback
//!    RTMP, composes them ([`onair_media::mix::filter_graph`]) and publishes `S.mix`
//!    back over loopback RTMP with a signed URL, like a rendition;
//! 3. a forwarder reads `S.mix` and offers its packets to `S`'s program switch, which
//!    moves `S`'s viewers onto the mix at its first keyframe (fresh sequence headers,
//!    timestamps running on) and back to the publisher's feed at the publisher's next
//!    keyframe when the mix is no longer wanted.
//!
//! Out of process for the reasons renditions are: x264 is CPU-heavy and its crash must
//! not take the server down. Children count against `[media] max_transcodes`, die with
//! their program stream and are restarted a bounded number of times.
//!
//! It knows streams, not rooms: the hub says which streams to mix.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use onair_media::lifecycle::{MixControl, MixPlan};
use onair_media::mix::{MAX_GUESTS, Source, filter_graph, mix_stream, raw_stream};
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

/// The ffmpeg arguments composing `inputs` (the publisher's feed first) per `layout`
/// onto a `w`×`h` canvas and publishing to `dst`. `audio[i]` says whether input `i`
/// carries audio.
pub fn mixer_args(
    inputs: &[String],
    audio: &[bool],
    layout: onair_media::mix::Layout,
    (w, h): (u32, u32),
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
    a.push(filter_graph(layout, audio, w, h, FPS));
    a.extend(["-map".into(), "[vout]".into()]);
    if audio.iter().any(|x| *x) {
        a.extend(["-map".into(), "[aout]".into()]);
    }
    a.extend(live_encode_args(MIX_KBPS, 128, dst));
    a
}

struct Running {
    plan: MixPlan,
    /// Stops this plan's child (a new plan or the end of mixing).
    stop: CancellationToken,
}

/// Runs the mixer children.
pub struct Mixer {
    media: Arc<MediaService>,
    ffmpeg: String,
    /// Program stream → the plan the room layer wants (kept while the program is off
    /// air, so a re-published stream is mixed again).
    plans: Mutex<HashMap<String, MixPlan>>,
    /// Program stream → its running child.
    running: Mutex<HashMap<String, Running>>,
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
            running: Mutex::new(HashMap::new()),
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
            for (_, r) in m.running.lock().drain() {
                r.stop.cancel();
            }
        });
        tracing::info!(max = media.cfg.max_transcodes, "co-host mixing on");
        Some(me)
    }

    /// The plan running for `program`, if any.
    pub fn running(&self, program: &str) -> Option<MixPlan> {
        self.running.lock().get(program).map(|r| r.plan.clone())
    }

    /// Brings `program`'s child in line with its plan.
    fn apply(self: &Arc<Self>, program: &str) {
        let plan = self.plans.lock().get(program).cloned();
        let Some(plan) = plan else { return };
        let Some(stream) = self.media.registry.get(program) else { return };
        if stream.is_relayed() {
            return; // mixed at the origin
        }
        let stop = {
            let mut running = self.running.lock();
            if running.get(program).is_some_and(|r| r.plan == plan) {
                // The same mix (e.g. wanted again while being handed back).
                stream.want_program(Source::Mix);
                return;
            }
            match running.remove(program) {
                // A new plan: the old child goes, its slot is reused.
                Some(old) => old.stop.cancel(),
                None => {
                    if !self.media.take_transcodes(1) {
                        tracing::warn!(stream = %program, max = self.media.cfg.max_transcodes, "no co-host mix for this stream: [media] max_transcodes reached");
                        return;
                    }
                }
            }
            let stop = self.shutdown.child_token();
            running.insert(program.to_string(), Running { plan: plan.clone(), stop: stop.clone() });
            stop
        };
        match self.media.registry.start_tap(program) {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(stream = %program, error = %e, "no co-host mix: the publisher's feed cannot be copied");
                self.stop_child(program);
                return;
            }
        }
        stream.restart_mix();
        stream.want_program(Source::Mix);
        let me = self.clone();
        let program = program.to_string();
        self.tasks.spawn(async move { me.run(&program, plan, stop).await });
    }

    fn stop_child(&self, program: &str) {
        if let Some(r) = self.running.lock().remove(program) {
            r.stop.cancel();
            self.media.give_back_transcodes(1);
        }
    }

    fn program_down(&self, program: &str) {
        // The tap ended with the publisher; the plan stays for a re-publish.
        self.stop_child(program);
    }

    /// Gives `program`'s viewers the publisher's feed again: the child stays until the
    /// switch happened (the publisher's next keyframe) or a few seconds passed.
    fn hand_back(self: &Arc<Self>, program: &str) {
        let Some(stream) = self.media.registry.get(program) else {
            self.stop_child(program);
            return;
        };
        stream.want_program(Source::Anchor);
        let me = self.clone();
        let program = program.to_string();
        self.tasks.spawn(async move {
            let deadline = tokio::time::Instant::now() + HANDBACK_WAIT;
            while stream.program() != Source::Anchor && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // Unless a new plan came meanwhile.
            if me.plans.lock().contains_key(&program) {
                return;
            }
            me.stop_child(&program);
            stream.stop_tap();
            tracing::info!(stream = %program, on = ?stream.program(), "co-host mix ended; the publisher's feed is the program again");
        });
    }

    /// One plan's child, restarted a few times with backoff if it dies, and the
    /// forwarder of its output into the program.
    async fn run(&self, program: &str, plan: MixPlan, stop: CancellationToken) {
        let out = mix_stream(program);
        let raw = raw_stream(program);
        let guests: Vec<String> = plan.guests.iter().take(MAX_GUESTS).cloned().collect();
        let mut restarts = 0;
        loop {
            let mut sources = vec![raw.clone()];
            sources.extend(guests.iter().cloned());
            let audio: Vec<bool> =
                sources.iter().map(|s| self.media.registry.get(s).is_some_and(|s| s.has_audio())).collect();
            let size = self
                .media
                .registry
                .get(program)
                .map(|s| s.stats(onair_shell::now_ms()))
                .and_then(|st| Some((st.width?, st.height?)))
                .filter(|(w, h)| *w >= 16 && *h >= 16)
                .unwrap_or(DEFAULT_SIZE);
            let inputs: Vec<String> = sources.iter().map(|s| self.media.loopback_play(s)).collect();
            let args = mixer_args(&inputs, &audio, plan.layout, size, &self.media.loopback_push(&out));
            let started = tokio::time::Instant::now();
            tracing::info!(stream = %program, ?guests, layout = plan.layout.as_str(), ?size, "co-host mix starting");
            let forward = tokio::spawn(forward(self.media.clone(), program.to_string(), out.clone(), stop.clone()));
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
            let done = run_ffmpeg(&self.ffmpeg, &args, &stop).await;
            forward.abort();
            if let Some(t) = ask {
                t.abort();
            }
            let (status, err) = match done {
                Ok(Some(done)) => done,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(stream = %program, error = %e, "co-host mix: cannot start ffmpeg");
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
                tracing::error!(stream = %program, ?status, stderr = %err, "co-host mix failed {MAX_RESTARTS} restarts; viewers get the publisher's feed");
                break;
            }
            let backoff = Duration::from_secs(1 << restarts);
            tracing::warn!(stream = %program, ?status, stderr = %err, restart = restarts, ?backoff, "co-host mix ffmpeg died; restarting");
            if let Some(s) = self.media.registry.get(program) {
                s.restart_mix();
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = stop.cancelled() => return,
            }
        }
        // Given up: back to the publisher's feed (the plan stays until the room
        // layer changes it).
        if let Some(s) = self.media.registry.get(program) {
            s.want_program(Source::Anchor);
        }
    }
}

/// Reads the mixer's output `out` (as an internal consumer, whenever it is published)
/// and offers every packet to `program`'s switch, until stopped (the caller aborts it
/// with its child) or the program ends. A previous child's `out` may still be ending
/// when this one starts: an ended subscription is simply taken again.
async fn forward(media: Arc<MediaService>, program: String, out: String, stop: CancellationToken) {
    loop {
        let mut sub = loop {
            if let Some(sub) = media.registry.subscribe(&out, Protocol::Internal) {
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
                Recv::Packet(p) => match media.registry.get(&program) {
                    Some(s) => s.feed_mix(&p),
                    None => return,
                },
                Recv::Skipped(n) => tracing::warn!(stream = %program, packets = n, "mix forwarder fell behind"),
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
            "rtmp://127.0.0.1:1935/live/r.mix?txSecret=x",
        );
        let inputs: Vec<&str> =
            a.iter().enumerate().filter(|(_, s)| *s == "-i").map(|(i, _)| a[i + 1].as_str()).collect();
        assert_eq!(inputs, ["rtmp://127.0.0.1:1935/live/r.raw", "rtmp://127.0.0.1:1935/live/r-cohost-g"]);
        let at = |flag: &str| a.iter().position(|s| s == flag).map(|i| a[i + 1].as_str());
        assert_eq!(
            at("-filter_complex"),
            Some(filter_graph(Layout::SideBySide, &[true, false], 640, 360, FPS).as_str())
        );
        let maps: Vec<&str> =
            a.iter().enumerate().filter(|(_, s)| *s == "-map").map(|(i, _)| a[i + 1].as_str()).collect();
        assert_eq!(maps, ["[vout]", "[aout]"]);
        assert_eq!(a.last().map(String::as_str), Some("rtmp://127.0.0.1:1935/live/r.mix?txSecret=x"));
        let silent = mixer_args(&["a".into(), "b".into()], &[false, false], Layout::Grid, (640, 360), "d");
        assert!(!silent.iter().any(|s| s == "[aout]"), "no audio map without audio");
    }
}
