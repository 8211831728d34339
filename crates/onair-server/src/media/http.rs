//! HTTP side of media: `GET /live/{stream}.flv` (HTTP-FLV) and the stream stats API
//! (`GET /api/v1/streams`, `GET /api/v1/streams/{name}`).
//!
//! The stats are public like room reads: they name streams and their numbers, never
//! the publisher's address or push URL query (which holds the signature).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use onair_media::flv;
use onair_media::rtmp::StreamKey;
use serde_json::json;

use super::registry::{Protocol, Recv, Subscription};
use super::{MediaService, valid_stream_name};
use crate::state::Shared;
use crate::util::now_ms;

/// The media routes, merged into the main router.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/live/{file}", get(live_file))
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/streams/{name}", get(get_stream))
}

fn error(status: StatusCode, message: &str) -> Response {
    // `no-store`: a CDN must not remember that a stream was not live.
    (status, [(header::CACHE_CONTROL, "no-store")], axum::Json(json!({"code": status.as_u16(), "message": message})))
        .into_response()
}

/// `/live/{stream}.{ext}`: dispatches on the extension. HLS (`.m3u8`) is served by
/// the HLS part when present.
async fn live_file(
    State(state): State<Shared>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((name, ext)) = file.rsplit_once('.') else { return error(StatusCode::NOT_FOUND, "no such file") };
    match ext {
        "flv" => {
            let via = headers.get(super::edge::RELAY_HEADER).and_then(|v| v.to_str().ok());
            http_flv(&state.media, name, query.as_deref().unwrap_or(""), via).await
        }
        "m3u8" | "mp4" | "json" => super::hls::live_file(&state.hls, &file, query.as_deref().unwrap_or(""))
            .await
            .unwrap_or_else(|| error(StatusCode::NOT_FOUND, "no such file")),
        _ => error(StatusCode::NOT_FOUND, "no such file"),
    }
}

/// HTTP-FLV. `via` is the relay chain of an edge's pull (`x-onair-relay`): such a
/// viewer is counted as `relay`, and one that already went through this node is a loop.
async fn http_flv(svc: &Arc<MediaService>, name: &str, query: &str, via: Option<&str>) -> Response {
    if !valid_stream_name(name) {
        return error(StatusCode::NOT_FOUND, "no such stream");
    }
    let key = StreamKey { name: name.to_string(), query: query.to_string() };
    if let Err(why) = svc.check_play(&key) {
        return error(StatusCode::FORBIDDEN, &format!("play refused: {why}"));
    }
    if via.is_some_and(|v| svc.relay_loop(v)) {
        return error(StatusCode::LOOP_DETECTED, "relay loop: this node is already in the chain");
    }
    let protocol = if via.is_some() { Protocol::Relay } else { Protocol::HttpFlv };
    let Some(sub) = svc.open(name, protocol, query, via.unwrap_or("")).await else {
        return error(StatusCode::NOT_FOUND, "stream is not live");
    };
    let grace = Duration::from_millis(svc.cfg.slow_viewer_grace_ms.max(100));
    let header_bytes = Bytes::copy_from_slice(&flv::file_header(true, true));
    let merge = Duration::from_millis(svc.cfg.merge_write_ms);
    let state = FlvBody {
        sub,
        first: Some(header_bytes),
        last_skip: None,
        grace,
        merge,
        last_batch: None,
        ready: VecDeque::new(),
        ended: false,
    };
    let stream = futures_util::stream::unfold(state, |mut s| async move {
        let item = s.next().await?;
        Some((item, s))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "video/x-flv")
        // An endless live body: never cached by a CDN or browser.
        .header(header::CACHE_CONTROL, "no-cache, no-store")
        .header(header::ACCESS_CONTROL_ALLOW_ORIGIN, "*")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
}

struct FlvBody {
    sub: Subscription,
    first: Option<Bytes>,
    last_skip: Option<Instant>,
    grace: Duration,
    merge: Duration,
    last_batch: Option<Instant>,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl FlvBody {
    /// The next chunk of the body; `None` ends it. Each item is a shared, pre-built
    /// tag. Items come in batches at most every `merge` (merged writes): hyper polls
    /// the body again while it is ready, queues the tags and writes them with one
    /// vectored write.
    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if let Some(h) = self.first.take() {
            return Some(Ok(h));
        }
        if let Some(b) = self.ready.pop_front() {
            return Some(Ok(b));
        }
        if self.ended {
            return None;
        }
        let first = self.sub.recv().await;
        if let Err(e) = self.take(first) {
            return Some(Err(e));
        }
        if let Some(at) = self.last_batch.map(|t| t + self.merge).filter(|at| *at > Instant::now() && !self.ended) {
            tokio::time::sleep_until(at.into()).await;
        }
        while self.ready.len() < 256 && !self.ended {
            let Some(r) = self.sub.try_recv() else { break };
            if let Err(e) = self.take(r) {
                return Some(Err(e));
            }
        }
        self.last_batch = Some(Instant::now());
        match self.ready.pop_front() {
            Some(b) => Some(Ok(b)),
            // A skip with nothing after it yet: wait for the next batch.
            None if !self.ended => Box::pin(self.next()).await,
            None => None,
        }
    }

    fn take(&mut self, r: Recv) -> Result<(), std::io::Error> {
        match r {
            Recv::Packet(p) => {
                self.sub.stream().add_bytes_out(p.flv.len());
                self.ready.push_back(p.flv.clone());
            }
            Recv::Skipped(n) => {
                metrics::counter!("onair_media_viewer_skips_total", "protocol" => "flv").increment(1);
                if self.last_skip.is_some_and(|t| t.elapsed() < self.grace) {
                    metrics::counter!("onair_media_viewers_cut_total", "protocol" => "flv").increment(1);
                    return Err(std::io::Error::other(format!("viewer stays behind ({n} packets skipped)")));
                }
                self.last_skip = Some(Instant::now());
            }
            Recv::Ended => self.ended = true,
        }
        Ok(())
    }
}

async fn list_streams(State(state): State<Shared>) -> Response {
    let now = now_ms();
    let streams: Vec<_> = state.media.registry.list().iter().map(|s| s.stats(now)).collect();
    axum::Json(json!({"streams": streams})).into_response()
}

async fn get_stream(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    match state.media.registry.get(&name) {
        Some(s) => axum::Json(s.stats(now_ms())).into_response(),
        None => error(StatusCode::NOT_FOUND, "stream is not live"),
    }
}
