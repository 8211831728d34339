//! RTMP, sans-IO: the server side of one connection (handshake, chunk stream,
//! commands) on top of `rml_rtmp`, plus the pre-built chunk writer used to send media
//! to players.
//!
//! `rml_rtmp` (pinned `=0.8.0`) does the handshake (including the Flash "complex"
//! digest OBS uses), chunk (de)serialization and the connect / createStream /
//! publish / play command flow. It is dormant upstream and has panicked on bad
//! input in the past, so every call into it goes through `guard` (`catch_unwind`): a panic inside
//! the library becomes an error for this one connection instead of taking down the
//! task (see also the fuzz targets in `fuzz/`).
//!
//! Media to players does not go through `rml_rtmp`'s per-session serializer: each
//! frame is chunked once ([`chunk_message`]) with self-contained type-0 headers on
//! chunk streams the library never uses, so the same bytes can be written to every
//! player.

use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::{BufMut, Bytes, BytesMut};
use rml_amf0::Amf0Value;

use crate::amf_guard::AmfGuard;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use rml_rtmp::sessions::{ServerSession, ServerSessionConfig, ServerSessionEvent, ServerSessionResult, StreamMetadata};

/// Chunk size announced to peers and used for pre-built media chunks. 4096 is what
/// nginx-rtmp and `rml_rtmp` use; larger values save little (one byte per chunk).
pub const CHUNK_SIZE: u32 = 4096;
/// Chunk stream of pre-built audio messages (`rml_rtmp` uses 2..=6 only).
pub const CSID_AUDIO: u8 = 7;
/// Chunk stream of pre-built video messages.
pub const CSID_VIDEO: u8 = 8;
/// Chunk stream of pre-built data (`onMetaData`) messages.
pub const CSID_DATA: u8 = 9;
/// Message stream id players get from their first `createStream`; pre-built chunks
/// carry it and [`with_stream_id`] patches the rare other value.
pub const PLAY_STREAM_ID: u32 = 1;

/// Why a connection cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtmpError {
    /// The handshake failed (not RTMP, or a bad digest).
    #[error("handshake failed: {0}")]
    Handshake(String),
    /// The chunk stream or a command was malformed.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// `rml_rtmp` panicked on this input; the connection is unusable.
    #[error("RTMP library panicked on malformed input")]
    Panicked,
    /// A call that needs a finished handshake came before it.
    #[error("handshake not finished")]
    NotReady,
}

/// Runs a library call, turning a panic into [`RtmpError::Panicked`].
fn guard<T>(f: impl FnOnce() -> Result<T, RtmpError>) -> Result<T, RtmpError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(Err(RtmpError::Panicked))
}

/// Stream properties a publisher announces in `@setDataFrame onMetaData`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    /// Picture width.
    pub width: Option<u32>,
    /// Picture height.
    pub height: Option<u32>,
    /// Frames per second.
    pub frame_rate: Option<f32>,
    /// FLV video codec id (7 = H.264).
    pub video_codec_id: Option<u32>,
    /// FLV sound format (10 = AAC).
    pub audio_codec_id: Option<u32>,
    /// Video bitrate announced, kbit/s.
    pub video_kbps: Option<u32>,
    /// Audio bitrate announced, kbit/s.
    pub audio_kbps: Option<u32>,
    /// Audio sample rate, Hz.
    pub audio_sample_rate: Option<u32>,
    /// Audio channels.
    pub audio_channels: Option<u32>,
    /// Encoder name.
    pub encoder: Option<String>,
}

impl From<StreamMetadata> for Metadata {
    fn from(m: StreamMetadata) -> Self {
        Metadata {
            width: m.video_width,
            height: m.video_height,
            frame_rate: m.video_frame_rate,
            video_codec_id: m.video_codec_id,
            audio_codec_id: m.audio_codec_id,
            video_kbps: m.video_bitrate_kbps,
            audio_kbps: m.audio_bitrate_kbps,
            audio_sample_rate: m.audio_sample_rate,
            audio_channels: m.audio_channels.or(m.audio_is_stereo.map(|s| if s { 2 } else { 1 })),
            encoder: m.encoder,
        }
    }
}

/// A stream name as sent in `publish`/`play`, split from its query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey {
    /// The stream name.
    pub name: String,
    /// The query string after `?` (empty if none), e.g. `txSecret=…&txTime=…`.
    pub query: String,
}

impl StreamKey {
    /// Splits `name?query`. Some tools put the query on the app name instead
    /// (`rtmp://host/live?txSecret=…/name`); pass that as `app_query`.
    pub fn parse(raw: &str, app_query: &str) -> StreamKey {
        let (name, query) = raw.split_once('?').unwrap_or((raw, ""));
        let query = if query.is_empty() { app_query } else { query };
        StreamKey { name: name.to_string(), query: query.to_string() }
    }

    /// The value of `key` in the query (first occurrence, not percent-decoded: the
    /// signed values are hex).
    pub fn param(&self, key: &str) -> Option<&str> {
        self.query.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

/// Splits an app name from a query attached to it: `live?x=y` → (`live`, `x=y`).
pub fn split_app(app: &str) -> (&str, &str) {
    let (a, q) = app.split_once('?').unwrap_or((app, ""));
    (a.trim_end_matches('/'), q)
}

/// What a connection asks for or sends.
#[derive(Debug, Clone, PartialEq)]
pub enum RtmpEvent {
    /// `connect` to an application: answer with [`ServerConn::accept`] or
    /// [`ServerConn::reject`].
    ConnectRequested {
        /// Pass back to accept/reject.
        request_id: u32,
        /// App name as sent (may carry a query).
        app: String,
    },
    /// `publish`: answer with accept/reject.
    PublishRequested {
        /// Pass back to accept/reject.
        request_id: u32,
        /// App name.
        app: String,
        /// Stream name with its query.
        key: String,
    },
    /// `play`: answer with accept/reject.
    PlayRequested {
        /// Pass back to accept/reject.
        request_id: u32,
        /// App name.
        app: String,
        /// Stream name with its query.
        key: String,
        /// Message stream id the player expects media on.
        stream_id: u32,
    },
    /// The publisher stopped (`FCUnpublish`/`deleteStream`).
    PublishFinished,
    /// The player stopped.
    PlayFinished,
    /// `@setDataFrame onMetaData`.
    Metadata(Metadata),
    /// An audio message (an FLV audio tag body).
    Audio {
        /// 32-bit ms timestamp (extended timestamps already applied).
        timestamp: u32,
        /// Payload.
        data: Bytes,
    },
    /// A video message (an FLV video tag body).
    Video {
        /// 32-bit ms timestamp.
        timestamp: u32,
        /// Payload.
        data: Bytes,
    },
}

enum State {
    Handshaking(Box<Handshake>),
    Session(Box<ServerSession>, Box<AmfGuard>),
    Failed,
}

/// The server side of one RTMP connection. Feed it received bytes; it appends what
/// to send to `out` and returns events.
pub struct ServerConn {
    state: State,
}

impl Default for ServerConn {
    fn default() -> Self {
        ServerConn::new()
    }
}

impl ServerConn {
    /// A connection waiting for the client's handshake (C0/C1).
    pub fn new() -> ServerConn {
        ServerConn { state: State::Handshaking(Box::new(Handshake::new(PeerType::Server))) }
    }

    /// A connection past the handshake, as if C0..C2 had been exchanged (for tests
    /// and fuzzing the chunk stream); its initial messages go to `out`.
    pub fn after_handshake(out: &mut Vec<u8>) -> Result<ServerConn, RtmpError> {
        let session = start_session(out)?;
        Ok(ServerConn { state: State::Session(session, Box::default()) })
    }

    /// Whether the handshake is done.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Session(..))
    }

    /// Processes received bytes.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<Vec<RtmpEvent>, RtmpError> {
        let mut events = Vec::new();
        let result = self.feed_inner(input, out, &mut events);
        if result.is_err() {
            self.state = State::Failed;
        }
        result.map(|()| events)
    }

    fn feed_inner(&mut self, input: &[u8], out: &mut Vec<u8>, events: &mut Vec<RtmpEvent>) -> Result<(), RtmpError> {
        let mut rest: Vec<u8> = Vec::new();
        let input = match &mut self.state {
            State::Failed => return Err(RtmpError::Protocol("connection already failed".into())),
            State::Handshaking(hs) => {
                let r = guard(|| hs.process_bytes(input).map_err(|e| RtmpError::Handshake(e.to_string())))?;
                match r {
                    HandshakeProcessResult::InProgress { response_bytes } => {
                        out.extend_from_slice(&response_bytes);
                        return Ok(());
                    }
                    HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                        out.extend_from_slice(&response_bytes);
                        self.state = State::Session(start_session(out)?, Box::default());
                        rest = remaining_bytes;
                        &rest[..]
                    }
                }
            }
            State::Session(..) => input,
        };
        if input.is_empty() {
            return Ok(());
        }
        let State::Session(session, amf_guard) = &mut self.state else { return Err(RtmpError::NotReady) };
        // Before rml_rtmp decodes anything: refuse AMF that could overflow the stack.
        amf_guard.feed(input).map_err(RtmpError::Protocol)?;
        let results = guard(|| session.handle_input(input).map_err(|e| RtmpError::Protocol(e.to_string())))?;
        let _ = &rest;
        collect(results, out, events);
        Ok(())
    }

    /// Accepts a pending connect/publish/play request.
    pub fn accept(&mut self, request_id: u32, out: &mut Vec<u8>) -> Result<Vec<RtmpEvent>, RtmpError> {
        let State::Session(session, _) = &mut self.state else { return Err(RtmpError::NotReady) };
        let results = guard(|| session.accept_request(request_id).map_err(|e| RtmpError::Protocol(e.to_string())))?;
        let mut events = Vec::new();
        collect(results, out, &mut events);
        Ok(events)
    }

    /// Refuses a pending request with an RTMP status `code` (e.g.
    /// `NetStream.Publish.BadName`) and a human-readable description.
    pub fn reject(
        &mut self,
        request_id: u32,
        code: &str,
        description: &str,
        out: &mut Vec<u8>,
    ) -> Result<(), RtmpError> {
        let State::Session(session, _) = &mut self.state else { return Err(RtmpError::NotReady) };
        let results = guard(|| {
            session.reject_request(request_id, code, description).map_err(|e| RtmpError::Protocol(e.to_string()))
        })?;
        collect(results, out, &mut Vec::new());
        Ok(())
    }
}

fn start_session(out: &mut Vec<u8>) -> Result<Box<ServerSession>, RtmpError> {
    let mut config = ServerSessionConfig::new();
    config.chunk_size = CHUNK_SIZE;
    let (session, results) = guard(|| ServerSession::new(config).map_err(|e| RtmpError::Protocol(e.to_string())))?;
    collect(results, out, &mut Vec::new());
    Ok(Box::new(session))
}

fn collect(results: Vec<ServerSessionResult>, out: &mut Vec<u8>, events: &mut Vec<RtmpEvent>) {
    for r in results {
        match r {
            ServerSessionResult::OutboundResponse(packet) => out.extend_from_slice(&packet.bytes),
            ServerSessionResult::RaisedEvent(e) => {
                if let Some(e) = map_event(e) {
                    events.push(e);
                }
            }
            ServerSessionResult::UnhandleableMessageReceived(_) => {}
        }
    }
}

fn map_event(e: ServerSessionEvent) -> Option<RtmpEvent> {
    Some(match e {
        ServerSessionEvent::ConnectionRequested { request_id, app_name } => {
            RtmpEvent::ConnectRequested { request_id, app: app_name }
        }
        ServerSessionEvent::PublishStreamRequested { request_id, app_name, stream_key, .. } => {
            RtmpEvent::PublishRequested { request_id, app: app_name, key: stream_key }
        }
        ServerSessionEvent::PlayStreamRequested { request_id, app_name, stream_key, stream_id, .. } => {
            RtmpEvent::PlayRequested { request_id, app: app_name, key: stream_key, stream_id }
        }
        ServerSessionEvent::PublishStreamFinished { .. } => RtmpEvent::PublishFinished,
        ServerSessionEvent::PlayStreamFinished { .. } => RtmpEvent::PlayFinished,
        ServerSessionEvent::StreamMetadataChanged { metadata, .. } => RtmpEvent::Metadata(metadata.into()),
        ServerSessionEvent::AudioDataReceived { data, timestamp, .. } => {
            RtmpEvent::Audio { timestamp: timestamp.value, data }
        }
        ServerSessionEvent::VideoDataReceived { data, timestamp, .. } => {
            RtmpEvent::Video { timestamp: timestamp.value, data }
        }
        _ => return None,
    })
}

/// One RTMP message chunked for any player: a type-0 header (self-contained, so no
/// per-connection header compression state is involved), then type-3 continuation
/// chunks every [`CHUNK_SIZE`] bytes. Timestamps at or above 2^24 ms use the extended
/// timestamp field, repeated in every continuation chunk as FFmpeg and `rml_rtmp`
/// expect. The 64-bit timestamp is sent modulo 2^32, as RTMP does.
pub fn chunk_message(csid: u8, stream_id: u32, type_id: u8, timestamp: u64, payload: &[u8]) -> Bytes {
    debug_assert!((2..64).contains(&csid));
    let ts = timestamp as u32;
    let extended = ts >= 0x00FF_FFFF;
    let chunks = payload.len().div_ceil(CHUNK_SIZE as usize).max(1);
    let ext_len = if extended { 4 } else { 0 };
    let mut out = BytesMut::with_capacity(12 + ext_len + payload.len() + (chunks - 1) * (1 + ext_len));
    out.put_u8(csid); // fmt 0
    let field = if extended { 0x00FF_FFFF } else { ts };
    out.put_slice(&field.to_be_bytes()[1..]);
    out.put_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.put_u8(type_id);
    out.put_u32_le(stream_id);
    if extended {
        out.put_u32(ts);
    }
    for (i, part) in payload.chunks(CHUNK_SIZE as usize).enumerate() {
        if i > 0 {
            out.put_u8(0xC0 | csid); // fmt 3
            if extended {
                out.put_u32(ts);
            }
        }
        out.put_slice(part);
    }
    out.freeze()
}

/// A pre-built message for a player whose message stream id is not
/// [`PLAY_STREAM_ID`] (the id sits at a fixed place in the first chunk header).
pub fn with_stream_id(chunks: &Bytes, stream_id: u32) -> Bytes {
    if stream_id == PLAY_STREAM_ID || chunks.len() < 12 {
        return chunks.clone();
    }
    let mut b = BytesMut::from(&chunks[..]);
    b[8..12].copy_from_slice(&stream_id.to_le_bytes());
    b.freeze()
}

/// Chunk stream of the play-start commands written by [`play_start`].
pub const CSID_COMMAND: u8 = 10;

/// What a player gets when its `play` is accepted: `StreamBegin`, then `onStatus`
/// `NetStream.Play.Reset` and `NetStream.Play.Start`, all at timestamp 0.
///
/// Written instead of `rml_rtmp`'s own answer, which also sends `|RtmpSampleAccess`
/// and a `NetStream.Data.Start` data message stamped with the session clock: FFmpeg
/// turns data messages with a non-zero timestamp into an extra "data" stream.
/// (`rml_rtmp`'s answer is still generated, to move its session into the playing
/// state, and dropped: its later messages on chunk stream 2/3/6 then carry a
/// timestamp delta against a message the player never saw, which only matters for
/// timestamps of control messages, never for their content.)
pub fn play_start(stream_id: u32, stream: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut begin = vec![0u8, 0];
    begin.extend_from_slice(&stream_id.to_be_bytes());
    out.extend_from_slice(&chunk_message(2, 0, 4, 0, &begin));
    for (code, description) in [
        ("NetStream.Play.Reset", format!("Playing and resetting {stream}.")),
        ("NetStream.Play.Start", format!("Started playing {stream}.")),
    ] {
        let mut props = std::collections::HashMap::new();
        props.insert("level".to_string(), Amf0Value::Utf8String("status".into()));
        props.insert("code".to_string(), Amf0Value::Utf8String(code.into()));
        props.insert("description".to_string(), Amf0Value::Utf8String(description));
        let values = vec![
            Amf0Value::Utf8String("onStatus".into()),
            Amf0Value::Number(0.0),
            Amf0Value::Null,
            Amf0Value::Object(props),
        ];
        let body = rml_amf0::serialize(&values).unwrap_or_default();
        out.extend_from_slice(&chunk_message(CSID_COMMAND, stream_id, 20, 0, &body));
    }
    out
}

/// The AMF0 body of an `onMetaData` script tag / data message for players.
pub fn metadata_body(m: &Metadata) -> Bytes {
    let mut props = std::collections::HashMap::new();
    let mut num = |k: &str, v: Option<f64>| {
        if let Some(v) = v {
            props.insert(k.to_string(), Amf0Value::Number(v));
        }
    };
    num("width", m.width.map(f64::from));
    num("height", m.height.map(f64::from));
    num("framerate", m.frame_rate.map(f64::from));
    num("videocodecid", m.video_codec_id.map(f64::from));
    num("audiocodecid", m.audio_codec_id.map(f64::from));
    num("videodatarate", m.video_kbps.map(f64::from));
    num("audiodatarate", m.audio_kbps.map(f64::from));
    num("audiosamplerate", m.audio_sample_rate.map(f64::from));
    num("audiochannels", m.audio_channels.map(f64::from));
    if let Some(c) = m.audio_channels {
        props.insert("stereo".into(), Amf0Value::Boolean(c >= 2));
    }
    props.insert("server".into(), Amf0Value::Utf8String("OnAir".into()));
    let values = vec![Amf0Value::Utf8String("onMetaData".into()), Amf0Value::Object(props)];
    // Serializing numbers, booleans and short strings cannot fail.
    Bytes::from(rml_amf0::serialize(&values).unwrap_or_default())
}

/// Reads the `onMetaData` of an FLV script tag (what an HTTP-FLV source such as an
/// origin server sends first): `"onMetaData"` (optionally after `"@setDataFrame"`)
/// followed by an object or ECMA array of properties. `None` for any other script tag
/// or malformed input.
///
/// The body comes from the network, so it is bounded ([`crate::amf_guard::MAX_AMF_MESSAGE`]),
/// its nesting is checked without recursion before `rml_amf0` (which recurses) sees
/// it, and the decoder runs under `catch_unwind`.
pub fn parse_metadata_body(body: &[u8]) -> Option<Metadata> {
    if body.len() > crate::amf_guard::MAX_AMF_MESSAGE {
        return None;
    }
    crate::amf_guard::check_amf0_depth(body, crate::amf_guard::MAX_AMF_DEPTH).ok()?;
    let values = catch_unwind(|| rml_amf0::deserialize(&mut std::io::Cursor::new(body)).ok()).ok()??;
    let mut values = values.into_iter().skip_while(|v| matches!(v, Amf0Value::Utf8String(s) if s == "@setDataFrame"));
    if !matches!(values.next(), Some(Amf0Value::Utf8String(s)) if s == "onMetaData") {
        return None;
    }
    // `rml_amf0` reads an ECMA array (what encoders write) as an object too.
    let Amf0Value::Object(props) = values.next()? else { return None };
    let mut meta = StreamMetadata::new();
    meta.apply_metadata_values(props);
    Some(meta.into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use proptest::prelude::*;
    use rml_rtmp::chunk_io::ChunkDeserializer;
    use rml_rtmp::sessions::{ClientSession, ClientSessionConfig, ClientSessionEvent, ClientSessionResult};

    use super::*;

    fn deserializer() -> ChunkDeserializer {
        let mut d = ChunkDeserializer::new();
        d.set_max_chunk_size(CHUNK_SIZE as usize).unwrap();
        d
    }

    #[test]
    fn stream_keys() {
        let k = StreamKey::parse("cam1?txSecret=abc&txTime=5C271099", "");
        assert_eq!(k.name, "cam1");
        assert_eq!(k.param("txSecret"), Some("abc"));
        assert_eq!(k.param("txTime"), Some("5C271099"));
        assert_eq!(k.param("x"), None);
        let k = StreamKey::parse("cam1", "txSecret=a&txTime=b");
        assert_eq!((k.name.as_str(), k.param("txTime")), ("cam1", Some("b")));
        assert_eq!(split_app("live?a=b"), ("live", "a=b"));
        assert_eq!(split_app("live/"), ("live", ""));
    }

    proptest! {
        #[test]
        fn prebuilt_chunks_read_back(ts in prop_oneof![0u64..0xFF_FFFF, 0xFF_FFF0u64..0x2_0000_0000], len in 0usize..20_000, split in 0usize..30_000) {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut bytes = chunk_message(CSID_VIDEO, 1, 9, ts, &payload).to_vec();
            bytes.extend_from_slice(&chunk_message(CSID_AUDIO, 1, 8, ts + 5, &payload[..len.min(100)]));
            let mut d = deserializer();
            let split = split.min(bytes.len());
            let mut got = Vec::new();
            let mut input = &bytes[..split];
            while let Some(m) = d.get_next_message(input).unwrap() { got.push(m); input = &[]; }
            let mut input = &bytes[split..];
            while let Some(m) = d.get_next_message(input).unwrap() { got.push(m); input = &[]; }
            prop_assert_eq!(got.len(), 2);
            prop_assert_eq!(got[0].timestamp.value, ts as u32);
            prop_assert_eq!(&got[0].data[..], &payload[..]);
            prop_assert_eq!((got[0].type_id, got[0].message_stream_id), (9, 1));
            prop_assert_eq!(got[1].timestamp.value, (ts + 5) as u32);
            prop_assert_eq!(got[1].data.len(), len.min(100));
        }
    }

    #[test]
    fn stream_id_patch() {
        let b = chunk_message(CSID_DATA, 1, 18, 0, b"abc");
        let p = with_stream_id(&b, 3);
        let mut d = deserializer();
        let m = d.get_next_message(&p).unwrap().unwrap();
        assert_eq!((m.message_stream_id, &m.data[..]), (3, &b"abc"[..]));
    }

    fn client_bytes(results: Vec<ClientSessionResult>, buf: &mut Vec<u8>, events: &mut Vec<ClientSessionEvent>) {
        for r in results {
            match r {
                ClientSessionResult::OutboundResponse(p) => buf.extend_from_slice(&p.bytes),
                ClientSessionResult::RaisedEvent(e) => events.push(e),
                _ => {}
            }
        }
    }

    /// Moves bytes both ways until neither side has anything to say; the server
    /// accepts every request. Returns the server's media/metadata events.
    fn pump(
        server: &mut ServerConn,
        client: &mut ClientSession,
        mut to_server: Vec<u8>,
        cev: &mut Vec<ClientSessionEvent>,
    ) -> Vec<RtmpEvent> {
        let mut media = Vec::new();
        for _ in 0..20 {
            if to_server.is_empty() {
                break;
            }
            let mut out = Vec::new();
            for e in server.feed(&to_server, &mut out).unwrap() {
                match e {
                    RtmpEvent::ConnectRequested { request_id, .. }
                    | RtmpEvent::PublishRequested { request_id, .. }
                    | RtmpEvent::PlayRequested { request_id, .. } => {
                        media.push(e.clone());
                        server.accept(request_id, &mut out).unwrap();
                    }
                    other => media.push(other),
                }
            }
            to_server = Vec::new();
            if !out.is_empty() {
                client_bytes(client.handle_input(&out).unwrap(), &mut to_server, cev);
            }
        }
        media
    }

    /// A real client session (rml_rtmp's) publishes through a [`ServerConn`].
    #[test]
    fn client_publishes_through_the_server_conn() {
        let mut client_hs = Handshake::new(PeerType::Client);
        let mut server = ServerConn::new();
        let mut to_server = client_hs.generate_outbound_p0_and_p1().unwrap();
        let client_leftover;
        loop {
            let mut out = Vec::new();
            server.feed(&to_server, &mut out).unwrap();
            match client_hs.process_bytes(&out).unwrap() {
                HandshakeProcessResult::InProgress { response_bytes } => to_server = response_bytes,
                HandshakeProcessResult::Completed { response_bytes, remaining_bytes } => {
                    to_server = response_bytes;
                    client_leftover = remaining_bytes;
                    break;
                }
            }
        }
        let mut out = Vec::new();
        server.feed(&to_server, &mut out).unwrap();
        assert!(server.is_ready());
        let (mut client, results) = ClientSession::new(ClientSessionConfig::new()).unwrap();
        let mut cev = Vec::new();
        let mut to_server = Vec::new();
        client_bytes(results, &mut to_server, &mut cev);
        let mut from_server = client_leftover;
        from_server.extend_from_slice(&out);
        client_bytes(client.handle_input(&from_server).unwrap(), &mut to_server, &mut cev);
        client_bytes(vec![client.request_connection("live".into()).unwrap()], &mut to_server, &mut cev);
        let ev = pump(&mut server, &mut client, to_server, &mut cev);
        assert!(matches!(&ev[..], [RtmpEvent::ConnectRequested { app, .. }] if app == "live"), "{ev:?}");
        assert!(cev.contains(&ClientSessionEvent::ConnectionRequestAccepted), "{cev:?}");
        let mut to_server = Vec::new();
        let r = client.request_publishing("cam?txTime=1".into(), rml_rtmp::sessions::PublishRequestType::Live).unwrap();
        client_bytes(vec![r], &mut to_server, &mut cev);
        let ev = pump(&mut server, &mut client, to_server, &mut cev);
        let [RtmpEvent::PublishRequested { key, .. }] = &ev[..] else { panic!("{ev:?}") };
        assert_eq!(StreamKey::parse(key, "").name, "cam");
        assert!(cev.contains(&ClientSessionEvent::PublishRequestAccepted), "{cev:?}");
        let body = Bytes::from_static(&[0x17, 1, 0, 0, 0, 0, 0, 0, 1, 0x65]);
        let r =
            client.publish_video_data(body.clone(), rml_rtmp::time::RtmpTimestamp::new(0x0100_0000), false).unwrap();
        let mut bytes = Vec::new();
        client_bytes(vec![r], &mut bytes, &mut cev);
        let events = server.feed(&bytes, &mut Vec::new()).unwrap();
        assert_eq!(events, vec![RtmpEvent::Video { timestamp: 0x0100_0000, data: body }]);
    }

    /// Found by the `rtmp_chunks` fuzz target: a 13-byte AMF0 command with too few
    /// values makes `rml_rtmp` panic (`amf0_command.rs:35`); the guard turns that into
    /// an error for this connection only.
    #[test]
    fn a_panic_inside_rml_rtmp_fails_only_this_connection() {
        let mut out = Vec::new();
        let mut conn = ServerConn::after_handshake(&mut out).unwrap();
        let input = [0x33, 0, 0, 0, 0, 0, 0, 0x11, 0x11, 0x11, 0, 0x41];
        let mut failed = false;
        for b in input {
            if conn.feed(&[b], &mut out).is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed);
        assert!(conn.feed(&[0], &mut out).is_err());
    }

    /// A `connect` nested 15,000 objects deep (60 KB) overflows the stack inside
    /// `rml_amf0` and would abort the process; the AMF guard refuses it first.
    #[test]
    fn deeply_nested_amf_is_refused_before_rml_rtmp_sees_it() {
        let mut out = Vec::new();
        let mut conn = ServerConn::after_handshake(&mut out).unwrap();
        let mut body = vec![2u8, 0, 7];
        body.extend_from_slice(b"connect");
        body.extend_from_slice(&[0, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]);
        body.extend_from_slice(&b"\x03\x00\x01a".repeat(15_000));
        let msg = chunk_message(3, 0, 20, 0, &body);
        // Announce the chunk size the pre-built message uses.
        let mut bytes = chunk_message(2, 0, 1, 0, &CHUNK_SIZE.to_be_bytes()).to_vec();
        bytes.extend_from_slice(&msg);
        let r = conn.feed(&bytes, &mut out);
        assert!(matches!(&r, Err(RtmpError::Protocol(m)) if m.contains("nesting")), "{r:?}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut server = ServerConn::new();
        let mut out = Vec::new();
        let r = server.feed(&[0x07; 4000], &mut out);
        assert!(r.is_err(), "{r:?}");
        assert!(server.feed(&[1], &mut out).is_err(), "stays failed");
    }

    #[test]
    fn metadata_round_trips_through_amf0() {
        let m = Metadata { width: Some(640), height: Some(360), frame_rate: Some(30.0), ..Default::default() };
        let body = metadata_body(&m);
        let values = rml_amf0::deserialize(&mut std::io::Cursor::new(&body[..])).unwrap();
        assert_eq!(values[0], Amf0Value::Utf8String("onMetaData".into()));
        let Amf0Value::Object(props) = &values[1] else { panic!() };
        assert_eq!(props["width"], Amf0Value::Number(640.0));
    }

    #[test]
    fn metadata_is_read_back_from_a_script_tag() {
        let m = Metadata {
            width: Some(640),
            height: Some(360),
            frame_rate: Some(30.0),
            video_codec_id: Some(7),
            audio_codec_id: Some(10),
            audio_channels: Some(2),
            ..Default::default()
        };
        assert_eq!(parse_metadata_body(&metadata_body(&m)), Some(m.clone()));
        // `@setDataFrame` prefix and an ECMA array (marker 8), as encoders write it.
        let mut body = rml_amf0::serialize(&vec![
            Amf0Value::Utf8String("@setDataFrame".into()),
            Amf0Value::Utf8String("onMetaData".into()),
        ])
        .unwrap();
        body.extend_from_slice(&[8, 0, 0, 0, 2]);
        body.extend_from_slice(&[0, 5]);
        body.extend_from_slice(b"width");
        body.extend_from_slice(&rml_amf0::serialize(&vec![Amf0Value::Number(1280.0)]).unwrap());
        body.extend_from_slice(&[0, 7]);
        body.extend_from_slice(b"encoder");
        body.extend_from_slice(&rml_amf0::serialize(&vec![Amf0Value::Utf8String("obs".into())]).unwrap());
        body.extend_from_slice(&[0, 0, 9]);
        let got = parse_metadata_body(&body).unwrap();
        assert_eq!((got.width, got.encoder.as_deref()), (Some(1280), Some("obs")));
        // Other script tags, garbage and hostile nesting are not metadata.
        let other = rml_amf0::serialize(&vec![Amf0Value::Utf8String("onCuePoint".into())]).unwrap();
        assert_eq!(parse_metadata_body(&other), None);
        assert_eq!(parse_metadata_body(&[0xFF, 0, 1]), None);
        let mut deep = vec![2, 0, 10];
        deep.extend_from_slice(b"onMetaData");
        for _ in 0..10_000 {
            deep.extend_from_slice(&[3, 0, 1, b'a']);
        }
        assert_eq!(parse_metadata_body(&deep), None);
    }
}
