//! Rooms shared by several nodes: one sequencer per room, chosen by a Redis lease.
//!
//! The node holding a room's lease runs the room's core as on a single node —
//! frequency control, seqs, presence, history commit — so every rule of the core
//! holds cluster-wide without a distributed algorithm. The other nodes with members
//! in the room *mirror* it: they forward their members' messages, events and
//! presence to the sequencer, and fan each published round out to their own
//! connections (encoding the frame once per node). See `crate::bus` for the
//! channels and `docs/deploy.md` for the failure behaviour.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use onair_core::cluster::{MemberChange, NodeMembers, RemoteMembers};
use onair_core::event::{MemberBrief, RoomEvent};
use onair_core::message::{ChatMessage, Outgoing};
use onair_core::presence::RecentMember;
use onair_core::{Code, Rejection};
use parking_lot::Mutex;
use tokio::time::Instant;

pub(crate) use crate::bus::Part;
use crate::bus::{Bus, CountSnapshot, Inbound, NODE_TTL_MS, RENEW_EVERY, SETTLE, Wire, WireCtx, group_by_owner};
use crate::callbacks::Origin;
use crate::{Hub, Reply, Room, SendCtx, SendResult, Ticket, internal};
use onair_core::admission::Platform;
use onair_shell::now_ms;

/// How long a forwarded message waits for its sequencer's outcome. The sequencer
/// always answers (frequency control decides every message within seconds), so this
/// only fires when an outcome was lost; a sequencer that dies is noticed sooner, by
/// its lease moving. Generous, because a saturated node answers late, not never.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a message waits for its room to get a sequencer (it was sent nowhere).
const PARK_TIMEOUT: Duration = Duration::from_secs(8);

/// What a sender hears when its message's outcome is unknown.
const UNKNOWN_OUTCOME: &str = "no outcome from the room's sequencer (it moved or did not answer): the message may \
     have been delivered; resend it with the same Random and a delivered one is recognised, not repeated";

/// Recent members a sequencer reports to the other nodes (the member lists' size).
const RECENT_REPORTED: usize = 100;

/// Which node numbers a room's messages.
#[derive(Debug, Clone)]
pub(crate) enum Owner {
    /// This node.
    Local,
    /// Another node.
    Remote(Arc<str>),
    /// This node took the lease and waits until a previous holder surely stopped.
    Taking(Instant),
    /// Not known yet (or the lease was lost): work waits in the room's parking.
    Unknown,
}

/// A forwarded message's reply route, deadline, and the sequencer it went to.
type Forwarded = (Reply, Instant, Arc<str>);

/// This node's side of the cluster, shared by its rooms.
pub struct Link {
    bus: Arc<Bus>,
    store: onair_store::Store,
    resume_buffer: usize,
    /// Forwarded messages waiting for their outcome: ticket → reply, deadline and
    /// the sequencer it went to.
    pending: Mutex<HashMap<u64, Forwarded>>,
    next_ticket: AtomicU64,
}

impl Link {
    /// Wraps the bus.
    pub fn new(bus: Arc<Bus>, store: onair_store::Store, resume_buffer: usize) -> Arc<Link> {
        Arc::new(Link {
            bus,
            store,
            resume_buffer,
            pending: Mutex::new(HashMap::new()),
            next_ticket: AtomicU64::new(1),
        })
    }
}

/// Work for a room whose sequencer is not known yet.
#[derive(Default)]
struct Parked {
    /// Messages with the time they were parked.
    submits: Vec<(Ticket, Outgoing, Instant)>,
    events: Vec<RoomEvent>,
    likes: Vec<(String, u64)>,
}

/// A room's cluster state.
pub(crate) struct RoomCluster {
    link: Arc<Link>,
    /// Rounds from the sequencer not yet pushed to this node's members.
    pending: Mutex<(Vec<Arc<ChatMessage>>, Vec<RoomEvent>)>,
    /// Members on other nodes (meaningful while this node sequences the room).
    remote: Mutex<RemoteMembers>,
    parked: Mutex<Parked>,
    /// Cluster-wide count and recent members as the sequencer last reported.
    pub(crate) online: AtomicU64,
    pub(crate) recent: Mutex<Vec<RecentMember>>,
    /// The history here is current (subscribed, or sequencing).
    mirror_ready: AtomicBool,
    /// The last node seen sequencing the room (a takeover from another node waits).
    last_owner: Mutex<Option<Arc<str>>>,
    /// A heartbeat with members went to the sequencer (one with zeros follows the
    /// last member's leaving).
    beating: AtomicBool,
    /// What the last count report said, and when.
    last_count: Mutex<(u64, u64, Option<Instant>)>,
}

fn ctx_to_wire(ctx: &SendCtx) -> WireCtx {
    WireCtx {
        operator: ctx.operator.clone(),
        platform: ctx.origin.platform.as_str().to_owned(),
        rest_api: ctx.origin.platform == Platform::RestApi,
        client_ip: ctx.origin.client_ip.clone(),
        privileged: ctx.privileged,
        forbid_after: ctx.forbid_after,
        system: ctx.system,
    }
}

fn ctx_from_wire(w: WireCtx) -> SendCtx {
    SendCtx {
        operator: w.operator,
        origin: Origin {
            platform: if w.rest_api { Platform::RestApi } else { Platform::Client(w.platform) },
            client_ip: w.client_ip,
        },
        privileged: w.privileged,
        forbid_before: true,
        forbid_after: w.forbid_after,
        system: w.system,
    }
}

fn bus_down() -> Rejection {
    Rejection::new(Code::Internal, "the cluster bus is unavailable; retry in a few seconds")
}

impl RoomCluster {
    pub(crate) fn new(link: Arc<Link>) -> RoomCluster {
        RoomCluster {
            link,
            pending: Mutex::new((Vec::new(), Vec::new())),
            remote: Mutex::new(RemoteMembers::new()),
            parked: Mutex::new(Parked::default()),
            online: AtomicU64::new(0),
            recent: Mutex::new(Vec::new()),
            mirror_ready: AtomicBool::new(false),
            last_owner: Mutex::new(None),
            beating: AtomicBool::new(false),
            last_count: Mutex::new((0, 0, None)),
        }
    }

    fn bus(&self) -> &Arc<Bus> {
        &self.link.bus
    }

    /// Sends a message to the sequencer, parks it, or gives it back for this node's core.
    pub(crate) fn route_submit(
        &self,
        room: &Room,
        ticket: Ticket,
        msg: Outgoing,
    ) -> Result<Option<(Ticket, Outgoing)>, Rejection> {
        let owner = room.owner.lock().clone();
        match owner {
            Owner::Local => Ok(Some((ticket, msg))),
            Owner::Remote(node) => {
                if !self.bus().connected() {
                    return Err(bus_down());
                }
                let number = self.link.next_ticket.fetch_add(1, Ordering::Relaxed);
                let ctx = ctx_to_wire(&ticket.ctx);
                self.link.pending.lock().insert(number, (ticket.reply, Instant::now() + FORWARD_TIMEOUT, node.clone()));
                self.bus().to_node(
                    &node,
                    &Wire::Submit {
                        room: room.id.clone(),
                        from: self.bus().node().to_string(),
                        ticket: number,
                        msg,
                        ctx,
                    },
                );
                Ok(None)
            }
            Owner::Unknown if !self.bus().connected() => Err(bus_down()),
            Owner::Taking(_) | Owner::Unknown => {
                self.parked.lock().submits.push((ticket, msg, Instant::now()));
                self.bus().wake.notify_one();
                Ok(None)
            }
        }
    }

    /// Sends an event to the sequencer, parks it, or gives it back for this node's core.
    pub(crate) fn route_event(&self, room: &Room, event: RoomEvent) -> Option<RoomEvent> {
        let owner = room.owner.lock().clone();
        match owner {
            Owner::Local => Some(event),
            Owner::Remote(node) => {
                self.bus().to_node(&node, &Wire::Event { room: room.id.clone(), event });
                None
            }
            Owner::Taking(_) | Owner::Unknown => {
                self.parked.lock().events.push(event);
                self.bus().wake.notify_one();
                None
            }
        }
    }

    /// Likes for the sequencer's exact total; `true` when this node counts them itself.
    pub(crate) fn route_likes(&self, room: &Room, liker: &str, count: u64) -> bool {
        let owner = room.owner.lock().clone();
        match owner {
            Owner::Local => true,
            Owner::Remote(node) => {
                self.bus().to_node(&node, &Wire::Likes { room: room.id.clone(), liker: liker.to_owned(), count });
                false
            }
            Owner::Taking(_) | Owner::Unknown => {
                self.parked.lock().likes.push((liker.to_owned(), count));
                false
            }
        }
    }

    /// Gift statistics for the sequencer (the node that keeps the room's statistics).
    pub(crate) fn route_gift_stats(&self, room: &Room, count: u64, coins: u64) {
        if let Owner::Remote(node) = room.owner.lock().clone() {
            self.bus().to_node(&node, &Wire::Gifts { room: room.id.clone(), count, coins });
        }
    }

    /// A connection joined here: logged-in members are reported to the sequencer at
    /// once (names in enter events and member lists); anonymous viewers are counted
    /// by the next heartbeat.
    pub(crate) fn joined(&self, room: &Room, member: Option<MemberBrief>) {
        match room.owner.lock().clone() {
            Owner::Remote(node) if member.is_some() => self
                .bus()
                .to_node(&node, &Wire::Join { room: room.id.clone(), from: self.bus().node().to_string(), member }),
            Owner::Unknown => self.bus().wake.notify_one(),
            _ => {}
        }
    }

    pub(crate) fn left(&self, room: &Room, user: Option<String>) {
        if user.is_none() {
            return; // counted by the next heartbeat
        }
        if let Owner::Remote(node) = room.owner.lock().clone() {
            self.bus()
                .to_node(&node, &Wire::Leave { room: room.id.clone(), from: self.bus().node().to_string(), user });
        }
    }

    /// The sequencer's round, for the other nodes.
    pub(crate) fn publish_round(&self, room: &Room, delivered: &[Arc<ChatMessage>], events: &[RoomEvent]) {
        let online = room.chat.lock().online();
        let membership = events.iter().any(|e| matches!(e, RoomEvent::Enter { .. } | RoomEvent::Quit { .. }));
        let recent = membership.then(|| room.chat.lock().recent_members(RECENT_REPORTED));
        self.bus().to_room(
            &room.id,
            &Wire::Round {
                room: room.id.clone(),
                from: self.bus().node().to_string(),
                online,
                recent,
                delivered: delivered.to_vec(),
                events: events.to_vec(),
            },
        );
    }

    /// This node's full member list of a room, to the room's sequencer.
    fn send_members(&self, room: &Room, sequencer: &str) {
        let members = Self::local_members(room);
        self.bus()
            .to_node(sequencer, &Wire::Members { room: room.id.clone(), from: self.bus().node().to_string(), members });
    }

    fn local_members(room: &Room) -> NodeMembers {
        let mut list = NodeMembers::default();
        for member in room.members.lock().values() {
            match &member.user {
                None => list.anonymous += 1,
                Some(u) => list.users.push(MemberBrief {
                    user_id: u.clone(),
                    nick: String::new(),
                    avatar: String::new(),
                    level: 0,
                }),
            }
        }
        // Briefs with profiles come from the core's presence where it has them.
        let recent = room.chat.lock().recent_members(usize::MAX);
        let briefs: HashMap<&str, &MemberBrief> = recent.iter().map(|m| (m.brief.user_id.as_str(), &m.brief)).collect();
        for b in &mut list.users {
            if let Some(full) = briefs.get(b.user_id.as_str()) {
                *b = (*full).clone();
            }
        }
        list
    }
}

impl RoomCluster {
    /// Whether rounds from the sequencer wait for this node's next delivery round.
    pub(crate) fn has_pending(&self) -> bool {
        let pending = self.pending.lock();
        !pending.0.is_empty() || !pending.1.is_empty()
    }

    /// This node's delivery round of a room it mirrors: stages everything the
    /// sequencer published since the last one for the members here.
    pub(crate) fn flush_mirror(&self, room: &Room) {
        let (msgs, events) = std::mem::take(&mut *self.pending.lock());
        let kicked: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                RoomEvent::Kicked { user_id, .. } => Some(user_id.clone()),
                _ => None,
            })
            .collect();
        room.stage(msgs, events);
        // A kicked user gets the frame that says so (taking them out writes them
        // what is staged); now out.
        for user in kicked {
            room.drop_user_connections(&user);
        }
    }
}

impl Room {
    /// Makes the history current before a member joins a room this node does not
    /// sequence: subscribe to its rounds, then read what the store holds (rounds that
    /// arrive meanwhile wait for the delivery lock the caller holds, and the mirror
    /// skips what it has).
    pub(super) async fn sync_mirror(&self, cl: &RoomCluster) -> Result<(), Rejection> {
        if self.sequencing() {
            return Ok(());
        }
        // What the members here have not been sent yet goes out first: the joiner's
        // history already holds it.
        cl.flush_mirror(self);
        if cl.mirror_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        cl.bus().subscribe_room(&self.id).await;
        let restored = cl.link.store.latest_messages(&self.id, cl.link.resume_buffer).await.map_err(internal)?;
        self.chat.lock().reset_history(restored);
        cl.mirror_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn apply_changes(&self, changes: Vec<MemberChange>) {
        if changes.is_empty() {
            return;
        }
        let now = now_ms();
        let mut chat = self.chat.lock();
        for change in changes {
            match change {
                MemberChange::Join(b) => {
                    chat.join(b, None, now);
                }
                MemberChange::Leave(u) => chat.leave(u.as_deref()),
            }
        }
        drop(chat);
        self.wake.notify_one();
    }
}

impl Hub {
    /// Cluster health for `/healthz`: node, bus state, rooms sequenced here.
    pub fn cluster_health(&self) -> Option<serde_json::Value> {
        let link = self.link.as_ref()?;
        let rooms = self.rooms.read();
        let sequencing = rooms.values().filter(|r| r.sequencing()).count();
        let (ops, failures) = link.bus.ops();
        Some(serde_json::json!({
            "node": &**link.bus.node(),
            "bus": if link.bus.healthy() { "ok" } else { "degraded" },
            "sequencing": sequencing,
            "rooms": rooms.len(),
            "redisOps": ops,
            "redisFailures": failures,
        }))
    }

    /// Tells the other nodes that a room's stored `part` changed.
    pub(crate) fn changed(&self, room: &str, part: Part) {
        if let Some(link) = &self.link {
            link.bus.to_all(&Wire::Changed { room: room.to_owned(), from: link.bus.node().to_string(), part });
        }
    }

    /// Runs the node's side of the cluster: inbound messages and the lease loop.
    pub fn start_cluster(self: &Arc<Self>, mut inbound: tokio::sync::mpsc::UnboundedReceiver<Inbound>) {
        let Some(link) = self.link.clone() else { return };
        let hub = self.clone();
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = inbound.recv() => m,
                    _ = stop.cancelled() => None,
                };
                let Some(msg) = msg else { break };
                hub.on_inbound(msg).await;
            }
        });
        let hub = self.clone();
        let stop = self.shutdown.clone();
        self.tasks.spawn(async move {
            loop {
                hub.cluster_round(&link).await;
                tokio::select! {
                    _ = tokio::time::sleep(RENEW_EVERY) => {}
                    _ = link.bus.wake.notified() => {}
                    _ = stop.cancelled() => break,
                }
            }
            // Give the leases back so other nodes take over without waiting.
            let owned: Vec<String> = hub.list().into_iter().filter(|r| r.sequencing()).map(|r| r.id.clone()).collect();
            link.bus.release(&owned).await;
        });
    }

    async fn on_inbound(self: &Arc<Self>, msg: Inbound) {
        let wire = match msg {
            Inbound::Reconnected => {
                // Reports may have been lost while disconnected: send full lists.
                for room in self.list() {
                    if let (Some(cl), Owner::Remote(node)) = (&room.cl, room.owner.lock().clone()) {
                        cl.send_members(&room, &node);
                    }
                }
                if let Some(link) = &self.link {
                    link.bus.wake.notify_one();
                }
                // Changes announced while disconnected were missed: reload them all.
                let hub = self.clone();
                self.tasks.spawn(async move { hub.resync_all().await });
                return;
            }
            Inbound::Wire(w) => *w,
        };
        let Some(link) = self.link.clone() else { return };
        let me = link.bus.node().clone();
        match wire {
            Wire::Round { room, from, online, recent, delivered, events } => {
                if *from != *me
                    && let Ok(room) = self.get(&room)
                {
                    if let (Some(cl), Some(recent)) = (&room.cl, recent) {
                        *cl.recent.lock() = recent;
                    }
                    self.apply_round(&room, delivered, events, online).await;
                }
            }
            Wire::Count { room, from, online, recent } => {
                if *from != *me
                    && let Ok(room) = self.get(&room)
                    && let Some(cl) = &room.cl
                {
                    cl.online.store(online, Ordering::Release);
                    *cl.recent.lock() = recent;
                }
            }
            Wire::Submit { room, from, ticket, msg, ctx } => {
                let reply = Reply::Remote { bus: link.bus.clone(), node: from.into(), ticket };
                match self.get(&room) {
                    Ok(room) => {
                        let ticket = Ticket { reply, ctx: Arc::new(ctx_from_wire(ctx)) };
                        if let Err(r) = room.submit(ticket, msg) {
                            // `submit` gave the ticket to nobody only on errors before routing.
                            tracing::debug!(room = %room.id, error = %r, "forwarded message refused");
                        }
                    }
                    Err(r) => reply.fail(r),
                }
            }
            Wire::Outcome { ticket, seq, time, drop_reason, error } => {
                let waiting = link.pending.lock().remove(&ticket);
                if let Some((reply, _, _)) = waiting {
                    match error {
                        None => reply.resolve(SendResult { seq, time, drop_reason }),
                        Some((code, info)) => reply.fail(Rejection::new(code, info)),
                    }
                }
            }
            Wire::Event { room, event } => {
                if let Ok(room) = self.get(&room) {
                    match event {
                        RoomEvent::Recall { seq, operator } if room.sequencing() => {
                            room.chat.lock().recall(seq, &operator);
                            room.wake.notify_one();
                        }
                        event => room.push_event(event),
                    }
                }
            }
            Wire::Likes { room, liker, count } => {
                if let Ok(room) = self.get(&room) {
                    self.count_likes(&room, &liker, count);
                }
            }
            Wire::Gifts { room, count, coins } => {
                if let Ok(room) = self.get(&room)
                    && room.sequencing()
                {
                    let mut biz = room.biz.lock();
                    biz.stats.gifts(count, coins, now_ms(), &self.business.popularity);
                    biz.stats_dirty = true;
                }
            }
            Wire::Join { room, from, member } => {
                if let Ok(room) = self.get(&room)
                    && let Some(cl) = room.cl.as_ref().filter(|_| room.sequencing())
                {
                    let change = cl.remote.lock().join(&from, member, now_ms());
                    room.apply_changes(vec![change]);
                }
            }
            Wire::Leave { room, from, user } => {
                if let Ok(room) = self.get(&room)
                    && let Some(cl) = room.cl.as_ref().filter(|_| room.sequencing())
                {
                    let change = cl.remote.lock().leave(&from, user, now_ms());
                    room.apply_changes(change.into_iter().collect());
                }
            }
            Wire::Members { room, from, members } => {
                if let Ok(room) = self.get(&room)
                    && let Some(cl) = room.cl.as_ref().filter(|_| room.sequencing())
                {
                    let changes = cl.remote.lock().replace(&from, members, now_ms());
                    room.apply_changes(changes);
                }
            }
            Wire::Heartbeat { from, rooms } => {
                for (id, anonymous, logged_in) in rooms {
                    if let Ok(room) = self.get(&id)
                        && let Some(cl) = room.cl.as_ref().filter(|_| room.sequencing())
                    {
                        let (changes, in_line) = cl.remote.lock().heard(&from, anonymous, logged_in, now_ms());
                        room.apply_changes(changes);
                        if !in_line {
                            cl.bus().to_node(&from, &Wire::SendMembers { room: id.clone() });
                        }
                    }
                }
            }
            Wire::SendMembers { room } => {
                if let Ok(room) = self.get(&room)
                    && let (Some(cl), Owner::Remote(node)) = (&room.cl, room.owner.lock().clone())
                {
                    cl.send_members(&room, &node);
                }
            }
            Wire::Changed { room, from, part } => {
                // Reloads read the database: off this task, which carries every
                // room's rounds and outcomes.
                if *from != *me {
                    let hub = self.clone();
                    self.tasks.spawn(async move { hub.reload(&room, part).await });
                }
            }
        }
    }

    /// A round from the room's sequencer: into the mirror, then to this node's members.
    async fn apply_round(
        &self,
        room: &Arc<Room>,
        delivered: Vec<Arc<ChatMessage>>,
        events: Vec<RoomEvent>,
        online: u64,
    ) {
        let Some(cl) = &room.cl else { return };
        let _delivery = room.delivery.lock().await;
        if room.sequencing() || !cl.mirror_ready.load(Ordering::Acquire) {
            return;
        }
        cl.online.store(online, Ordering::Release);
        let next = room.chat.lock().next_seq();
        let mut fresh: Vec<Arc<ChatMessage>> = Vec::with_capacity(delivered.len());
        if let Some(first) = delivered.first().filter(|m| m.seq > next) {
            // A round went missing on the way (pub/sub is at-most-once): the store
            // has everything the sequencer published.
            match self.store.latest_messages(&room.id, self.chat_cfg.resume_buffer).await {
                Ok(stored) => fresh.extend(stored.into_iter().filter(|m| m.seq >= next && m.seq < first.seq)),
                Err(e) => tracing::warn!(room = %room.id, error = %e, "could not fill a gap in the room's seqs"),
            }
            metrics::counter!("onair_cluster_gaps_filled_total").increment(1);
        }
        fresh.extend(delivered.into_iter().filter(|m| m.seq >= next));
        room.chat.lock().mirror(&fresh);
        for event in &events {
            match event {
                RoomEvent::Recall { seq, .. } => room.chat.lock().forget(*seq),
                RoomEvent::SlowMode { seconds } => room.limits.lock().set_slow_mode(seconds * 1000),
                _ => {}
            }
        }
        if fresh.is_empty() && events.is_empty() {
            return;
        }
        // Members here get it from this node's own delivery round (the room's
        // ticker), paced by how fast they drain, as on the sequencer: rounds that
        // arrive while members are still writing the last frame merge into one.
        let mut pending = cl.pending.lock();
        pending.0.extend(fresh);
        pending.1.extend(events);
        drop(pending);
        room.wake.notify_one();
    }

    /// Reloads every room's stored state (after the bus was disconnected): rooms
    /// created or destroyed meanwhile, profiles, moderation, admins, word lists,
    /// lotteries.
    async fn resync_all(self: &Arc<Self>) {
        let stored = match self.store.list_rooms().await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(error = %e, "could not resync rooms after a bus reconnect");
                return;
            }
        };
        let ids: std::collections::HashSet<String> = stored.iter().map(|p| p.id.clone()).collect();
        for room in self.list() {
            if !ids.contains(&room.id) {
                self.close_here(&room).await;
            }
        }
        for profile in stored {
            let id = profile.id.clone();
            match self.get(&id) {
                Ok(room) => *room.profile.lock() = profile,
                Err(_) => {
                    if let Err(e) = self.install_stored(profile, None).await {
                        tracing::warn!(room = %id, error = %e, "could not load a room created elsewhere");
                    }
                    continue;
                }
            }
            for part in [Part::Moderation, Part::Admins, Part::Lottery] {
                self.reload(&id, part).await;
            }
        }
        self.reload("", Part::Filter).await;
    }

    /// Reloads what another node changed in the database.
    async fn reload(self: &Arc<Self>, id: &str, part: Part) {
        let result: Result<(), Rejection> = async {
            match part {
                // Both are settled against the store, not taken literally: reloads run
                // concurrently, so a destroy and a re-creation of the same id may be
                // handled in either order, and only the store knows which came last.
                Part::Created | Part::Destroyed => self.reconcile(id).await?,
                Part::Profile => {
                    let room = self.get(id)?;
                    if let Some(p) = self.store.room(id).await.map_err(internal)? {
                        *room.profile.lock() = p;
                    }
                }
                Part::Moderation => {
                    let room = self.get(id)?;
                    let (mutes, bans) = self.store.load_moderation(id).await.map_err(internal)?;
                    *room.moderation.lock() = onair_core::moderation::Moderation::restore(mutes, bans, now_ms());
                    room.wake.notify_one();
                }
                Part::Admins => {
                    let room = self.get(id)?;
                    let admins = self.store.room_admins(id).await.map_err(internal)?;
                    *room.admins.lock() = admins.into_iter().collect();
                }
                Part::Filter => self.reload_filters().await?,
                Part::Lottery => self.reload_lottery(&*self.get(id)?).await?,
            }
            Ok(())
        }
        .await;
        if let Err(r) = result {
            tracing::warn!(room = %id, part = ?part, error = %r.info, "could not reload a change from another node");
        }
    }

    /// Makes this node's copy of room `id` the store's: loads a room it lacks, closes
    /// one the store no longer has, and replaces an older incarnation (destroyed and
    /// created again, told apart by the creation time).
    async fn reconcile(self: &Arc<Self>, id: &str) -> Result<(), Rejection> {
        let stored = self.store.room(id).await.map_err(internal)?;
        let current = self.get(id).ok();
        match (current, stored) {
            (Some(room), None) => {
                self.close_here(&room).await;
            }
            (Some(room), Some(profile)) if room.profile.lock().created_at != profile.created_at => {
                self.close_here(&room).await;
                self.install_stored(profile, None).await.map_err(internal)?;
            }
            (None, Some(profile)) => {
                self.install_stored(profile, None).await.map_err(internal)?;
            }
            _ => {}
        }
        Ok(())
    }

    /// One pass of the lease loop: renew what this node sequences, look up the
    /// sequencer of every room it serves, take rooms nobody holds, report presence.
    async fn cluster_round(self: &Arc<Self>, link: &Arc<Link>) {
        let bus = &link.bus;
        let rooms = self.list();
        self.expire_waiting(link, &rooms);
        let mut owned = Vec::new();
        let mut lookup = Vec::new();
        let mut unserved = Vec::new();
        for room in &rooms {
            let Some(cl) = &room.cl else { continue };
            let serving = !room.members.lock().is_empty();
            let parked = {
                let p = cl.parked.lock();
                !p.submits.is_empty() || !p.events.is_empty() || !p.likes.is_empty()
            };
            let owner = room.owner.lock().clone();
            match owner {
                Owner::Local => owned.push(room.clone()),
                Owner::Taking(at) if Instant::now() >= at => self.finish_takeover(room).await,
                Owner::Taking(_) => {}
                _ if serving || parked => lookup.push(room.clone()),
                _ => {
                    unserved.push(room.clone());
                    if bus.wants_room(&room.id) {
                        let _delivery = room.delivery.lock().await;
                        if room.members.lock().is_empty() {
                            bus.unsubscribe_room(&room.id).await;
                            cl.mirror_ready.store(false, Ordering::Release);
                        }
                    }
                }
            }
        }
        // Renew. An error (Redis unreachable) keeps the rooms: nobody else can take
        // the lease either, and local members keep being served.
        let ids: Vec<String> = owned.iter().map(|r| r.id.clone()).collect();
        if let Ok(kept) = bus.renew(&ids).await {
            for (room, kept) in owned.iter().zip(kept) {
                if !kept {
                    tracing::warn!(room = %room.id, "lost the room's sequencer lease; handing over");
                    self.step_down(room).await;
                }
            }
        }
        let ids: Vec<String> = lookup.iter().map(|r| r.id.clone()).collect();
        if let Ok(owners) = bus.owners(&ids).await {
            for (room, owner) in lookup.iter().zip(owners) {
                match owner {
                    Some(node) if node == **bus.node() => self.begin_takeover(room, false),
                    Some(node) => self.follow(room, node.into()).await,
                    None => {
                        if bus.acquire(&room.id).await.unwrap_or(false) {
                            let waited = room
                                .cl
                                .as_ref()
                                .is_some_and(|cl| cl.last_owner.lock().as_ref().is_some_and(|n| **n != **bus.node()));
                            self.begin_takeover(room, waited);
                        }
                    }
                }
            }
        }
        // Rooms this node has no members in: their counts as their sequencers stored them.
        let ids: Vec<String> = unserved.iter().map(|r| r.id.clone()).collect();
        if let Ok(counts) = bus.counts(&ids).await {
            for (room, count) in unserved.iter().zip(counts) {
                if let Some(cl) = &room.cl {
                    let count = count.unwrap_or_default();
                    cl.online.store(count.online, Ordering::Release);
                    *cl.recent.lock() = count.recent;
                }
            }
        }
        // Heartbeats to each sequencer, and the sequencer's own duties.
        let mut beats = Vec::new();
        let now = now_ms();
        for room in &rooms {
            let Some(cl) = &room.cl else { continue };
            let owner = room.owner.lock().clone();
            match owner {
                Owner::Remote(node) => {
                    let (anonymous, logged_in) = {
                        let members = room.members.lock();
                        let anonymous = members.values().filter(|m| m.user.is_none()).count() as u64;
                        (anonymous, members.len() as u64 - anonymous)
                    };
                    // One last beat with zeros after the last member left.
                    let serving = anonymous + logged_in > 0;
                    if serving || cl.beating.swap(serving, Ordering::AcqRel) {
                        beats.push((node.to_string(), room.id.clone(), anonymous, logged_in));
                    }
                }
                Owner::Local => {
                    let changes = cl.remote.lock().expire(now, NODE_TTL_MS);
                    room.apply_changes(changes);
                    self.report_count(room, cl);
                }
                _ => {}
            }
        }
        for (node, rooms) in group_by_owner(beats) {
            bus.to_node(&node, &Wire::Heartbeat { from: bus.node().to_string(), rooms });
        }
    }

    /// Forwarded messages whose sequencer never answered (their outcome is unknown),
    /// and messages parked too long waiting for a sequencer (not sent anywhere).
    fn expire_waiting(&self, link: &Link, rooms: &[Arc<Room>]) {
        let now = Instant::now();
        let unanswered: Vec<Reply> = {
            let mut pending = link.pending.lock();
            let late: Vec<u64> = pending.iter().filter(|(_, (_, at, _))| *at <= now).map(|(t, _)| *t).collect();
            late.into_iter().filter_map(|t| pending.remove(&t)).map(|(r, _, _)| r).collect()
        };
        for reply in unanswered {
            reply.fail(Rejection::new(Code::Internal, UNKNOWN_OUTCOME));
        }
        for room in rooms {
            let Some(cl) = &room.cl else { continue };
            let late: Vec<(Ticket, Outgoing, Instant)> = {
                let mut parked = cl.parked.lock();
                if !parked.submits.iter().any(|(_, _, at)| now.duration_since(*at) >= PARK_TIMEOUT) {
                    continue;
                }
                let (late, keep) =
                    parked.submits.drain(..).partition(|(_, _, at)| now.duration_since(*at) >= PARK_TIMEOUT);
                parked.submits = keep;
                late
            };
            for (ticket, _, _) in late {
                ticket.reply.fail(Rejection::new(
                    Code::Internal,
                    "no node could take this room's messages in time (cluster bus down?); not sent, retry",
                ));
            }
        }
    }

    /// The sequencer reports the cluster-wide count every second when it changed
    /// (and every 5 s anyway), so counts elsewhere are fresh in a quiet room too.
    fn report_count(&self, room: &Room, cl: &RoomCluster) {
        let (online, recent) = {
            let chat = room.chat.lock();
            (chat.online(), chat.recent_members(RECENT_REPORTED))
        };
        let stamp = recent.first().map_or(0, |m| m.joined_at) ^ recent.len() as u64;
        let mut last = cl.last_count.lock();
        let stale = last.2.is_none_or(|at| at.elapsed() >= Duration::from_secs(5));
        if (online, stamp) == (last.0, last.1) && !stale {
            return;
        }
        *last = (online, stamp, Some(Instant::now()));
        drop(last);
        cl.bus().store_count(&room.id, &CountSnapshot { online, recent: recent.clone() });
        cl.bus().to_room(
            &room.id,
            &Wire::Count { room: room.id.clone(), from: cl.bus().node().to_string(), online, recent },
        );
    }

    /// Another node sequences the room: send it what waited, and this node's members.
    async fn follow(&self, room: &Arc<Room>, node: Arc<str>) {
        let Some(cl) = &room.cl else { return };
        let changed = !matches!(&*room.owner.lock(), Owner::Remote(n) if **n == *node);
        if !changed {
            return;
        }
        {
            let _delivery = room.delivery.lock().await;
            *room.owner.lock() = Owner::Remote(node.clone());
            let previous = cl.last_owner.lock().replace(node.clone());
            if let Some(old) = previous.filter(|old| **old != *node) {
                self.abandon_forwards(&old);
            }
            if !room.members.lock().is_empty() {
                cl.bus().subscribe_room(&room.id).await;
            }
        }
        cl.send_members(room, &node);
        self.flush_parked(room).await;
    }

    /// The lease of a room moved away from `old`: messages forwarded to it will get
    /// no outcome (it died or lost the room), so their senders hear it now and retry.
    fn abandon_forwards(&self, old: &Arc<str>) {
        let Some(link) = &self.link else { return };
        let dropped: Vec<Reply> = {
            let mut pending = link.pending.lock();
            let gone: Vec<u64> = pending.iter().filter(|(_, (_, _, n))| n == old).map(|(t, _)| *t).collect();
            gone.into_iter().filter_map(|t| pending.remove(&t)).map(|(r, _, _)| r).collect()
        };
        for reply in dropped {
            reply.fail(Rejection::new(Code::Internal, UNKNOWN_OUTCOME));
        }
    }

    /// This node took the lease: after a settle period (when another node held the
    /// room before), it reads the store's last seq and starts numbering.
    fn begin_takeover(&self, room: &Arc<Room>, wait: bool) {
        let at = if wait { Instant::now() + SETTLE } else { Instant::now() };
        *room.owner.lock() = Owner::Taking(at);
        if let Some(link) = &self.link {
            link.bus.wake.notify_one();
        }
    }

    async fn finish_takeover(&self, room: &Arc<Room>) {
        let Some(cl) = &room.cl else { return };
        {
            let _delivery = room.delivery.lock().await;
            let next = match self.store.max_seq(&room.id).await {
                Ok(max) => max + 1,
                Err(e) => {
                    tracing::warn!(room = %room.id, error = %e, "takeover postponed: store unavailable");
                    return;
                }
            };
            match self.store.latest_messages(&room.id, self.chat_cfg.resume_buffer).await {
                Ok(restored) => room.chat.lock().reset_history(restored),
                Err(e) => tracing::warn!(room = %room.id, error = %e, "takeover without stored history"),
            }
            room.chat.lock().take_over(next);
            // Statistics, the like total and a running lottery's pool continue from
            // what the previous sequencer stored.
            match self.store.room_stats(&room.id).await {
                Ok(stats) => room.biz.lock().resume_counting(&self.business, stats),
                Err(e) => tracing::warn!(room = %room.id, error = %e, "takeover without stored statistics"),
            }
            if let Err(r) = self.reload_lottery(room).await {
                tracing::warn!(room = %room.id, error = %r.info, "takeover without the stored lottery");
            }
            *room.owner.lock() = Owner::Local;
            let previous = cl.last_owner.lock().replace(cl.bus().node().clone());
            if let Some(old) = previous.filter(|old| **old != **cl.bus().node()) {
                self.abandon_forwards(&old);
            }
            cl.mirror_ready.store(true, Ordering::Release);
            cl.bus().unsubscribe_room(&room.id).await;
            tracing::info!(room = %room.id, next_seq = next, "this node now sequences the room");
        }
        self.flush_parked(room).await;
        room.wake.notify_one();
    }

    /// The lease is gone: hand queued messages and events to whoever holds it next.
    async fn step_down(&self, room: &Arc<Room>) {
        let Some(cl) = &room.cl else { return };
        let _delivery = room.delivery.lock().await;
        *room.owner.lock() = Owner::Unknown;
        let (queued, events) = room.chat.lock().hand_over();
        let cuts = room.chat.lock().take_early_cuts();
        for (ticket, _) in cuts {
            ticket.reply.resolve(SendResult {
                seq: 0,
                time: now_ms() / 1000,
                drop_reason: crate::DROP_FREQUENCY.into(),
            });
        }
        {
            let mut parked = cl.parked.lock();
            parked.submits.extend(queued.into_iter().map(|(t, m)| (t, m, Instant::now())));
            parked.events.extend(events);
        }
        let changes = cl.remote.lock().clear();
        room.apply_changes(changes);
        if !room.members.lock().is_empty() {
            cl.bus().subscribe_room(&room.id).await;
        }
        cl.bus().wake.notify_one();
    }

    async fn flush_parked(&self, room: &Arc<Room>) {
        let Some(cl) = &room.cl else { return };
        let parked = std::mem::take(&mut *cl.parked.lock());
        for event in parked.events {
            room.push_event(event);
        }
        for (liker, count) in parked.likes {
            self.count_likes(room, &liker, count);
        }
        for (ticket, msg, _) in parked.submits {
            let reply_on_error = room.submit(ticket, msg);
            if let Err(r) = reply_on_error {
                tracing::debug!(room = %room.id, error = %r.info, "parked message refused");
            }
        }
    }
}
