//! A stream's feed: one reader of the stream's frames for all of its WebRTC viewers.
//!
//! One task per played stream reads the stream's [`FrameSource`] (the registry's frames
//! and the shared Opus audio), packetises each frame once ([`crate::packetize`]) and
//! publishes the shared [`RtpFrame`]s on a broadcast ring. It also keeps the frames since
//! the last keyframe (the "GOP", video only): a viewer that joins, falls behind or asks
//! for a keyframe (PLI) starts from there at once instead of waiting for the next one.
//!
//! Bounds: the ring holds [`RING_FRAMES`] frames (a viewer that falls further behind
//! resumes at the GOP); the GOP holds at most [`GOP_MAX_BYTES`] / [`GOP_MAX_FRAMES`]
//! (a longer GOP is dropped and viewers wait for the next keyframe). A feed whose
//! viewers have all gone stops reading after [`IDLE_STOP`]; one whose source ends
//! closes every viewer's ring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::broadcast;

use crate::engine::{FrameSource, TrackKind};
use crate::packetize::{FramePacketizer, RtpFrame};

/// Frames on a feed's broadcast ring (~8 s of 30 fps video with Opus at 50 packets/s).
pub const RING_FRAMES: usize = 640;
/// Most payload bytes kept for the current GOP.
pub const GOP_MAX_BYTES: usize = 8 << 20;
/// Most frames kept for the current GOP.
pub const GOP_MAX_FRAMES: usize = 1200;
/// A feed with no viewers stops after this long.
pub const IDLE_STOP: Duration = Duration::from_secs(5);

/// The shared state of one stream's feed.
pub struct Feed {
    stream: String,
    state: Mutex<FeedState>,
}

struct FeedState {
    /// `None` once the feed has ended (its source ended or nobody watched).
    tx: Option<broadcast::Sender<Arc<RtpFrame>>>,
    /// Video frames from the last keyframe on (empty until there is one).
    gop: Vec<Arc<RtpFrame>>,
    gop_bytes: usize,
}

/// A viewer's place on a feed: the GOP to start with, then the ring.
pub struct FeedRx {
    /// Frames to send first (the current GOP, oldest first).
    pub backlog: Vec<Arc<RtpFrame>>,
    /// Every frame after the backlog.
    pub rx: broadcast::Receiver<Arc<RtpFrame>>,
}

impl Feed {
    /// Starts the feed of `stream` reading `source` (on the current tokio runtime).
    pub fn spawn(stream: &str, source: FrameSource) -> Arc<Feed> {
        let (tx, _) = broadcast::channel(RING_FRAMES);
        let feed = Arc::new(Feed {
            stream: stream.to_string(),
            state: Mutex::new(FeedState { tx: Some(tx), gop: Vec::new(), gop_bytes: 0 }),
        });
        tokio::spawn(feed.clone().run(source));
        feed
    }

    /// The stream this feed reads.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Whether the feed still runs (a new viewer of an ended one needs a new feed).
    pub fn is_live(&self) -> bool {
        self.state.lock().tx.is_some()
    }

    /// A new viewer's place: the current GOP and the ring from just after it. `None`
    /// when the feed has ended.
    pub fn subscribe(&self) -> Option<FeedRx> {
        let st = self.state.lock();
        let rx = st.tx.as_ref()?.subscribe();
        Some(FeedRx { backlog: st.gop.clone(), rx })
    }

    /// The current GOP (a viewer re-starting at the last keyframe).
    pub fn gop(&self) -> Vec<Arc<RtpFrame>> {
        self.state.lock().gop.clone()
    }

    async fn run(self: Arc<Self>, mut source: FrameSource) {
        let mut packetizer = FramePacketizer::new();
        let mut idle_since: Option<Instant> = None;
        while let Some(frame) = source.next().await {
            let made = match packetizer.push(frame) {
                Ok(Some(f)) => Arc::new(f),
                Ok(None) => continue,
                Err(e) => {
                    tracing::debug!(stream = %self.stream, error = %e, "unusable video tag for WebRTC viewers");
                    continue;
                }
            };
            let mut st = self.state.lock();
            let Some(tx) = st.tx.as_ref() else { return };
            if tx.receiver_count() == 0 {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= IDLE_STOP {
                    // Nobody watched for a while: stop reading; the next viewer starts a
                    // new feed (`is_live` is false from here on).
                    st.tx = None;
                    st.gop = Vec::new();
                    return;
                }
            } else {
                idle_since = None;
            }
            let _ = tx.send(made.clone());
            if made.kind == TrackKind::Video {
                st.keep(made);
            }
        }
        let mut st = self.state.lock();
        st.tx = None;
        st.gop = Vec::new();
    }
}

impl FeedState {
    /// Keeps a video frame in the GOP: a keyframe starts it over, a GOP past its bounds
    /// is dropped until the next keyframe.
    fn keep(&mut self, frame: Arc<RtpFrame>) {
        if frame.keyframe {
            self.gop.clear();
            self.gop_bytes = 0;
        } else if self.gop.is_empty() {
            return;
        }
        self.gop_bytes += frame.bytes();
        if self.gop_bytes > GOP_MAX_BYTES || self.gop.len() >= GOP_MAX_FRAMES {
            self.gop.clear();
            self.gop_bytes = 0;
            return;
        }
        self.gop.push(frame);
    }
}
