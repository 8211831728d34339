//! Relays (restreaming): each published stream can be forwarded, unchanged, to a list
//! of external RTMP(S) destinations (a platform's ingest, a CDN, another OnAir) for as
//! long as it is live.
//!
//! One `ffmpeg -c copy` child per destination plays the stream from this server over
//! loopback RTMP and publishes it to the destination. Chosen over an in-process RTMP
//! client on purpose: ffmpeg's RTMP client already speaks to the big platforms'
//! ingests (their handshake and `releaseStream`/`FCPublish` quirks) and does RTMPS over
//! TLS, copying costs next to no CPU, and a destination that stalls or misbehaves can
//! only ever block its own child — never the source's task, its viewers or another
//! destination (each child is its own process with its own socket). The price is one
//! small process per destination, bounded by `[media] max_relays`.
//!
//! Destinations are stored in `{data_dir}/relays.json`, owner-only (0600) like
//! `push.key`, since their stream keys are secrets; every answer and log line shows the
//! key masked ([`onair_media::relay::Destination::masked`]) and ffmpeg's own messages
//! are redacted before they are kept. The retry schedule and the state machine are the
//! pure [`onair_media::relay`].
//!
//! RTMPS destinations are verified like every other TLS peer of OnAir: ffmpeg's TLS
//! layer gets `-tls_verify 1` and a CA bundle — the system's, plus the operator's
//! `[tls] ca_file` when set (ffmpeg reads a single file, so the two are joined into
//! `{data_dir}/relay-ca.pem` at start). A refused certificate ends the attempt; its
//! reason is the destination's `lastError`. There is no per-destination opt-out on
//! purpose: the stream key travels inside that TLS session, and an ingest with a
//! private or self-signed certificate is trusted by adding it to `[tls] ca_file`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use onair_media::relay::{
    AfterExit, BadDestination, Destination, RelayState, RetryPolicy, explain_failure, progress_bytes, redact,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::MediaService;
use crate::registry::RegistryEvent;
use onair_shell::now_ms;

/// Most destinations of one stream.
pub const MAX_PER_STREAM: usize = 8;

/// Why a relay change was refused.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The stream name is not a valid one.
    #[error("invalid stream name")]
    BadStream,
    /// The destination URL is not usable.
    #[error(transparent)]
    BadDestination(#[from] BadDestination),
    /// The stream already has [`MAX_PER_STREAM`] destinations.
    #[error("a stream has at most {MAX_PER_STREAM} relay destinations")]
    TooMany,
    /// This destination is already in the stream's list.
    #[error("this destination is already relayed for the stream")]
    Duplicate,
    /// No destination with this id.
    #[error("no such relay destination")]
    NotFound,
    /// The list could not be written to disk.
    #[error("relay list not stored: {0}")]
    Storage(String),
    /// Relays need ffmpeg and the RTMP listener.
    #[error("relays are off: {0}")]
    Off(String),
}

/// One stored destination (the file's row).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    id: String,
    stream: String,
    /// The full URL with its key (the file is owner-only).
    url: String,
    created_ms: u64,
}

struct Entry {
    stored: Stored,
    dest: Destination,
    state: Arc<Mutex<RelayState>>,
    /// Stops the running child (None when idle).
    stop: Option<CancellationToken>,
}

/// Every stream's relay destinations and their children.
pub struct Relays {
    media: Arc<MediaService>,
    ffmpeg: String,
    path: PathBuf,
    /// Why relays cannot run (no ffmpeg, no RTMP listener); destinations can still be
    /// listed and edited.
    off: Option<String>,
    entries: Mutex<Vec<Entry>>,
    /// The CA bundle RTMPS destinations are verified with (None: ffmpeg's TLS
    /// library falls back to the system's trust store).
    ca_bundle: Option<PathBuf>,
    policy: RetryPolicy,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Relays {
    /// Loads the stored destinations and follows the registry: a stream's relays start
    /// when it is published and stop when it ends. `ca_file` is the operator's extra
    /// CA (`[tls] ca_file`), trusted for RTMPS destinations besides the system's.
    pub async fn start(
        media: Arc<MediaService>,
        data_dir: &Path,
        ca_file: Option<&Path>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Arc<Relays> {
        let ffmpeg = media.cfg.hls.ffmpeg.clone();
        let off = if media.rtmp_addr.is_none() {
            Some("they need the RTMP listener ([rtmp] listen)".to_string())
        } else if !crate::hls::ffmpeg_available(&ffmpeg).await {
            Some(format!("ffmpeg not found at {ffmpeg:?} (install ffmpeg or set [media] ffmpeg)"))
        } else {
            None
        };
        let path = data_dir.join("relays.json");
        let ca_bundle = relay_ca_bundle(data_dir, ca_file);
        let stored: Vec<Stored> = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::error!(path = %path.display(), error = %e, "relays.json unreadable; starting with no relays");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        let policy = RetryPolicy {
            max_attempts: media.cfg.relay_max_attempts.max(1),
            backoff: onair_media::relay::Backoff {
                base_ms: media.cfg.relay_backoff_ms.max(100),
                max_ms: media.cfg.relay_backoff_max_ms.max(media.cfg.relay_backoff_ms.max(100)),
            },
            ..RetryPolicy::default()
        };
        let entries = stored
            .into_iter()
            .filter_map(|s| {
                let dest = Destination::parse(&s.url, None).ok()?;
                Some(Entry { stored: s, dest, state: Arc::new(Mutex::new(RelayState::new(policy))), stop: None })
            })
            .collect::<Vec<_>>();
        if let Some(why) = &off
            && !entries.is_empty()
        {
            tracing::warn!("relays off: {why}");
        }
        let me = Arc::new(Relays {
            media: media.clone(),
            ffmpeg,
            path,
            off,
            entries: Mutex::new(entries),
            ca_bundle,
            policy,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
        });
        let r = me.clone();
        let mut events = media.registry.watch();
        tasks.spawn(async move {
            for s in r.media.registry.list() {
                r.source_up(&s.name);
            }
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            loop {
                let ev = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => { r.export_metrics(); continue; }
                    ev = events.recv() => ev,
                };
                match ev {
                    Ok(RegistryEvent::Published(name)) => r.source_up(&name),
                    Ok(RegistryEvent::Unpublished(name)) => r.source_down(&name),
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let live: Vec<String> = r.media.registry.list().iter().map(|s| s.name.clone()).collect();
                        let streams: Vec<String> = r.entries.lock().iter().map(|e| e.stored.stream.clone()).collect();
                        for s in streams {
                            if live.contains(&s) { r.source_up(&s) } else { r.source_down(&s) }
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
            for e in r.entries.lock().iter_mut() {
                if let Some(t) = e.stop.take() {
                    t.cancel();
                }
            }
        });
        me
    }

    /// The destinations of `stream` with their state (keys masked).
    pub fn list(&self, stream: &str) -> Vec<Value> {
        let now = now_ms();
        self.entries.lock().iter().filter(|e| e.stored.stream == stream).map(|e| view(e, now)).collect()
    }

    /// Adds a destination to `stream` (started at once when the stream is live).
    pub fn add(self: &Arc<Self>, stream: &str, url: &str, key: Option<&str>) -> Result<Value, RelayError> {
        if !crate::valid_stream_name(stream) {
            return Err(RelayError::BadStream);
        }
        if let Some(why) = &self.off {
            return Err(RelayError::Off(why.clone()));
        }
        let dest = Destination::parse(url, key)?;
        let view = {
            let mut entries = self.entries.lock();
            let mine: Vec<&Entry> = entries.iter().filter(|e| e.stored.stream == stream).collect();
            if mine.len() >= MAX_PER_STREAM {
                return Err(RelayError::TooMany);
            }
            if mine.iter().any(|e| e.dest == dest) {
                return Err(RelayError::Duplicate);
            }
            let stored = Stored {
                id: onair_shell::random_hex(6),
                stream: stream.to_string(),
                url: dest.url(),
                created_ms: now_ms(),
            };
            let entry = Entry { stored, dest, state: Arc::new(Mutex::new(RelayState::new(self.policy))), stop: None };
            let v = view(&entry, now_ms());
            entries.push(entry);
            self.save(&entries)?;
            v
        };
        tracing::info!(stream, relay = %view["id"].as_str().unwrap_or(""), to = %view["url"].as_str().unwrap_or(""), "relay destination added");
        if self.media.registry.get(stream).is_some() {
            self.source_up(stream);
        }
        Ok(view)
    }

    /// Removes a destination (its child, if any, is stopped).
    pub fn remove(&self, stream: &str, id: &str) -> Result<(), RelayError> {
        let mut entries = self.entries.lock();
        let i =
            entries.iter().position(|e| e.stored.stream == stream && e.stored.id == id).ok_or(RelayError::NotFound)?;
        let mut e = entries.remove(i);
        if let Some(t) = e.stop.take() {
            t.cancel();
        }
        self.save(&entries)?;
        tracing::info!(stream, relay = id, to = %e.dest.masked(), "relay destination removed");
        Ok(())
    }

    fn save(&self, entries: &[Entry]) -> Result<(), RelayError> {
        let rows: Vec<&Stored> = entries.iter().map(|e| &e.stored).collect();
        let text = serde_json::to_string_pretty(&rows).map_err(|e| RelayError::Storage(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        crate::write_owner_only(&tmp, &text)
            .and_then(|()| std::fs::rename(&tmp, &self.path))
            .map_err(|e| RelayError::Storage(format!("{}: {e}", self.path.display())))
    }

    fn source_up(self: &Arc<Self>, stream: &str) {
        if self.off.is_some() {
            return;
        }
        // An edge forwards nothing: the origin relays its own streams.
        if self.media.registry.get(stream).is_none_or(|s| s.is_relayed()) {
            return;
        }
        let mut entries = self.entries.lock();
        let running = entries.iter().filter(|e| e.stop.is_some()).count();
        let mut free = self.media.cfg.max_relays.saturating_sub(running);
        for e in entries.iter_mut().filter(|e| e.stored.stream == stream && e.stop.is_none()) {
            if free == 0 {
                let mut st = e.state.lock();
                st.started(now_ms());
                st.exited(now_ms(), "[media] max_relays reached", 0.5);
                tracing::warn!(stream, relay = %e.stored.id, max = self.media.cfg.max_relays, "relay not started: [media] max_relays reached");
                continue;
            }
            free -= 1;
            let token = self.shutdown.child_token();
            e.stop = Some(token.clone());
            let me = self.clone();
            let (id, dest, state) = (e.stored.id.clone(), e.dest.clone(), e.state.clone());
            let stream = stream.to_string();
            self.tasks.spawn(async move { me.run(&stream, &id, &dest, &state, token).await });
        }
    }

    fn source_down(&self, stream: &str) {
        for e in self.entries.lock().iter_mut().filter(|e| e.stored.stream == stream) {
            if let Some(t) = e.stop.take() {
                t.cancel();
            }
            e.state.lock().source_gone();
        }
    }

    /// One destination for the life of its source: a child per attempt, retried with
    /// backoff until the policy gives up.
    async fn run(
        &self,
        stream: &str,
        id: &str,
        dest: &Destination,
        state: &Mutex<RelayState>,
        stop: CancellationToken,
    ) {
        if self.media.rtmp_addr.is_none() {
            return;
        }
        let masked = dest.masked();
        loop {
            // Fresh signatures every attempt (they are checked only at connect).
            let src = self.media.loopback_play(stream);
            let ca = if dest.tls { Some(self.ca_bundle.as_deref()) } else { None };
            let args = relay_args(&src, &dest.url(), ca);
            state.lock().started(now_ms());
            // stdout carries `-progress` lines (bytes relayed).
            let child = crate::spawn_ffmpeg(&self.ffmpeg, &args, true);
            let mut child = match child {
                Ok(c) => c,
                Err(e) => {
                    let mut st = state.lock();
                    st.exited(now_ms(), &format!("cannot start ffmpeg: {e}"), 0.5);
                    st.source_gone();
                    return;
                }
            };
            tracing::info!(stream, relay = id, to = %masked, "relay connecting");
            let stderr = child.stderr.take();
            let tail = tokio::spawn(crate::stderr_tail(stderr));
            let stdout = child.stdout.take();
            let status = {
                let progress = async {
                    let Some(out) = stdout else { return std::future::pending().await };
                    let mut lines = BufReader::new(out).lines();
                    let mut announced = false;
                    while let Ok(Some(line)) = lines.next_line().await {
                        if let Some(n) = progress_bytes(&line) {
                            let mut st = state.lock();
                            st.progress(now_ms(), n);
                            if !announced && st.phase == onair_media::relay::Phase::Live {
                                announced = true;
                                tracing::info!(stream, relay = id, to = %masked, "relay live");
                            }
                        }
                    }
                    std::future::pending::<()>().await
                };
                tokio::select! {
                    s = child.wait() => s.ok(),
                    _ = progress => None,
                    _ = stop.cancelled() => {
                        let _ = child.kill().await;
                        tail.abort();
                        tracing::info!(stream, relay = id, "relay stopped");
                        return;
                    }
                }
            };
            let err = tail.await.unwrap_or_default();
            if stop.is_cancelled() || self.media.registry.get(stream).is_none() {
                return;
            }
            let why = match status {
                Some(s) if err.is_empty() => format!("ffmpeg exited ({s})"),
                _ => explain_failure(&err),
            };
            let why = redact(&redact(&why, &dest.key), &dest.url());
            let after = state.lock().exited(now_ms(), &why, jitter());
            match after {
                AfterExit::RetryIn(ms) => {
                    tracing::warn!(stream, relay = id, to = %masked, error = %why, retry_in_ms = ms, "relay cut; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(ms)) => {}
                        _ = stop.cancelled() => return,
                    }
                }
                AfterExit::Stop => {
                    tracing::error!(stream, relay = id, to = %masked, error = %why, "relay failed; giving up until the stream is published again");
                    return;
                }
            }
        }
    }

    fn export_metrics(&self) {
        let now = now_ms();
        for e in self.entries.lock().iter() {
            let st = e.state.lock();
            let labels = [("stream", e.stored.stream.clone()), ("relay", e.stored.id.clone())];
            metrics::gauge!("onair_relay_live", &labels).set(if st.phase == onair_media::relay::Phase::Live {
                1.0
            } else {
                0.0
            });
            metrics::gauge!("onair_relay_bytes", &labels).set(st.bytes_total as f64);
            metrics::gauge!("onair_relay_uptime_seconds", &labels).set(st.uptime_secs(now) as f64);
            metrics::gauge!("onair_relay_failures", &labels).set(f64::from(st.failures));
        }
    }
}

fn view(e: &Entry, now: u64) -> Value {
    let st = e.state.lock();
    let mut v = serde_json::to_value(&*st).unwrap_or_default();
    v["id"] = json!(e.stored.id);
    v["stream"] = json!(e.stored.stream);
    v["url"] = json!(e.dest.masked());
    v["tls"] = json!(e.dest.tls);
    v["uptimeSecs"] = json!(st.uptime_secs(now));
    v["createdMs"] = json!(e.stored.created_ms);
    v
}

/// The system's CA bundle: `SSL_CERT_FILE` when set (as OpenSSL and the HTTP client
/// honour it), else the first of the distributions' usual paths that exists.
fn system_ca_bundle() -> Option<PathBuf> {
    let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from).filter(|p| p.is_file());
    env.or_else(|| {
        [
            "/etc/ssl/certs/ca-certificates.crt",
            "/etc/pki/tls/certs/ca-bundle.crt",
            "/etc/ssl/ca-bundle.pem",
            "/etc/ssl/cert.pem",
        ]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    })
}

/// The one CA file ffmpeg verifies RTMPS destinations with: the system bundle alone,
/// or — with an extra CA — both joined into `{data_dir}/relay-ca.pem` (0644: public
/// certificates only). A bundle that cannot be written is logged and the system's is
/// used, so those destinations fail with a certificate reason rather than go unchecked.
fn relay_ca_bundle(data_dir: &Path, extra: Option<&Path>) -> Option<PathBuf> {
    let system = system_ca_bundle();
    let Some(extra) = extra else { return system };
    let joined = (|| -> std::io::Result<PathBuf> {
        let mut text = match &system {
            Some(p) => std::fs::read_to_string(p)?,
            None => String::new(),
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&std::fs::read_to_string(extra)?);
        let path = data_dir.join("relay-ca.pem");
        let tmp = data_dir.join("relay-ca.pem.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    })();
    match joined {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::error!(ca_file = %extra.display(), error = %e, "relay CA bundle not written; RTMPS relays trust the system CAs only");
            system
        }
    }
}

fn jitter() -> f64 {
    (onair_shell::seed() % 1000) as f64 / 1000.0
}

/// The ffmpeg arguments that copy `src` to `dst` unchanged, reporting progress
/// (`total_size=` lines) on stdout once a second. `-rw_timeout` on both sides: a
/// destination that stops reading is cut after 10 s (and retried), never waited on.
/// `tls` is `Some` for an RTMPS destination: its certificate is verified, against
/// the given CA bundle when there is one (these are options of ffmpeg's `tls`
/// protocol; given before the output URL they reach it through `rtmps`).
pub fn relay_args(src: &str, dst: &str, tls: Option<Option<&Path>>) -> Vec<String> {
    let mut args: Vec<String> = [
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-nostats",
        "-rw_timeout",
        "10000000",
        "-i",
        src,
        "-map",
        "0",
        "-c",
        "copy",
        "-progress",
        "pipe:1",
        "-stats_period",
        "1",
        "-rw_timeout",
        "10000000",
        "-f",
        "flv",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if let Some(ca) = tls {
        args.extend(["-tls_verify".to_string(), "1".to_string()]);
        if let Some(ca) = ca {
            args.extend(["-ca_file".to_string(), ca.display().to_string()]);
        }
    }
    args.push(dst.to_string());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_copy_without_reencoding() {
        let a = relay_args("rtmp://127.0.0.1:1935/live/cam", "rtmps://h/app/key", Some(Some(Path::new("/d/ca.pem"))));
        let at = |flag: &str| a.iter().position(|s| s == flag).map(|i| a[i + 1].as_str());
        assert_eq!(at("-i"), Some("rtmp://127.0.0.1:1935/live/cam"));
        assert_eq!(at("-c"), Some("copy"));
        assert_eq!(at("-progress"), Some("pipe:1"));
        assert_eq!(at("-f"), Some("flv"));
        assert!(!a.iter().any(|s| s == "libx264"));
        assert_eq!(a.last().map(String::as_str), Some("rtmps://h/app/key"));
        assert_eq!(at("-tls_verify"), Some("1"));
        assert_eq!(at("-ca_file"), Some("/d/ca.pem"));
        let plain = relay_args("rtmp://127.0.0.1:1935/live/cam", "rtmp://h/app/key", None);
        assert!(!plain.iter().any(|s| s == "-tls_verify" || s == "-ca_file"), "no TLS options for rtmp://");
        let system = relay_args("rtmp://127.0.0.1:1935/live/cam", "rtmps://h/app/key", Some(None));
        assert!(system.iter().any(|s| s == "-tls_verify") && !system.iter().any(|s| s == "-ca_file"));
    }
}
