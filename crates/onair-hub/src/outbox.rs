//! A connection's bounded outgoing queue and its slow-consumer policy.
//!
//! The room pushes one shared frame (refcounted bytes) into every member's outbox
//! and moves on: it never waits for a socket. The connection task drains the whole
//! queue, writes every frame into the socket buffer and flushes once, so a client
//! that fell a little behind catches up with one syscall.
//!
//! When the queue is full the client is behind: the oldest frame of the lowest
//! class is dropped first (presence refreshes, then Lowest … High chat), essential
//! frames (replies, profile/state events) are never dropped; a client that stays
//! full for the grace period, or overflows even the essential budget, is closed
//! with the reason "slow consumer".

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A WebSocket text frame: refcounted bytes known to be UTF-8, cloned (not copied) into
/// every member's outbox.
pub type Frame = tungstenite::Utf8Bytes;
use onair_core::message::Priority;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Essential frames (mostly send acks of ~80 bytes) a full queue still takes before
/// the client is closed: a fast sender that reads normally gets many acks per tick,
/// and they must not count as falling behind.
const ESSENTIAL_HEADROOM: usize = 1024;

/// How expendable a frame is, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FrameClass {
    /// Only refreshable numbers (online count, enter/quit); the next one supersedes it.
    Refresh,
    /// Chat whose highest priority is this.
    Chat(Priority),
    /// Replies and state-changing events: never dropped.
    Essential,
}

/// Why the server is closing a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code (4000-4999 are OnAir's).
    pub code: u16,
    /// Text for the close frame.
    pub reason: String,
}

/// Held by every copy of a room's push frame until the connection has written it
/// (or dropped it); the room counts the holders to learn how far its last frame
/// has drained before it makes the next one.
pub type DrainMark = Arc<()>;

struct Entry {
    class: FrameClass,
    frame: Frame,
    mark: Option<DrainMark>,
}

struct Inner {
    queue: VecDeque<Entry>,
    full_since: Option<Instant>,
    close: Option<CloseReason>,
    dropped: u64,
}

/// The outgoing queue of one connection.
pub struct Outbox {
    inner: Mutex<Inner>,
    notify: Notify,
    capacity: usize,
    grace: Duration,
}

/// What happened to a pushed frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Queued.
    Queued,
    /// Queued after dropping an older, less important frame; or dropped itself.
    Dropped,
    /// The connection is (now) closing; the frame was discarded.
    Closing,
}

impl Outbox {
    /// An outbox holding up to `capacity` frames before dropping.
    pub fn new(capacity: usize, grace: Duration) -> Self {
        Outbox {
            inner: Mutex::new(Inner { queue: VecDeque::new(), full_since: None, close: None, dropped: 0 }),
            notify: Notify::new(),
            capacity,
            grace,
        }
    }

    /// Queues a frame, applying the slow-consumer policy. Never blocks on I/O.
    pub fn push(&self, class: FrameClass, frame: Frame) -> Pushed {
        self.push_marked(class, frame, None)
    }

    /// Queues a room frame carrying its drain mark.
    pub fn push_marked(&self, class: FrameClass, frame: Frame, mark: Option<DrainMark>) -> Pushed {
        let result = {
            let mut inner = self.inner.lock();
            self.push_locked(&mut inner, Entry { class, frame, mark })
        };
        if result != Pushed::Closing || self.is_closing() {
            self.notify.notify_one();
        }
        result
    }

    fn push_locked(&self, inner: &mut Inner, entry: Entry) -> Pushed {
        let class = entry.class;
        if inner.close.is_some() {
            return Pushed::Closing;
        }
        if inner.queue.len() < self.capacity {
            if inner.queue.len() < self.capacity / 2 {
                inner.full_since = None;
            }
            inner.queue.push_back(entry);
            return Pushed::Queued;
        }
        let now = Instant::now();
        let since = *inner.full_since.get_or_insert(now);
        if now.duration_since(since) >= self.grace {
            return self.close_locked(inner, "slow consumer: fell behind for too long");
        }
        inner.dropped += 1;
        metrics::counter!("onair_ws_frames_dropped_total").increment(1);
        // The oldest frame of the lowest droppable class goes first.
        let victim = inner
            .queue
            .iter()
            .enumerate()
            .filter(|(_, e)| e.class != FrameClass::Essential)
            .min_by_key(|(i, e)| (e.class, *i))
            .map(|(i, e)| (i, e.class));
        match victim {
            Some((i, victim_class)) if victim_class <= class => {
                inner.queue.remove(i);
                inner.queue.push_back(entry);
            }
            _ if class != FrameClass::Essential => {} // the new frame is the least important: drop it
            _ if inner.queue.len() < self.capacity + ESSENTIAL_HEADROOM => inner.queue.push_back(entry),
            _ => return self.close_locked(inner, "slow consumer: reply queue overflow"),
        }
        Pushed::Dropped
    }

    fn close_locked(&self, inner: &mut Inner, reason: &str) -> Pushed {
        metrics::counter!("onair_ws_slow_consumer_disconnects_total").increment(1);
        inner.queue.clear();
        inner.close = Some(CloseReason { code: 4008, reason: reason.into() });
        Pushed::Closing
    }

    /// Asks the connection to close after writing what is queued.
    pub fn close(&self, code: u16, reason: &str) {
        {
            let mut inner = self.inner.lock();
            if inner.close.is_none() {
                inner.close = Some(CloseReason { code, reason: reason.into() });
            }
        }
        self.notify.notify_one();
    }

    /// Whether a close was requested.
    pub fn is_closing(&self) -> bool {
        self.inner.lock().close.is_some()
    }

    /// Waits until something is queued or a close is requested.
    pub async fn ready(&self) {
        self.notify.notified().await;
    }

    /// Takes every queued frame (and the close request, if any). The drain marks go
    /// to `marks`: the caller drops them once the frames are written.
    pub fn take(&self, into: &mut Vec<Frame>, marks: &mut Vec<DrainMark>) -> Option<CloseReason> {
        let mut inner = self.inner.lock();
        for entry in inner.queue.drain(..) {
            into.push(entry.frame);
            marks.extend(entry.mark);
        }
        inner.full_since = None;
        inner.close.clone()
    }

    /// Frames dropped so far by the slow-consumer policy.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(s: &str) -> Frame {
        Frame::from(s.to_string())
    }

    #[test]
    fn lowest_class_oldest_is_dropped_first_and_essentials_survive() {
        let ob = Outbox::new(4, Duration::from_secs(60));
        let mark = DrainMark::default();
        ob.push_marked(FrameClass::Refresh, f("marked"), Some(mark.clone()));
        let mut out = vec![];
        let mut marks = vec![];
        ob.take(&mut out, &mut marks);
        assert_eq!(Arc::strong_count(&mark), 2, "held until the writer drops it");
        drop(marks);
        assert_eq!(Arc::strong_count(&mark), 1);
        ob.push(FrameClass::Chat(Priority::Normal), f("n1"));
        ob.push(FrameClass::Refresh, f("r1"));
        ob.push(FrameClass::Essential, f("e1"));
        ob.push(FrameClass::Chat(Priority::Low), f("l1"));
        assert_eq!(ob.push(FrameClass::Chat(Priority::High), f("h1")), Pushed::Dropped);
        assert_eq!(ob.push(FrameClass::Chat(Priority::High), f("h2")), Pushed::Dropped);
        assert_eq!(ob.push(FrameClass::Refresh, f("r2")), Pushed::Dropped, "least important: itself dropped");
        out.clear();
        assert!(ob.take(&mut out, &mut vec![]).is_none());
        let got: Vec<&str> = out.iter().map(|b| b.as_str()).collect();
        assert_eq!(got, vec!["n1", "e1", "h1", "h2"]);
        assert_eq!(ob.dropped(), 3);
    }

    #[test]
    fn staying_full_past_the_grace_closes() {
        let ob = Outbox::new(2, Duration::from_millis(0));
        ob.push(FrameClass::Essential, f("a"));
        ob.push(FrameClass::Essential, f("b"));
        assert_eq!(ob.push(FrameClass::Chat(Priority::High), f("c")), Pushed::Closing);
        let mut out = vec![];
        let reason = ob.take(&mut out, &mut vec![]).expect("closing");
        assert_eq!(reason.code, 4008);
        assert!(out.is_empty());
        assert_eq!(ob.push(FrameClass::Essential, f("d")), Pushed::Closing);
    }
}
