//! Relays (restreaming) without I/O: what a relay destination is (an `rtmp://` or
//! `rtmps://` URL whose last path segment is the stream key), how it is shown without
//! its secret, the retry schedule, and the state machine the shell's relay task
//! drives with what it saw (child started, bytes written, child exited, source gone).
//!
//! The shell owns the ffmpeg child and the timers; everything it decides from — when
//! to retry, when to give up, what to show — is here, fed with the time it read.

use serde::Serialize;

/// Most characters of a destination URL (stream keys are short; this bounds what is
/// stored and logged).
pub const MAX_URL_LEN: usize = 2048;

/// Why a destination URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadDestination {
    /// Not `rtmp://` or `rtmps://`.
    #[error("destination must be an rtmp:// or rtmps:// URL")]
    Scheme,
    /// No host after the scheme.
    #[error("destination URL has no host")]
    NoHost,
    /// The port is not a number in 1..=65535.
    #[error("destination URL has a bad port")]
    Port,
    /// No `/{app}/{key}` path.
    #[error("destination URL needs an application and a stream key: rtmp://host/app/KEY")]
    NoKey,
    /// Longer than [`MAX_URL_LEN`] or holds whitespace/control characters.
    #[error("destination URL is too long or contains spaces or control characters")]
    Garbage,
}

/// A parsed relay destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// `rtmp://host[:port]/app` (no key): safe to show.
    pub base: String,
    /// The stream key (last path segment plus any query): a secret.
    pub key: String,
    /// TLS (`rtmps`).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (1935 for rtmp, 443 for rtmps unless given).
    pub port: u16,
}

impl Destination {
    /// Parses `url`, or `url` + `/` + `key` when the key is given apart (the way
    /// platforms show "server URL" and "stream key" in two fields).
    pub fn parse(url: &str, key: Option<&str>) -> Result<Destination, BadDestination> {
        let url = url.trim();
        let full = match key.map(str::trim).filter(|k| !k.is_empty()) {
            Some(k) => format!("{}/{}", url.trim_end_matches('/'), k.trim_start_matches('/')),
            None => url.to_string(),
        };
        if full.len() > MAX_URL_LEN || full.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(BadDestination::Garbage);
        }
        let lower = full.to_ascii_lowercase();
        let (tls, rest) = if lower.starts_with("rtmps://") {
            (true, &full[8..])
        } else if lower.starts_with("rtmp://") {
            (false, &full[7..])
        } else {
            return Err(BadDestination::Scheme);
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        // No credentials in the authority: they would be a second secret to mask.
        if authority.contains('@') {
            return Err(BadDestination::Garbage);
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port: u16 = p.parse().map_err(|_| BadDestination::Port)?;
                if port == 0 {
                    return Err(BadDestination::Port);
                }
                (h, port)
            }
            _ => (authority, if tls { 443 } else { 1935 }),
        };
        if host.is_empty() || host == "[]" {
            return Err(BadDestination::NoHost);
        }
        let (app, key) = path.rsplit_once('/').ok_or(BadDestination::NoKey)?;
        if app.is_empty() || key.is_empty() || key.starts_with('?') {
            return Err(BadDestination::NoKey);
        }
        let scheme = if tls { "rtmps" } else { "rtmp" };
        Ok(Destination {
            base: format!("{scheme}://{authority}/{app}"),
            key: key.to_string(),
            tls,
            host: host.to_string(),
            port,
        })
    }

    /// The URL to connect to (holds the key: never log or answer it).
    pub fn url(&self) -> String {
        format!("{}/{}", self.base, self.key)
    }

    /// The URL with the key masked: what the API, the studio and logs show.
    pub fn masked(&self) -> String {
        format!("{}/{}", self.base, mask_key(&self.key))
    }
}

/// A stream key shown without its secret: its last 4 characters when it is long
/// enough that those say little (≥ 16), else nothing.
pub fn mask_key(key: &str) -> String {
    let n = key.chars().count();
    if n >= 16 {
        let tail: String = key.chars().skip(n - 4).collect();
        format!("****{tail}")
    } else {
        "****".to_string()
    }
}

/// `text` (an ffmpeg error, say) with every occurrence of `secret` masked, so a key
/// echoed by a child never reaches a log line or an API answer.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_string();
    }
    text.replace(secret, &mask_key(secret))
}

/// What a failed attempt is shown with: ffmpeg's stderr tail, led by a plain reason
/// when the destination's TLS certificate was refused (ffmpeg's own lines name the
/// TLS library's finding but not what to do about it).
pub fn explain_failure(stderr: &str) -> String {
    const CERT_SIGNS: [&str; 5] = [
        "peer certificate failed verification",
        "does not match hostname",
        "certificate verify failed",
        "unable to verify peer certificate",
        "certificate is not trusted",
    ];
    let lower = stderr.to_ascii_lowercase();
    if CERT_SIGNS.iter().any(|s| lower.contains(s)) {
        format!(
            "TLS certificate of the destination not trusted (not signed by a system CA or [tls] ca_file, \
             or not for this host): {stderr}"
        )
    } else {
        stderr.to_string()
    }
}

/// Doubling retry delays with a cap and a jitter factor the caller draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay, ms.
    pub base_ms: u64,
    /// The longest delay, ms.
    pub max_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base_ms: 1_000, max_ms: 30_000 }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1 = the first retry): `base · 2^(n-1)`
    /// capped at `max`, spread by `jitter` ∈ [0, 1) to ±20 % so many relays cut by
    /// one outage do not reconnect in step.
    pub fn delay_ms(&self, attempt: u32, jitter: f64) -> u64 {
        let exp = attempt.saturating_sub(1).min(30);
        let d = self.base_ms.saturating_mul(1u64 << exp).min(self.max_ms);
        let spread = 0.8 + 0.4 * jitter.clamp(0.0, 1.0);
        ((d as f64) * spread) as u64
    }
}

/// Where a relay destination is (the `state` shown in the API, studio and metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum Phase {
    /// The source is not live: nothing to forward.
    Idle,
    /// The child is connecting (no bytes out yet).
    Connecting,
    /// Bytes are flowing to the destination.
    Live,
    /// The last attempt failed; the next starts at `retryAtMs`.
    Retrying {
        /// Unix ms of the next attempt.
        #[serde(rename = "retryAtMs")]
        retry_at_ms: u64,
    },
    /// Given up until the source publishes again or the destination is re-added.
    Failed,
}

impl Phase {
    /// The state's name (metrics label, logs).
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Connecting => "connecting",
            Phase::Live => "live",
            Phase::Retrying { .. } => "retrying",
            Phase::Failed => "failed",
        }
    }
}

/// What the shell does after a child exited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterExit {
    /// Start again after this many ms.
    RetryIn(u64),
    /// Stop: [`Phase::Failed`] (or [`Phase::Idle`] when the source is gone).
    Stop,
}

/// The retry policy of one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The delays.
    pub backoff: Backoff,
    /// Failed attempts in a row after which the destination is [`Phase::Failed`].
    pub max_attempts: u32,
    /// An attempt that stayed live this long (ms) resets the count: a relay cut after
    /// an hour starts a fresh series, not the tail of an old one.
    pub stable_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { backoff: Backoff::default(), max_attempts: 20, stable_ms: 30_000 }
    }
}

/// One destination's relay state, driven by the shell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RelayState {
    /// Current phase.
    #[serde(flatten)]
    pub phase: Phase,
    /// Failed attempts in a row.
    pub failures: u32,
    /// Bytes sent to the destination in the current attempt.
    pub bytes: u64,
    /// Bytes sent over every attempt.
    pub bytes_total: u64,
    /// Unix ms the current attempt went live (0 when not live).
    pub live_since_ms: u64,
    /// Unix ms the current attempt started.
    pub attempt_started_ms: u64,
    /// Why the last attempt ended (secrets already redacted), empty if none did.
    pub last_error: String,
    #[serde(skip)]
    policy: RetryPolicy,
}

impl RelayState {
    /// A destination whose source is not live yet.
    pub fn new(policy: RetryPolicy) -> RelayState {
        RelayState {
            phase: Phase::Idle,
            failures: 0,
            bytes: 0,
            bytes_total: 0,
            live_since_ms: 0,
            attempt_started_ms: 0,
            last_error: String::new(),
            policy,
        }
    }

    /// A child was started at `now`.
    pub fn started(&mut self, now: u64) {
        self.phase = Phase::Connecting;
        self.bytes = 0;
        self.live_since_ms = 0;
        self.attempt_started_ms = now;
    }

    /// The child reports `total` bytes written so far at `now`: the first bytes make
    /// it live.
    pub fn progress(&mut self, now: u64, total: u64) {
        if total > self.bytes {
            self.bytes_total += total - self.bytes;
            self.bytes = total;
        }
        if self.phase == Phase::Connecting && self.bytes > 0 {
            self.phase = Phase::Live;
            self.live_since_ms = now;
        }
    }

    /// The child exited at `now` for `reason` while the source is still live: retry
    /// after the backoff, or give up after [`RetryPolicy::max_attempts`] in a row.
    /// `jitter` ∈ [0, 1) is drawn by the caller.
    pub fn exited(&mut self, now: u64, reason: &str, jitter: f64) -> AfterExit {
        let was_stable = self.live_since_ms > 0 && now.saturating_sub(self.live_since_ms) >= self.policy.stable_ms;
        if was_stable {
            self.failures = 0;
        }
        self.failures += 1;
        self.last_error = reason.chars().take(500).collect();
        self.live_since_ms = 0;
        if self.failures >= self.policy.max_attempts {
            self.phase = Phase::Failed;
            return AfterExit::Stop;
        }
        let delay = self.policy.backoff.delay_ms(self.failures, jitter);
        self.phase = Phase::Retrying { retry_at_ms: now + delay };
        AfterExit::RetryIn(delay)
    }

    /// The source ended: nothing to forward until it is back (a fresh series then).
    pub fn source_gone(&mut self) {
        self.phase = Phase::Idle;
        self.failures = 0;
        self.live_since_ms = 0;
        self.bytes = 0;
    }

    /// Seconds the current attempt has been live at `now` (0 when not live).
    pub fn uptime_secs(&self, now: u64) -> u64 {
        if self.phase == Phase::Live { now.saturating_sub(self.live_since_ms) / 1000 } else { 0 }
    }
}

/// One `key=value` line of ffmpeg's `-progress` output: the bytes written so far
/// (`total_size`), if that is what the line says.
pub fn progress_bytes(line: &str) -> Option<u64> {
    let v = line.trim().strip_prefix("total_size=")?;
    v.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_masks_destinations() {
        let d = Destination::parse("rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop", None).unwrap();
        assert_eq!(d.base, "rtmp://a.rtmp.youtube.com/live2");
        assert_eq!(d.key, "abcd-efgh-ijkl-mnop");
        assert_eq!((d.tls, d.port, d.host.as_str()), (false, 1935, "a.rtmp.youtube.com"));
        assert_eq!(d.masked(), "rtmp://a.rtmp.youtube.com/live2/****mnop");
        assert!(!d.masked().contains("efgh"));
        assert_eq!(d.url(), "rtmp://a.rtmp.youtube.com/live2/abcd-efgh-ijkl-mnop");

        let s = Destination::parse("rtmps://live.example.com:8443/app/", Some("sk_123")).unwrap();
        assert_eq!((s.tls, s.port, s.key.as_str()), (true, 8443, "sk_123"));
        assert_eq!(s.masked(), "rtmps://live.example.com:8443/app/****", "short keys show nothing");
        assert_eq!(Destination::parse("RTMPS://h/app/k", None).unwrap().port, 443);
        // A signed OnAir push URL: the query is part of the secret.
        let q = Destination::parse("rtmp://127.0.0.1:1935/live/cam?txSecret=abc&txTime=FF", None).unwrap();
        assert_eq!(q.key, "cam?txSecret=abc&txTime=FF");
        assert!(!q.masked().contains("abc"));

        use BadDestination::*;
        for (url, err) in [
            ("http://h/app/k", Scheme),
            ("rtmp:///app/k", NoHost),
            ("rtmp://h:0/app/k", Port),
            ("rtmp://h:99999/app/k", Port),
            ("rtmp://h/app", NoKey),
            ("rtmp://h/app/", NoKey),
            ("rtmp://h", NoKey),
            ("rtmp://h/app/k ey", Garbage),
            ("rtmp://user:pw@h/app/k", Garbage),
        ] {
            assert_eq!(Destination::parse(url, None), Err(err), "{url}");
        }
        assert_eq!(Destination::parse(&format!("rtmp://h/a/{}", "k".repeat(MAX_URL_LEN)), None), Err(Garbage));
    }

    #[test]
    fn redacts_secrets_in_text() {
        let msg = "rtmp://h/app/supersecretkey1234: Connection refused";
        assert_eq!(redact(msg, "supersecretkey1234"), "rtmp://h/app/****1234: Connection refused");
        assert_eq!(redact("x", ""), "x");
    }

    #[test]
    fn backoff_doubles_caps_and_spreads() {
        let b = Backoff { base_ms: 1_000, max_ms: 30_000 };
        let mid: Vec<u64> = (1..=7).map(|n| b.delay_ms(n, 0.5)).collect();
        assert_eq!(mid, vec![1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]);
        assert_eq!(b.delay_ms(1, 0.0), 800);
        assert_eq!(b.delay_ms(1, 1.0), 1_200);
        assert_eq!(b.delay_ms(u32::MAX, 0.5), 30_000, "no overflow");
    }

    #[test]
    fn state_machine_connect_live_retry_fail() {
        let policy =
            RetryPolicy { backoff: Backoff { base_ms: 1_000, max_ms: 4_000 }, max_attempts: 3, stable_ms: 10_000 };
        let mut s = RelayState::new(policy);
        assert_eq!(s.phase, Phase::Idle);
        s.started(100);
        assert_eq!(s.phase, Phase::Connecting);
        s.progress(200, 0);
        assert_eq!(s.phase, Phase::Connecting, "no bytes yet");
        s.progress(1_100, 5_000);
        assert_eq!(s.phase, Phase::Live);
        assert_eq!(s.uptime_secs(3_100), 2);
        s.progress(2_000, 9_000);
        assert_eq!((s.bytes, s.bytes_total), (9_000, 9_000));

        // Cut after 2 s live: first failure.
        assert_eq!(s.exited(3_100, "Connection reset", 0.5), AfterExit::RetryIn(1_000));
        assert_eq!(s.phase, Phase::Retrying { retry_at_ms: 4_100 });
        assert_eq!(s.uptime_secs(3_500), 0);
        s.started(4_100);
        assert_eq!(s.bytes, 0);
        assert_eq!(s.exited(4_200, "refused", 0.5), AfterExit::RetryIn(2_000));
        s.started(6_200);
        assert_eq!(s.exited(6_300, "refused", 0.5), AfterExit::Stop);
        assert_eq!(s.phase, Phase::Failed);
        assert_eq!(s.last_error, "refused");
        assert_eq!(s.bytes_total, 9_000, "the total survives attempts");

        // The source coming back starts a fresh series.
        s.source_gone();
        assert_eq!((s.phase.clone(), s.failures), (Phase::Idle, 0));
    }

    #[test]
    fn a_long_live_attempt_resets_the_failure_count() {
        let policy =
            RetryPolicy { backoff: Backoff { base_ms: 1_000, max_ms: 60_000 }, max_attempts: 3, stable_ms: 10_000 };
        let mut s = RelayState::new(policy);
        s.started(0);
        assert_eq!(s.exited(10, "refused", 0.5), AfterExit::RetryIn(1_000));
        s.started(1_010);
        s.progress(1_020, 100);
        // Live for 20 s (past stable_ms): the next cut is failure 1 again.
        assert_eq!(s.exited(21_020, "reset", 0.5), AfterExit::RetryIn(1_000));
        assert_eq!(s.failures, 1);
    }

    #[test]
    fn state_serializes_for_the_api() {
        let mut s = RelayState::new(RetryPolicy::default());
        s.started(5);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "connecting");
        assert_eq!(v["bytesTotal"], 0);
        s.exited(10, "x", 0.0);
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["state"], "retrying");
        assert!(v["retryAtMs"].as_u64().unwrap() > 10);
    }

    #[test]
    fn certificate_failures_say_so_first() {
        let gnutls =
            "[tls @ 0x5] Peer certificate failed verification\n[rtmps @ 0x6] Cannot open connection tls://h:443";
        let e = explain_failure(gnutls);
        assert!(e.starts_with("TLS certificate of the destination not trusted"), "{e}");
        assert!(e.ends_with(gnutls), "ffmpeg's words are kept: {e}");
        assert!(explain_failure("[tls @ 0x5] The certificate's owner does not match hostname h").starts_with("TLS"));
        assert!(explain_failure("error:0A000086:SSL routines::certificate verify failed").starts_with("TLS"));
        assert_eq!(explain_failure("Connection refused"), "Connection refused");
    }

    #[test]
    fn progress_lines() {
        assert_eq!(progress_bytes("total_size=12345"), Some(12345));
        assert_eq!(progress_bytes("total_size=N/A"), None);
        assert_eq!(progress_bytes("out_time_ms=1"), None);
    }
}
