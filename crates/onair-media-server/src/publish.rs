//! A live publish of any ingest protocol (RTMP today, WHIP next): the checks before a
//! name is taken (valid name, push signature, one publisher per name), frames into the
//! stream registry, and the lifecycle around it — "published" once the first frame
//! made codecs and size known, "unpublished" with the streaming service's reason code
//! at the end. Each protocol only translates its wire into [`LivePublish::ingest`].

use std::sync::Arc;

use bytes::Bytes;
use onair_media::flv::FlvError;
use onair_media::frame::TrackKind;
use onair_media::rtmp::{Metadata, StreamKey};

use crate::registry::{HouseKind, PublishError, Publisher, Stream};
use crate::{MediaService, valid_stream_name};

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
pub enum PublishRefused {
    /// The name is not 1-128 of `A-Z a-z 0-9 - _ .`.
    #[error("invalid stream name")]
    BadName,
    /// Missing, wrong or expired `txSecret`/`txTime`.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// Someone already publishes this name.
    #[error(transparent)]
    InUse(#[from] PublishError),
}

/// The streaming service's reasons a publish ended (stream callback `errcode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The publisher stopped or closed the connection (1).
    Closed,
    /// A protocol error or unsupported media (6).
    ProtocolError,
    /// Nothing arrived for the idle timeout (8).
    NoData,
}

impl EndReason {
    fn code(self) -> u32 {
        match self {
            EndReason::Closed => 1,
            EndReason::ProtocolError => 6,
            EndReason::NoData => 8,
        }
    }
}

/// A stream being published.
pub struct LivePublish {
    svc: Arc<MediaService>,
    publisher: Publisher,
    announced: bool,
    /// A house slate: not reported to the room layer or the backend.
    silent: bool,
}

impl MediaService {
    /// Checks `key` (name, signature when `[rtmp] auth` is on) and takes the name.
    pub fn begin_publish(self: &Arc<Self>, key: &StreamKey, client_ip: String) -> Result<LivePublish, PublishRefused> {
        if !valid_stream_name(&key.name) {
            return Err(PublishRefused::BadName);
        }
        self.check_push(key).map_err(PublishRefused::BadSignature)?;
        let house = self.house_kind(key);
        // The house token never leaves the process (callbacks carry `stream_param`).
        let param = if house.is_some() {
            key.query.split('&').filter(|p| !p.starts_with("onair_house=")).collect::<Vec<_>>().join("&")
        } else {
            key.query.clone()
        };
        let publisher = self.registry.publish_house(&key.name, client_ip, param, house)?;
        let silent = house == Some(HouseKind::Slate);
        Ok(LivePublish { svc: self.clone(), publisher, announced: false, silent })
    }

    /// The house kind a push URL claims, if it carries this process's house token.
    fn house_kind(&self, key: &StreamKey) -> Option<HouseKind> {
        if key.param("onair_house") != Some(self.house_token.as_str()) {
            return None;
        }
        Some(if key.param("onair_kind") == Some("slate") { HouseKind::Slate } else { HouseKind::Vod })
    }

    /// Before a publish takes `key`'s name: when a house publisher of a lower rank
    /// holds it (a slate, or a file for a real push) and this publish is authorised,
    /// the house publisher is told to yield and the name awaited (at most 5 s). A
    /// publish that is not authorised changes nothing: it is refused as usual after.
    pub async fn preempt_house(&self, key: &StreamKey) {
        if !valid_stream_name(&key.name) || self.check_push(key).is_err() {
            return;
        }
        // A real publish outranks every house kind.
        let rank = self.house_kind(key).map_or(2, |k| k as u8);
        let token = {
            let house = self.house.lock();
            match house.get(&key.name) {
                Some((kind, token, _)) if (*kind as u8) < rank => token.clone(),
                _ => return,
            }
        };
        tracing::info!(stream = %key.name, "a publish takes over from the house publisher");
        token.cancel();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while tokio::time::Instant::now() < deadline {
            if self.registry.get(&key.name).is_none_or(|s| s.info.house.is_none()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl LivePublish {
    /// The stream.
    pub fn stream(&self) -> &Arc<Stream> {
        self.publisher.stream()
    }

    /// One audio or video message (an FLV tag body) at `timestamp` ms. An error means
    /// media this server does not take: end the publish with
    /// [`EndReason::ProtocolError`].
    pub fn ingest(&mut self, kind: TrackKind, timestamp: u32, body: Bytes) -> Result<(), FlvError> {
        self.publisher.ingest(kind, timestamp, body)?;
        if !self.announced {
            self.announced = true;
            if !self.silent {
                self.svc.hooks.published(self.publisher.stream());
            }
        }
        Ok(())
    }

    /// `@setDataFrame` / `onMetaData` of the publisher.
    pub fn set_metadata(&mut self, meta: Metadata) {
        self.publisher.set_metadata(meta);
    }

    /// Ends the publish: the name is free again and, if it ever went live, the
    /// lifecycle and callback say why.
    pub fn finish(self, reason: EndReason, msg: &str) {
        let stream = self.publisher.stream().clone();
        tracing::info!(stream = %stream.name, reason = msg, "stream ended");
        drop(self.publisher);
        if self.announced && !self.silent {
            self.svc.hooks.unpublished(&stream, reason.code(), msg);
        }
    }
}
