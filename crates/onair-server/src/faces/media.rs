//! The media face: `GET /live/{stream}.flv` (HTTP-FLV), the LL-HLS / live fMP4 /
//! snapshot / recording files the media service answers ([`MediaReply`] rendered
//! here), and the stream stats API (`GET /api/v1/streams`, `GET /api/v1/streams/{name}`).
//!
//! The stats are public like room reads: they name streams and their numbers, never
//! the publisher's address or push URL query (which holds the signature).

use std::collections::VecDeque;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use onair_media::flv;
use onair_media::rtmp::StreamKey;
use serde_json::json;

use crate::state::Shared;
use onair_media::pacing::ViewerPacing;
use onair_media_server::hls;
use onair_media_server::registry::{Packet, Protocol, Subscription};
use onair_media_server::reply::{MediaBody, MediaReply};
use onair_media_server::{MediaService, valid_stream_name};
use onair_shell::now_ms;

/// The media routes, merged into the main router.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/live/{file}", get(live_file))
        .route("/live/{stream}/snapshot.jpg", get(snapshot))
        .route("/live/{stream}/{sid}/{file}", get(media_file))
        .route("/vod/{stream}/{id}/{file}", get(vod_file))
        .route("/api/v1/streams", get(list_streams))
        .route("/api/v1/streams/{name}", get(get_stream))
}

/// Renders the media service's answer, readable from players on other origins
/// (hls.js, MediaSource pages).
fn render(reply: MediaReply) -> Response {
    let (parts, body) = hls::cors(reply).into_parts();
    let body = match body {
        MediaBody::Full(bytes) => Body::from(bytes),
        MediaBody::Stream(chunks) => {
            Body::from_stream(futures_util::StreamExt::map(chunks, Ok::<_, std::convert::Infallible>))
        }
    };
    Response::from_parts(parts, body)
}

async fn snapshot(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    render(hls::snapshot(&state.hls, &name).await)
}

async fn media_file(State(state): State<Shared>, Path((name, sid, file)): Path<(String, String, String)>) -> Response {
    render(hls::media_file(&state.hls, &name, &sid, &file).await)
}

async fn vod_file(State(state): State<Shared>, Path((name, id, file)): Path<(String, String, String)>) -> Response {
    render(hls::vod_file(&state.hls, &name, &id, &file).await)
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
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    Path(file): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((name, ext)) = file.rsplit_once('.') else { return error(StatusCode::NOT_FOUND, "no such file") };
    match ext {
        "flv" => {
            let via = headers.get(onair_media_server::edge::RELAY_HEADER).and_then(|v| v.to_str().ok());
            http_flv(&state.media, name, query.as_deref().unwrap_or(""), via).await
        }
        "m3u8" | "mp4" | "json" => {
            match hls::live_file(&state.hls, &file, query.as_deref().unwrap_or(""), client_key(peer, &headers)).await {
                Some(reply) => render(reply),
                None => error(StatusCode::NOT_FOUND, "no such file"),
            }
        }
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
    let header_bytes = Bytes::copy_from_slice(&flv::file_header(true, true));
    let state = FlvBody {
        sub,
        first: Some(header_bytes),
        pacing: ViewerPacing::new(svc.cfg.slow_viewer_grace_ms, svc.cfg.merge_write_ms),
        batch: Vec::new(),
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
    pacing: ViewerPacing,
    batch: Vec<Arc<Packet>>,
    ready: VecDeque<Bytes>,
    ended: bool,
}

impl FlvBody {
    /// The next chunk of the body; `None` ends it. Each item is a shared, pre-built
    /// tag. Items come in batches paced by [`ViewerPacing`] (merged writes): hyper polls
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
        loop {
            let first = self.sub.recv().await;
            match self.sub.gather(first, &mut self.pacing, &mut self.batch).await {
                Ok(live) => self.ended = !live,
                Err(behind) => return Some(Err(std::io::Error::other(behind))),
            }
            for p in self.batch.drain(..) {
                self.sub.stream().add_bytes_out(p.flv.len());
                self.ready.push_back(p.flv.clone());
            }
            match self.ready.pop_front() {
                Some(b) => return Some(Ok(b)),
                // A skip with nothing after it yet: wait for the next batch.
                None if !self.ended => continue,
                None => return None,
            }
        }
    }
}

/// An HLS reader's identity: its address and user agent (two players behind one NAT
/// usually differ in the latter), hashed.
fn client_key(peer: std::net::SocketAddr, headers: &HeaderMap) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    peer.ip().hash(&mut h);
    headers.get(header::USER_AGENT).map(|v| v.as_bytes()).unwrap_or_default().hash(&mut h);
    h.finish()
}

/// A stream's stats with every viewer counted once: the registry counts connections
/// (RTMP, HTTP-FLV, live fMP4 as `hls`), the HLS part counts playlist readers, which
/// join the `hls` figure; `viewersTotal` is the sum.
fn stream_view(state: &Shared, s: &onair_media_server::registry::Stream, now: u64) -> serde_json::Value {
    let mut stats = s.stats(now);
    *stats.viewers.entry("hls").or_default() += state.hls.hls_viewers(&stats.name);
    let total: u64 = stats.viewers.values().sum();
    let mut v = serde_json::to_value(&stats).unwrap_or_default();
    v["viewersTotal"] = json!(total);
    // Only when there is one: pages must not ask for a snapshot that would 404.
    if state.hls.has_snapshot(&stats.name) {
        v["snapshot"] = json!(format!("/live/{}/snapshot.jpg", stats.name));
    }
    v
}

async fn list_streams(State(state): State<Shared>) -> Response {
    let now = now_ms();
    let streams: Vec<_> = state.media.registry.list().iter().map(|s| stream_view(&state, s, now)).collect();
    axum::Json(json!({"streams": streams})).into_response()
}

async fn get_stream(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    match state.media.registry.get(&name) {
        Some(s) => axum::Json(stream_view(&state, &s, now_ms())).into_response(),
        None => error(StatusCode::NOT_FOUND, "stream is not live"),
    }
}
