//! Answers to media HTTP requests (LL-HLS playlists with blocking reloads, parts,
//! live fMP4, snapshots, recordings) in terms of HTTP but of no web framework: the
//! server's faces turn a [`MediaReply`] into their own response type.
//!
//! The media service speaks HTTP semantics itself because LL-HLS is defined by them
//! (blocking reloads, cache lifetimes a CDN must honour); routing stays in the faces.

use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderName, HeaderValue, StatusCode, header};

/// A response: status, headers and a [`MediaBody`].
pub type MediaReply = http::Response<MediaBody>;

/// A response body: whole, or an endless live stream of chunks.
pub enum MediaBody {
    /// The whole body.
    Full(Bytes),
    /// Chunks as they are produced (live fMP4).
    Stream(BoxStream<'static, Bytes>),
}

/// A response with these headers and a whole body.
pub fn reply(
    status: StatusCode,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
    body: impl Into<Bytes>,
) -> MediaReply {
    with_body(status, headers, MediaBody::Full(body.into()))
}

/// A response with these headers and `body`.
pub fn with_body(
    status: StatusCode,
    headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>,
    body: MediaBody,
) -> MediaReply {
    let mut r = http::Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().extend(headers);
    r
}

/// An error answer in plain text. Errors (404, 400, 403, 503) are never stored: a
/// stream that is not live yet, or a part that does not exist yet, will be there a
/// moment later.
pub fn status(code: StatusCode, msg: impl Into<Bytes>) -> MediaReply {
    reply(code, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], msg.into())
}
