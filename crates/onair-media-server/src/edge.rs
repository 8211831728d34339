//! Media edges: with `[media] origin = "http://ORIGIN:PORT"` this node relays streams it
//! does not have from the origin server, on demand.
//!
//! Every protocol opens a stream through [`crate::MediaService::want`] (HTTP-FLV, RTMP
//! play, the HLS playlist, live fMP4 and `.json`): when the stream is not in the local
//! registry, [`Edge::pull`] starts **one** pull per stream — concurrent first viewers
//! wait on the same one — `GET {origin}/live/{name}.flv`, demuxes it with the sans-IO
//! [`onair_media::flv::FlvDemuxer`] and feeds the tags into the local registry through
//! an ordinary [`Publisher`]. So the GOP cache, HTTP-FLV, RTMP play, LL-HLS, live fMP4
//! and the stats work unchanged, and the origin serves one connection per stream per
//! edge however many viewers the edge has.
//!
//! * The first viewer waits at most [`FIRST_VIEWER_WAIT`] for the first tag; an origin
//!   that answers 404 (or cannot be reached) ends the wait at once.
//! * The pull ends when the stream has had no viewers (and no HLS request touched it)
//!   for `origin_idle_secs`, when the origin ends the stream or goes silent for
//!   `[rtmp] idle_timeout_secs`, or at shutdown. Local viewers then see the stream end
//!   (EOF); the next viewer starts a new pull.
//! * A relayed stream is not this node's: no publish/unpublish hooks (room state,
//!   stream callbacks), no recording, no snapshot callback, no renditions. Its stats
//!   say `origin`.
//! * Loops: the pull request carries `x-onair-relay` with the ids of the nodes it went
//!   through; a node that finds its own id there answers 508 instead of pulling again,
//!   and a chain longer than [`MAX_HOPS`] does not pull. An origin equal to this node's
//!   own listen address is refused at start ([`check_not_self`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use http_body_util::BodyExt;
use onair_media::flv::{self, FlvDemuxer};
use onair_media::frame::TrackKind;
use onair_shell::http::{HttpClient, RequestBody};
use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::registry::{Publisher, StreamRegistry};
use onair_shell::now_ms;

/// Request header naming the nodes a relay request went through (comma-separated ids).
pub const RELAY_HEADER: &str = "x-onair-relay";
/// Longest relay chain that may start another pull (edge of an edge of …).
pub const MAX_HOPS: usize = 4;
/// How long a first viewer waits for the origin's stream to start flowing.
pub const FIRST_VIEWER_WAIT: Duration = Duration::from_secs(5);

/// Where a pull is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PullState {
    /// Requesting the origin; no tag yet.
    Connecting,
    /// The stream is published locally.
    Live,
    /// Over (failed or finished); the entry is gone from the map.
    Ended,
}

/// One running pull.
struct Pull {
    state: watch::Sender<PullState>,
    /// Unix ms of the last request for the stream (HLS playlists and segments are
    /// stateless requests, not counted viewers: their touches keep the pull).
    touched_ms: AtomicU64,
}

impl Pull {
    fn touch(&self) {
        self.touched_ms.fetch_max(now_ms(), Ordering::Relaxed);
    }
}

/// The edge side of the media service (present only with `[media] origin`).
pub struct Edge {
    origin: String,
    idle_ms: u64,
    read_timeout: Duration,
    node: String,
    registry: Arc<StreamRegistry>,
    client: HttpClient,
    pulls: Mutex<HashMap<String, Arc<Pull>>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

/// The origin's base URL from `[media] origin`: `http://host[:port]` or
/// `https://host[:port]` (a trailing `/` is dropped).
pub fn parse_origin(origin: &str) -> anyhow::Result<(String, hyper::http::uri::Authority)> {
    let base = origin.trim().trim_end_matches('/');
    let uri: hyper::Uri = base.parse().with_context(|| format!("[media] origin {origin:?} is not a URL"))?;
    anyhow::ensure!(
        matches!(uri.scheme_str(), Some("http" | "https")),
        "[media] origin {origin:?} must be an http:// or https:// URL"
    );
    anyhow::ensure!(
        uri.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/"),
        "[media] origin {origin:?} must be just http(s)://host:port (no path or query)"
    );
    let authority = uri.authority().cloned().with_context(|| format!("[media] origin {origin:?} names no host"))?;
    Ok((base.to_string(), authority))
}

/// Refuses an origin that is this server's own HTTP listener (an edge pulling from
/// itself would wait on its own pull). Catches the same port on a loopback, unspecified
/// or identical address; other spellings of this host are caught at run time by
/// [`RELAY_HEADER`].
pub fn check_not_self(origin: &str, listen: SocketAddr) -> anyhow::Result<()> {
    let (_, authority) = parse_origin(origin)?;
    let default_port = if origin.trim().starts_with("https:") { 443 } else { 80 };
    let port = authority.port_u16().unwrap_or(default_port);
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    let same_host = host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified() || ip == listen.ip());
    anyhow::ensure!(
        !(port == listen.port() && same_host),
        "[media] origin {origin} is this server itself ([http] listen {listen}): an edge must pull from another node"
    );
    Ok(())
}

/// The play signature of a viewer's query (`txSecret`, `txTime`), forwarded to the
/// origin so an origin with `play_auth` accepts the pull; `""` when there is none.
fn forward_query(query: &str) -> String {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| {
            let k = p.split_once('=').map_or(*p, |(k, _)| k);
            matches!(k, "txSecret" | "txTime")
        })
        .collect();
    if kept.is_empty() { String::new() } else { format!("?{}", kept.join("&")) }
}

/// Whether a relay chain (the [`RELAY_HEADER`] value) already went through `node`.
pub fn chain_has(chain: &str, node: &str) -> bool {
    chain.split(',').any(|n| n.trim() == node)
}

impl Edge {
    /// The edge for `origin` (validated here; see [`parse_origin`]).
    pub fn new(
        origin: &str,
        idle_secs: u64,
        read_timeout: Duration,
        node: String,
        registry: Arc<StreamRegistry>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> anyhow::Result<Arc<Edge>> {
        let (origin, _) = parse_origin(origin)?;
        let client = HttpClient::new(FIRST_VIEWER_WAIT);
        Ok(Arc::new(Edge {
            origin,
            idle_ms: idle_secs.saturating_mul(1000),
            read_timeout,
            node,
            registry,
            client,
            pulls: Mutex::new(HashMap::new()),
            shutdown,
            tasks,
        }))
    }

    /// The origin's base URL.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Someone asked for `name` (an HLS playlist or segment): keeps its pull alive.
    pub fn touch(&self, name: &str) {
        if let Some(p) = self.pulls.lock().get(name) {
            p.touch();
        }
    }

    /// Makes `name` available here: starts (or joins) its pull and waits, bounded,
    /// until the stream flows. `query` is the viewer's (its play signature is
    /// forwarded), `via` the relay chain the request came through (empty for a
    /// viewer). True when the stream is published locally now.
    pub async fn pull(self: &Arc<Self>, name: &str, query: &str, via: &str) -> bool {
        if !crate::valid_stream_name(name) || self.shutdown.is_cancelled() {
            return false;
        }
        let hops = if via.is_empty() { 0 } else { via.split(',').count() };
        // Node ids are 12 hex digits: a longer chain is not one we sent (and is not
        // forwarded, so a client cannot make us send it a big header).
        if hops >= MAX_HOPS || via.len() > MAX_HOPS * 16 || chain_has(via, &self.node) {
            return false;
        }
        let mut rx = {
            let mut pulls = self.pulls.lock();
            match pulls.get(name) {
                Some(p) => {
                    p.touch();
                    p.state.subscribe()
                }
                None => {
                    let pull = Arc::new(Pull {
                        state: watch::channel(PullState::Connecting).0,
                        touched_ms: AtomicU64::new(now_ms()),
                    });
                    let rx = pull.state.subscribe();
                    pulls.insert(name.to_string(), pull.clone());
                    let chain = if via.is_empty() { self.node.clone() } else { format!("{via},{}", self.node) };
                    let me = self.clone();
                    let (name, query) = (name.to_string(), forward_query(query));
                    self.tasks.spawn(async move { me.run(name, query, chain, pull).await });
                    rx
                }
            }
        };
        let waited = tokio::time::timeout(FIRST_VIEWER_WAIT, rx.wait_for(|s| *s != PullState::Connecting)).await;
        matches!(waited, Ok(Ok(s)) if *s == PullState::Live)
    }

    async fn run(self: Arc<Self>, name: String, query: String, chain: String, pull: Arc<Pull>) {
        metrics::gauge!("onair_edge_pulls").increment(1.0);
        let mut publisher = None;
        let outcome = self.relay(&name, &query, &chain, &pull, &mut publisher).await;
        // Forget the pull before the stream ends, so a viewer arriving now starts a
        // new one instead of joining this one.
        {
            let mut pulls = self.pulls.lock();
            if pulls.get(&name).is_some_and(|p| Arc::ptr_eq(p, &pull)) {
                pulls.remove(&name);
            }
        }
        pull.state.send_replace(PullState::Ended);
        // Dropping the publisher ends the local stream: viewers drain and see EOF.
        let relayed = publisher.is_some();
        drop(publisher);
        metrics::gauge!("onair_edge_pulls").decrement(1.0);
        match outcome {
            Ok(why) => {
                metrics::counter!("onair_edge_pulls_total", "outcome" => "ended").increment(1);
                tracing::info!(stream = %name, origin = %self.origin, why, "edge pull ended");
            }
            Err(why) => {
                metrics::counter!("onair_edge_pulls_total", "outcome" => if relayed { "lost" } else { "failed" })
                    .increment(1);
                if relayed {
                    tracing::warn!(stream = %name, origin = %self.origin, %why, "edge pull lost");
                } else {
                    tracing::info!(stream = %name, origin = %self.origin, %why, "edge pull failed");
                }
            }
        }
    }

    /// The pull itself: `Ok(reason)` for a normal end, `Err` for a failure.
    async fn relay(
        &self,
        name: &str,
        query: &str,
        chain: &str,
        pull: &Pull,
        publisher: &mut Option<Publisher>,
    ) -> Result<&'static str, String> {
        let url = format!("{}/live/{name}.flv{query}", self.origin);
        let request = hyper::Request::get(&url)
            .header(hyper::header::USER_AGENT, concat!("onair-edge/", env!("CARGO_PKG_VERSION")))
            .header(RELAY_HEADER, chain)
            .body(RequestBody::default())
            .map_err(|e| format!("bad request URL: {e}"))?;
        let response = tokio::select! {
            r = tokio::time::timeout(FIRST_VIEWER_WAIT, self.client.send(request)) => r
                .map_err(|_| "origin did not answer in time".to_string())?
                .map_err(|e| format!("origin unreachable: {e}"))?,
            _ = self.shutdown.cancelled() => return Ok("shutting down"),
        };
        if response.status() != hyper::StatusCode::OK {
            return Err(format!("origin answered HTTP {}", response.status()));
        }
        let mut body = response.into_body();
        let mut demux = FlvDemuxer::new();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_data = tokio::time::Instant::now();
        let mut last_viewer_ms = now_ms();
        loop {
            tokio::select! {
                frame = body.frame() => {
                    let data = match frame {
                        None => return Ok("the origin ended the stream"),
                        Some(Err(e)) => return Err(format!("origin connection: {e}")),
                        Some(Ok(f)) => match f.into_data() {
                            Ok(d) => d,
                            Err(_) => continue, // trailers: nothing to relay
                        },
                    };
                    last_data = tokio::time::Instant::now();
                    // One read in, every complete tag out: the demuxer holds at most one
                    // (capped) tag plus one read.
                    demux.push(&data);
                    while let Some(tag) = demux.next_tag().map_err(|e| format!("bad FLV from the origin: {e}"))? {
                        let p = match publisher {
                            Some(p) => p,
                            None => {
                                let p = self
                                    .registry
                                    .relay(name, &self.origin, &self.node)
                                    .map_err(|e| format!("cannot relay here: {e}"))?;
                                pull.state.send_replace(PullState::Live);
                                publisher.insert(p)
                            }
                        };
                        let kind = match tag.tag_type {
                            flv::TAG_AUDIO => TrackKind::Audio,
                            flv::TAG_VIDEO => TrackKind::Video,
                            _ => {
                                if let Some(meta) = onair_media::rtmp::parse_metadata_body(&tag.body) {
                                    p.set_metadata(meta);
                                }
                                continue;
                            }
                        };
                        p.ingest(kind, tag.timestamp, tag.body).map_err(|e| format!("unusable media from the origin: {e}"))?;
                    }
                }
                _ = tick.tick() => {
                    if last_data.elapsed() >= self.read_timeout {
                        return Err(format!("origin sent nothing for {} s", self.read_timeout.as_secs()));
                    }
                    let now = now_ms();
                    if publisher.as_ref().is_some_and(|p| p.stream().total_viewers() > 0) {
                        last_viewer_ms = now;
                    }
                    let active = last_viewer_ms.max(pull.touched_ms.load(Ordering::Relaxed));
                    if publisher.is_some() && now.saturating_sub(active) >= self.idle_ms {
                        return Ok("no viewers left");
                    }
                }
                _ = self.shutdown.cancelled() => return Ok("shutting down"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn origins_are_http_or_https_base_urls() {
        assert_eq!(parse_origin("http://10.0.0.5:8080/").unwrap().0, "http://10.0.0.5:8080");
        assert_eq!(parse_origin("http://origin.internal").unwrap().0, "http://origin.internal");
        assert_eq!(parse_origin("https://origin:8443").unwrap().0, "https://origin:8443");
        for bad in ["origin:8080", "http://origin:8080/live", "http://o:1/?a=b", "", "ftp://x"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_origin_that_is_this_server_is_refused() {
        let listen: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        for me in ["http://127.0.0.1:8080", "http://localhost:8080", "http://0.0.0.0:8080", "http://[::1]:8080"] {
            let err = check_not_self(me, listen).unwrap_err().to_string();
            assert!(err.contains("this server itself"), "{me}: {err}");
        }
        assert!(check_not_self("http://127.0.0.1:8081", listen).is_ok());
        assert!(check_not_self("http://10.0.0.9:8080", listen).is_ok(), "another host, same port");
        let listen: SocketAddr = "10.0.0.9:80".parse().unwrap();
        assert!(check_not_self("http://10.0.0.9", listen).is_err(), "default port 80");
    }

    #[test]
    fn only_the_signature_is_forwarded() {
        assert_eq!(forward_query(""), "");
        assert_eq!(forward_query("_HLS_msn=3&_HLS_part=1"), "");
        assert_eq!(forward_query("txSecret=abc&x=1&txTime=5F00"), "?txSecret=abc&txTime=5F00");
        assert!(chain_has("a1, b2", "b2") && !chain_has("a1,b2", "b") && !chain_has("", "a"));
    }
}
