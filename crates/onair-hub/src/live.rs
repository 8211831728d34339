//! The live state of rooms: API and stream events drive it through one function,
//! which stores the change, mirrors it into the room's group attributes and pushes
//! a `state` event (system events are never cut by frequency control).

use std::sync::Arc;

use onair_core::event::RoomEvent;
use onair_core::live::{self, ChangeReason, LiveState};
use onair_core::{Code, Rejection};
use serde_json::{Value, json};

use onair_media::lifecycle::{StreamLifecycle, StreamObserver};

use crate::{Hub, Room, internal};
use onair_shell::now_ms;

/// Attribute keys mirroring the live state, so clients that only read group
/// attributes (the cloud SDKs) see it too.
pub const ATTR_STATE: &str = "onair.state";
/// Attribute key mirroring the scheduled start (Unix seconds).
pub const ATTR_SCHEDULED: &str = "onair.scheduledAt";

/// The hub as the media service's [`StreamObserver`]: events are queued in order
/// and applied by one task, so a media task never waits for the database.
pub struct HubObserver {
    queue: tokio::sync::mpsc::Sender<(String, StreamLifecycle)>,
}

/// Stream events waiting for the hub; beyond this many the newest are dropped
/// (and logged): the media path must never block on the room layer.
const OBSERVER_QUEUE: usize = 1024;

impl HubObserver {
    /// Starts the task that applies stream events to rooms.
    pub fn start(
        hub: Arc<Hub>,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Arc<HubObserver> {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<(String, StreamLifecycle)>(OBSERVER_QUEUE);
        tasks.spawn(async move {
            loop {
                tokio::select! {
                    next = rx.recv() => match next {
                        Some((stream, event)) => hub.on_stream(&stream, event).await,
                        None => break,
                    },
                    _ = shutdown.cancelled() => break,
                }
            }
        });
        Arc::new(HubObserver { queue })
    }
}

impl StreamObserver for HubObserver {
    fn on_stream(&self, stream: &str, event: StreamLifecycle) {
        if self.queue.try_send((stream.to_owned(), event)).is_err() {
            tracing::warn!(stream, "stream event dropped: the room layer is behind");
            metrics::counter!("onair_stream_events_dropped_total").increment(1);
        }
    }
}

impl Hub {
    /// Moves a room to `to`, or explains why it cannot.
    pub async fn change_state(
        &self,
        room: &Arc<Room>,
        to: LiveState,
        reason: ChangeReason,
    ) -> Result<Value, Rejection> {
        let _w = room.profile_write.lock().await;
        let mut next = room.profile();
        let from = LiveState::parse(&next.state).unwrap_or(LiveState::Upcoming);
        from.transition(to)?;
        let now = now_ms();
        next.state = to.as_str().to_owned();
        next.state_changed_at = now;
        next.attrs.insert(ATTR_STATE.into(), to.as_str().into());
        next.info_seq += 1;
        next.info_changed_at = now;
        self.store.update_room(&next).await.map_err(internal)?;
        let scheduled_at = next.scheduled_at / 1000;
        let attrs = next.attrs.clone();
        *room.profile.lock() = next;
        self.changed(&room.id, crate::cluster::Part::Profile);
        drop(_w);
        metrics::counter!("onair_state_changes_total", "to" => to.as_str()).increment(1);
        room.push_event(RoomEvent::State { state: to, previous: from, scheduled_at, at: now, reason });
        room.push_event(RoomEvent::Attrs { attrs });
        tracing::info!(room = %room.id, from = from.as_str(), to = to.as_str(), ?reason, "live state changed");
        Ok(serde_json::to_value(room.view()).unwrap_or_default())
    }

    /// `POST /rooms/{id}/state` and friends.
    pub async fn set_state(&self, room_id: &str, to: &str) -> Result<Value, Rejection> {
        let to = LiveState::parse(to)?;
        let room = self.get(room_id)?;
        let view = self.change_state(&room, to, ChangeReason::Api).await?;
        if to == LiveState::Ended {
            self.replay_if_ready(&room).await;
        }
        Ok(view)
    }

    /// Announces (or clears, with 0) the scheduled start, Unix seconds.
    pub async fn schedule(&self, room_id: &str, at_secs: u64) -> Result<Value, Rejection> {
        let room = self.get(room_id)?;
        if at_secs > 0 && at_secs.saturating_mul(1000) < now_ms().saturating_sub(60_000) {
            return Err(Rejection::new(Code::InvalidParam, "scheduledAt is in the past"));
        }
        let _w = room.profile_write.lock().await;
        let mut next = room.profile();
        if next.state != LiveState::Upcoming.as_str() {
            return Err(Rejection::new(
                Code::InvalidTransition,
                format!("only an upcoming room can be scheduled; this one is '{}'", next.state),
            ));
        }
        next.scheduled_at = at_secs.saturating_mul(1000);
        if at_secs == 0 {
            next.attrs.remove(ATTR_SCHEDULED);
        } else {
            next.attrs.insert(ATTR_SCHEDULED.into(), at_secs.to_string());
        }
        next.info_seq += 1;
        next.info_changed_at = now_ms();
        self.store.update_room(&next).await.map_err(internal)?;
        let attrs = next.attrs.clone();
        *room.profile.lock() = next;
        self.changed(&room.id, crate::cluster::Part::Profile);
        drop(_w);
        let state = LiveState::Upcoming;
        room.push_event(RoomEvent::State {
            state,
            previous: state,
            scheduled_at: at_secs,
            at: now_ms(),
            reason: ChangeReason::Api,
        });
        room.push_event(RoomEvent::Attrs { attrs });
        Ok(serde_json::to_value(room.view()).unwrap_or_default())
    }

    /// Sets a room's stream name (the anchor pushes to `live/<stream>`).
    pub async fn set_stream(&self, room_id: &str, stream: &str) -> Result<Value, Rejection> {
        if !live::is_valid_stream_name(stream) {
            return Err(Rejection::new(Code::InvalidParam, "stream must be 1..=64 characters of A-Z a-z 0-9 _ -"));
        }
        if self.room_for_stream(stream).is_some_and(|other| other != room_id) {
            return Err(Rejection::new(Code::Conflict, format!("stream '{stream}' belongs to another room")));
        }
        // Co-host streams (`{room stream}-cohost-{user}`) are named and signed by the
        // server for one guest of one room; a room renamed onto one would take that
        // guest's stream (and its push URL).
        if stream.contains(crate::business::COHOST_MARK) {
            return Err(Rejection::new(
                Code::Conflict,
                format!("stream names containing '{}' are reserved for co-hosts", crate::business::COHOST_MARK),
            ));
        }
        let room = self.get(room_id)?;
        let _w = room.profile_write.lock().await;
        let mut next = room.profile();
        let old = std::mem::replace(&mut next.stream, stream.to_owned());
        self.store.update_room(&next).await.map_err(internal)?;
        *room.profile.lock() = next;
        self.chat_overlay_moved(&room, &old, stream);
        self.changed(&room.id, crate::cluster::Part::Profile);
        Ok(serde_json::to_value(room.view()).unwrap_or_default())
    }

    /// The room whose anchor stream is `stream`.
    pub fn room_for_stream(&self, stream: &str) -> Option<String> {
        self.rooms.read().values().find(|r| r.profile.lock().stream == stream).map(|r| r.id.clone())
    }

    /// A stream event from the media service: moves the live state and tells the room.
    pub async fn on_stream(&self, stream: &str, event: StreamLifecycle) {
        let guest_live = match &event {
            StreamLifecycle::Published { .. } => Some(true),
            StreamLifecycle::Unpublished => Some(false),
            StreamLifecycle::RecordingReady { .. } => None,
        };
        if let Some(live) = guest_live
            && self.cohost_stream_event(stream, live)
        {
            return;
        }
        let Some(room) = self.room_for_stream(stream).and_then(|id| self.get(&id).ok()) else {
            tracing::debug!(stream, "stream event for a stream no room uses");
            return;
        };
        let current = LiveState::parse(&room.profile().state).unwrap_or(LiveState::Upcoming);
        let (phase, extra, target) = match &event {
            StreamLifecycle::Published { info } => ("published", info.clone(), live::on_publish(current)),
            StreamLifecycle::Unpublished => ("unpublished", json!({}), live::on_unpublish(current)),
            StreamLifecycle::RecordingReady { url } => {
                self.set_replay_url(&room, url).await;
                ("recording", json!({"url": url}), live::on_recording(current))
            }
        };
        let mut payload = json!({"phase": phase, "stream": stream});
        if let (Value::Object(map), Value::Object(more)) = (&mut payload, extra) {
            map.extend(more);
        }
        room.push_event(RoomEvent::Stream(payload));
        if let Some(to) = target
            && let Err(r) = self.change_state(&room, to, ChangeReason::Stream).await
        {
            tracing::warn!(room = %room.id, error = %r, "stream event could not move the live state");
        }
    }

    async fn set_replay_url(&self, room: &Arc<Room>, url: &str) {
        let _w = room.profile_write.lock().await;
        let mut next = room.profile();
        next.replay_url = url.to_owned();
        if let Err(e) = self.store.update_room(&next).await {
            tracing::warn!(room = %room.id, error = %e, "replay URL not stored");
        }
        *room.profile.lock() = next;
        self.changed(&room.id, crate::cluster::Part::Profile);
    }

    /// An ended room with a recording goes on to `replay`.
    pub(crate) async fn replay_if_ready(&self, room: &Arc<Room>) {
        let p = room.profile();
        if p.state == LiveState::Ended.as_str()
            && !p.replay_url.is_empty()
            && let Err(r) = self.change_state(room, LiveState::Replay, ChangeReason::Stream).await
        {
            tracing::warn!(room = %room.id, error = %r, "could not move to replay");
        }
    }
}
