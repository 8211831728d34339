//! The live-room business layer on top of the chat rooms: gifts and combos, likes,
//! levels, statistics and popularity, lotteries and co-hosting.
//!
//! The rules live in `onair-core` (combo merging, like aggregation, level curve,
//! decay, the lottery draw, co-host bookkeeping); this file wires them to the rooms,
//! the store and one business ticker per node. Money moves only inside a store
//! transaction; events go to the room only after it committed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use onair_core::cohost::Cohosts;
use onair_core::event::{GiftEvent, RoomEvent};
use onair_core::gifts::{self, ComboConfig, ComboEmit, ComboKey, ComboTracker, Gift};
use onair_core::level::{self, Activity, LevelWeights};
use onair_core::likes::{LikeConfig, LikeCounter};
use onair_core::live::{ChangeReason, LiveState};
use onair_core::lottery::{self, Entries, LotterySpec};
use onair_core::message::{ChatMessage, CustomElem, MsgElem, Outgoing, Priority, SenderProfile, body_text};
use onair_core::popularity::{PopularityWeights, RoomStats};
use onair_core::random::RandomSource;
use onair_core::{Code, Millis, Rejection};
use onair_media::lifecycle::MixPlan;
use onair_media::mix::Layout;
use onair_store::{GiftOrder, LotteryRecord, MoneyError};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::{Hub, Reply, Room, SendCtx, Ticket, internal};
use onair_shell::{now_ms, seed};

/// How often the business ticker runs (combo windows, like windows, lottery ends,
/// pause grace). Every rule's window is a multiple of this or much longer.
const BUSINESS_TICK: Duration = Duration::from_millis(100);
/// How often counters are written to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How often connected members' online time is credited (leaving credits the rest
/// at once). Walking a 20k-member room every second would cost more than it tells.
const CREDIT_EVERY: Duration = Duration::from_secs(15);
/// Activity entries untouched this long (and saved) leave the memory cache.
const ACTIVITY_IDLE_MS: u64 = 10 * 60_000;

/// Business tuning (`[gifts]`, `[likes]`, `[levels]`, `[popularity]`, `[live]`).
#[derive(Debug, Clone, Copy)]
pub struct BusinessConfig {
    /// Combo merging.
    pub combo: ComboConfig,
    /// Like aggregation and per-user cap.
    pub likes: LikeConfig,
    /// Level weights.
    pub levels: LevelWeights,
    /// Popularity weights.
    pub popularity: PopularityWeights,
    /// A paused room ends after this long without its stream.
    pub pause_grace_ms: u64,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            combo: ComboConfig::default(),
            likes: LikeConfig::default(),
            levels: LevelWeights::default(),
            popularity: PopularityWeights::default(),
            pause_grace_ms: 5 * 60_000,
        }
    }
}

/// Who sent which gift to whom, for the events of a combo.
#[derive(Debug, Clone)]
struct GiftContext {
    sender: SenderProfile,
    gift: Gift,
    anchor: String,
}

/// A lottery collecting entrants.
#[derive(Debug)]
pub(crate) struct RunningLottery {
    record: LotteryRecord,
    entries: Entries,
    dirty: bool,
}

impl RunningLottery {
    /// A stored running lottery with the pool it had.
    fn restore(record: LotteryRecord) -> Self {
        let spec = LotterySpec {
            keyword: record.keyword.clone(),
            duration_secs: 1,
            winners: record.winner_count,
            min_level: record.min_level,
        };
        let entries = Entries::restore(&spec, record.ends_at, record.pool.clone());
        RunningLottery { record, entries, dirty: false }
    }
}

/// The business state of one room, behind one short lock.
pub(crate) struct RoomBiz {
    combos: ComboTracker,
    gift_context: HashMap<ComboKey, GiftContext>,
    pub(crate) likes: LikeCounter,
    pub(crate) stats: RoomStats,
    pub(crate) stats_dirty: bool,
    lottery: Option<RunningLottery>,
    cohosts: Cohosts,
    /// How the anchor and the guests share the room's picture.
    layout: Layout,
    /// Online time of members who left (or were credited) since the last flush.
    pending_online: HashMap<String, u64>,
}

impl RoomBiz {
    /// Pairs each emit with its sender/gift context, under the same lock as the
    /// tracker that produced it (so a new combo's context is never taken by the end
    /// of the previous one).
    fn with_context(&mut self, emits: Vec<ComboEmit>) -> Vec<(ComboEmit, GiftContext)> {
        let mut out = Vec::with_capacity(emits.len());
        for emit in emits {
            let ctx = if emit.end && !self.combos.is_open(&emit.key) {
                self.gift_context.remove(&emit.key)
            } else {
                self.gift_context.get(&emit.key).cloned()
            };
            if let Some(ctx) = ctx {
                out.push((emit, ctx));
            }
        }
        out
    }

    /// Continues from stored statistics (this node became the room's sequencer).
    pub(crate) fn resume_counting(&mut self, cfg: &BusinessConfig, stats: RoomStats) {
        self.likes = LikeCounter::new(cfg.likes, stats.likes);
        self.stats = stats;
        self.stats_dirty = false;
    }

    pub(crate) fn new(cfg: &BusinessConfig, stats: RoomStats, lottery: Option<LotteryRecord>) -> Self {
        let lottery = lottery.map(RunningLottery::restore);
        RoomBiz {
            combos: ComboTracker::new(cfg.combo, now_ms() * 1000),
            gift_context: HashMap::new(),
            likes: LikeCounter::new(cfg.likes, stats.likes),
            stats,
            stats_dirty: false,
            lottery,
            cohosts: Cohosts::default(),
            layout: Layout::default(),
            pending_online: HashMap::new(),
        }
    }

    /// Credits `ms` of presence: to the room's watch time and the user's level.
    pub(crate) fn credit_presence(&mut self, user: Option<&str>, ms: u64) {
        if ms == 0 {
            return;
        }
        self.stats.watched(ms);
        self.stats_dirty = true;
        if let Some(user) = user {
            *self.pending_online.entry(user.to_owned()).or_default() += ms;
        }
    }

    /// A round's delivered user messages: statistics, and lottery entries (the text
    /// is only built while a lottery runs).
    pub(crate) fn delivered(&mut self, msgs: &[Arc<ChatMessage>], now: Millis, w: &PopularityWeights) {
        self.stats.messages(msgs.len() as u64, now, w);
        self.stats_dirty = true;
        if let Some(lottery) = &mut self.lottery {
            for m in msgs {
                if lottery.entries.offer(&m.sender.user_id, m.sender.level, &body_text(&m.body), now) {
                    lottery.dirty = true;
                }
            }
        }
    }
}

/// One user's activity in the cache.
#[derive(Debug, Default)]
pub(crate) struct ActivityEntry {
    activity: Activity,
    /// The stored totals were merged in (until then `activity` holds only deltas).
    loaded: bool,
    dirty: bool,
    /// Increments not written yet (written as increments: see `Store::add_activity`).
    unsaved: Activity,
    /// A member flag set since the last write.
    member_set: Option<bool>,
    /// A background load of the stored totals is in flight.
    loading: bool,
    touched_at: Millis,
}

/// A user's level as the API shows it.
pub fn level_view(user: &str, a: &Activity, w: &LevelWeights) -> Value {
    let score = a.score(w);
    let lvl = level::level_for(score, w);
    let next = if lvl < w.max_level { level::threshold(lvl + 1, w) } else { score };
    json!({
        "userId": user, "level": lvl, "score": score, "nextLevelAt": next,
        "onlineSeconds": a.online_ms / 1000, "messages": a.messages, "likes": a.likes,
        "giftValue": a.gift_value, "member": a.member,
    })
}

/// What the sender of a gift gets back.
#[derive(Debug, Clone)]
pub struct GiftReply {
    /// Balance after paying.
    pub balance: u64,
    /// The payer's ledger row.
    pub ledger_id: u64,
    /// The combo the gift joined (empty for a replayed request).
    pub combo_id: String,
    /// An earlier request with this key went through; nothing moved now.
    pub replayed: bool,
}

/// A lottery as every view shows it — the lottery endpoints, the draw reply and the
/// `lottery` event: one shape, with `winners` as `{userId, nick}` objects (`nicks`
/// in the order of `r.winners`) and `note` always present.
fn lottery_json(r: &LotteryRecord, entrants: usize, with_pool: bool, nicks: &[String]) -> Value {
    let winners: Vec<Value> = r
        .winners
        .iter()
        .enumerate()
        .map(|(i, user)| json!({"userId": user, "nick": nicks.get(i).cloned().unwrap_or_default()}))
        .collect();
    let note = lottery::draw_note(r.status == "drawn", entrants, r.winner_count);
    let mut v = json!({
        "lotteryId": r.id, "roomId": r.room_id, "keyword": r.keyword,
        "startedAt": r.started_at, "endsAt": r.ends_at, "winnerCount": r.winner_count,
        "minLevel": r.min_level, "status": r.status, "entrants": entrants,
        "winners": winners, "note": note, "seed": r.seed, "createdBy": r.created_by, "drawnAt": r.drawn_at,
        "algorithm": "splitmix64-fisher-yates-v1",
    });
    if with_pool && let Value::Object(map) = &mut v {
        map.insert("pool".into(), json!(r.pool));
    }
    v
}

impl Hub {
    // ---- activity and levels -------------------------------------------------

    /// Applies `change` to a user's activity. A user not in the cache gets an
    /// entry at once (so nothing is lost) and its stored totals are merged in by a
    /// background load.
    pub(crate) fn credit(self: &Arc<Self>, user: &str, change: impl FnOnce(&mut Activity)) {
        let now = now_ms();
        let mut cache = self.activity.lock();
        let entry = cache.entry(user.to_owned()).or_default();
        let before = entry.activity;
        change(&mut entry.activity);
        let after = entry.activity;
        entry.unsaved.add_counts(&after.counts_since(&before));
        if after.member != before.member {
            entry.member_set = Some(after.member);
        }
        entry.dirty = true;
        entry.touched_at = now;
        if !entry.loaded && !entry.loading {
            entry.loading = true;
            let hub = self.clone();
            let user = user.to_owned();
            self.tasks.spawn(async move {
                let _ = hub.load_activity(&user).await;
            });
        }
    }

    /// Makes sure a user's stored activity is in the cache (merging any deltas
    /// recorded before) and returns it.
    pub async fn load_activity(&self, user: &str) -> Result<Activity, Rejection> {
        if let Some(e) = self.activity.lock().get(user).filter(|e| e.loaded) {
            return Ok(e.activity);
        }
        let stored = self.store.activity(user).await.map_err(internal)?;
        let mut cache = self.activity.lock();
        let entry = cache.entry(user.to_owned()).or_default();
        if !entry.loaded {
            let d = entry.activity;
            entry.activity = stored;
            entry.activity.add_counts(&d);
            entry.activity.member = stored.member || d.member;
            entry.loaded = true;
            entry.touched_at = now_ms();
        }
        Ok(entry.activity)
    }

    /// The computed level of a user (1 while unknown).
    pub fn level_of(&self, user: &str) -> u32 {
        self.activity
            .lock()
            .get(user)
            .map_or(1, |e| level::level_for(e.activity.score(&self.business.levels), &self.business.levels))
    }

    /// A user's level, score and activity.
    pub async fn level(&self, user: &str) -> Result<Value, Rejection> {
        let a = self.load_activity(user).await?;
        Ok(level_view(user, &a, &self.business.levels))
    }

    /// Sets or clears the member flag.
    pub async fn set_member(self: &Arc<Self>, user: &str, member: bool) -> Result<Value, Rejection> {
        self.load_activity(user).await?;
        self.credit(user, |a| a.member = member);
        self.flush_activity().await;
        self.level(user).await
    }

    async fn flush_activity(&self) {
        let now = now_ms();
        let batch: Vec<(String, Activity, Option<bool>)> = {
            let mut cache = self.activity.lock();
            cache.retain(|_, e| e.dirty || !e.loaded || now.saturating_sub(e.touched_at) < ACTIVITY_IDLE_MS);
            cache
                .iter_mut()
                // Until the stored totals are merged in, `activity` is only increments:
                // writing them first would count them twice in this cache.
                .filter(|(_, e)| e.dirty && e.loaded)
                .map(|(u, e)| {
                    e.dirty = false;
                    (u.clone(), std::mem::take(&mut e.unsaved), e.member_set.take())
                })
                .collect()
        };
        if let Err(e) = self.store.add_activity(&batch).await {
            tracing::warn!(error = %e, users = batch.len(), "could not save activity; will retry");
            let mut cache = self.activity.lock();
            for (user, delta, member) in batch {
                if let Some(e) = cache.get_mut(&user) {
                    e.dirty = true;
                    e.unsaved.add_counts(&delta);
                    e.member_set = e.member_set.or(member);
                }
            }
        }
    }

    // ---- gifts -------------------------------------------------------------

    /// The gift catalog.
    pub fn gift_catalog(&self) -> Vec<Gift> {
        let mut list: Vec<Gift> = self.gifts.read().values().cloned().collect();
        list.sort_by(|a, b| (a.price, &a.gift_id).cmp(&(b.price, &b.gift_id)));
        list
    }

    /// Adds or replaces a catalog entry.
    pub async fn put_gift(&self, gift: Gift) -> Result<(), Rejection> {
        gift.validate()?;
        self.store.put_gift(&gift).await.map_err(internal)?;
        self.gifts.write().insert(gift.gift_id.clone(), gift);
        Ok(())
    }

    /// Removes a catalog entry.
    pub async fn delete_gift(&self, gift_id: &str) -> Result<(), Rejection> {
        if !self.store.delete_gift(gift_id).await.map_err(internal)? {
            return Err(Rejection::new(Code::UnknownGift, format!("no gift '{gift_id}' in the catalog")));
        }
        self.gifts.write().remove(gift_id);
        Ok(())
    }

    /// Pays for `count` gifts from `sender` to the room's anchor, then shows them.
    pub async fn send_gift(
        self: &Arc<Self>,
        room_id: &str,
        sender: SenderProfile,
        gift_id: &str,
        count: u64,
        key: &str,
    ) -> Result<GiftReply, Rejection> {
        let room = self.get(room_id)?;
        if key.is_empty() || key.len() > 128 {
            return Err(Rejection::new(Code::InvalidParam, "idempotencyKey is required (1..=128 bytes)"));
        }
        let gift = self
            .gifts
            .read()
            .get(gift_id)
            .cloned()
            .ok_or_else(|| Rejection::new(Code::UnknownGift, format!("no gift '{gift_id}' in the catalog")))?;
        let cost = gifts::cost(gift.price, count)?;
        let anchor = room.profile().owner;
        if anchor.is_empty() {
            return Err(Rejection::new(Code::InvalidParam, "this room has no anchor (owner) to receive gifts"));
        }
        if anchor == sender.user_id {
            return Err(Rejection::new(Code::InvalidParam, "an anchor cannot send gifts to themselves"));
        }
        if room.moderation.lock().banned(&sender.user_id, now_ms()).is_some() {
            return Err(Rejection::new(Code::NoPermission, "you are banned from this room"));
        }
        let order = GiftOrder { sender: &sender.user_id, anchor: &anchor, room_id, gift: &gift, count, cost, key };
        let receipt = self.store.send_gift(&order).await.map_err(|e| match e {
            MoneyError::Insufficient { balance, cost } => Rejection::new(
                Code::InsufficientBalance,
                format!("balance {balance} does not cover {count} × '{gift_id}' = {cost} coins"),
            ),
            MoneyError::KeyReused => Rejection::new(
                Code::IdempotencyConflict,
                format!("idempotency key '{key}' was already used for a different request"),
            ),
            MoneyError::Store(e) => internal(e),
        })?;
        metrics::counter!("onair_gifts_total", "replayed" => if receipt.replayed { "yes" } else { "no" }).increment(1);
        if receipt.replayed {
            return Ok(GiftReply {
                balance: receipt.balance,
                ledger_id: receipt.ledger_id,
                combo_id: String::new(),
                replayed: true,
            });
        }
        let now = now_ms();
        self.credit(&sender.user_id, |a| a.gift_value += cost);
        let key = ComboKey { from: sender.user_id.clone(), gift_id: gift.gift_id.clone() };
        if let Some(cl) = room.cl.as_ref().filter(|_| !room.sequencing()) {
            cl.route_gift_stats(&room, count, cost);
        }
        let emits = {
            let mut biz = room.biz.lock();
            biz.stats.gifts(count, cost, now, &self.business.popularity);
            biz.stats_dirty = true;
            biz.gift_context.insert(key.clone(), GiftContext { sender, gift, anchor });
            let emits = biz.combos.gift(key, count, now);
            biz.with_context(emits)
        };
        let combo_id = emits.first().map(|(e, _)| e.combo_id.to_string()).unwrap_or_default();
        self.show_gifts(&room, emits);
        Ok(GiftReply { balance: receipt.balance, ledger_id: receipt.ledger_id, combo_id, replayed: false })
    }

    /// Pushes gift events and their cloud-shaped messages (High priority).
    fn show_gifts(&self, room: &Arc<Room>, emits: Vec<(ComboEmit, GiftContext)>) {
        for (emit, ctx) in emits {
            let level = self.level_of(&ctx.sender.user_id).max(ctx.sender.level);
            let event = GiftEvent {
                combo_id: emit.combo_id.to_string(),
                from: ctx.sender.user_id.clone(),
                nick: ctx.sender.nick.clone(),
                avatar: ctx.sender.avatar.clone(),
                level,
                to: ctx.anchor.clone(),
                gift_id: ctx.gift.gift_id.clone(),
                name: ctx.gift.name.clone(),
                price: ctx.gift.price,
                icon: ctx.gift.icon.clone(),
                animation: ctx.gift.animation.clone(),
                count: emit.count,
                combo: emit.combo,
                end: emit.end,
            };
            let mut data = serde_json::to_value(&event).unwrap_or_default();
            if let Value::Object(map) = &mut data {
                map.insert("type".into(), Value::from("gift"));
            }
            let msg = Outgoing {
                sender: SenderProfile { level, ..ctx.sender },
                priority: Priority::High,
                random: self.rng.lock().next_u64() as u32,
                body: vec![MsgElem::Custom(CustomElem {
                    data: data.to_string(),
                    desc: Some("gift".into()),
                    ext: Some(String::new()),
                    sound: None,
                })],
                cloud_custom_data: String::new(),
            };
            room.push_event(RoomEvent::Gift(event));
            // The receiver is dropped on purpose: nobody waits for a gift message.
            let (tx, _) = oneshot::channel();
            let ctx = Arc::new(SendCtx { system: true, ..SendCtx::admin(&msg.sender.user_id) });
            if let Err(r) = room.submit(Ticket { reply: Reply::Api(tx), ctx }, msg) {
                tracing::warn!(room = %room.id, error = %r, "gift message not queued");
            }
        }
    }

    /// Top spenders of a room with their profiles.
    pub async fn gift_leaderboard(&self, room_id: &str, limit: usize) -> Result<Value, Rejection> {
        self.get(room_id)?;
        let rows = self.store.gift_leaderboard(room_id, limit.clamp(1, 100)).await.map_err(internal)?;
        let mut entries = Vec::with_capacity(rows.len());
        for (rank, (user, total)) in rows.into_iter().enumerate() {
            let p = self.store.sender_profile(&user).await.map_err(internal)?;
            entries.push(json!({"rank": rank + 1, "userId": user, "nick": p.nick, "avatar": p.avatar, "total": total}));
        }
        Ok(json!({"roomId": room_id, "entries": entries}))
    }

    // ---- likes -------------------------------------------------------------

    /// Adds likes from `liker` (an account, or a connection key for anonymous
    /// viewers; `user` is set for accounts). Returns (accepted, total).
    pub fn like(
        self: &Arc<Self>,
        room_id: &str,
        liker: &str,
        user: Option<&str>,
        count: u64,
    ) -> Result<(u64, u64), Rejection> {
        let room = self.get(room_id)?;
        if count == 0 || count > 1000 {
            return Err(Rejection::new(Code::InvalidParam, "count must be 1..=1000"));
        }
        if let Some(cl) = &room.cl
            && !cl.route_likes(&room, liker, count)
        {
            // The room's sequencer counts (and caps) them; this node credits its user.
            if let Some(user) = user {
                self.credit(user, |a| a.likes += count);
            }
            return Ok((count, room.biz.lock().likes.total()));
        }
        let (accepted, total) = self.count_likes(&room, liker, count);
        if let Some(user) = user.filter(|_| accepted > 0) {
            self.credit(user, |a| a.likes += accepted);
        }
        Ok((accepted, total))
    }

    /// Adds likes to the room's counter (capped per liker); returns (accepted, total).
    pub(super) fn count_likes(&self, room: &Room, liker: &str, count: u64) -> (u64, u64) {
        let now = now_ms();
        let (accepted, total) = {
            let mut biz = room.biz.lock();
            let accepted = biz.likes.add(liker, count, now);
            if accepted > 0 {
                biz.stats.likes(accepted, now, &self.business.popularity);
                biz.stats_dirty = true;
            }
            (accepted, biz.likes.total())
        };
        metrics::counter!("onair_likes_total").increment(accepted);
        if accepted < count {
            metrics::counter!("onair_likes_capped_total").increment(count - accepted);
        }
        (accepted, total)
    }

    // ---- statistics --------------------------------------------------------

    /// Per-room statistics.
    pub fn room_stats(&self, room_id: &str) -> Result<Value, Rejection> {
        let room = self.get(room_id)?;
        let online = room.online();
        let biz = room.biz.lock();
        let s = &biz.stats;
        Ok(json!({
            "roomId": room_id, "online": online, "peakOnline": s.peak_online.max(online),
            "messages": s.messages, "likes": s.likes, "gifts": s.gifts, "giftValue": s.gift_value,
            "watchSeconds": s.watch_ms / 1000,
            "popularity": s.popularity(online, now_ms(), &self.business.popularity),
        }))
    }

    // ---- lottery -----------------------------------------------------------

    /// Starts a lottery in a room (one at a time per room).
    pub async fn start_lottery(&self, room_id: &str, spec: LotterySpec, operator: &str) -> Result<Value, Rejection> {
        spec.validate()?;
        let room = self.get(room_id)?;
        let now = now_ms();
        let record = LotteryRecord {
            id: format!("L{:x}{:04x}", now, self.rng.lock().next_u64() & 0xffff),
            room_id: room_id.to_owned(),
            keyword: spec.keyword.trim().to_owned(),
            started_at: now,
            ends_at: now + spec.duration_secs * 1000,
            winner_count: spec.winners,
            min_level: spec.min_level,
            status: "running".into(),
            created_by: operator.to_owned(),
            ..Default::default()
        };
        {
            let mut biz = room.biz.lock();
            if let Some(running) = &biz.lottery {
                return Err(Rejection::new(
                    Code::Conflict,
                    format!("lottery '{}' is still running in this room; draw it first", running.record.id),
                ));
            }
            biz.lottery = Some(RunningLottery {
                record: record.clone(),
                entries: Entries::open(&spec, record.ends_at),
                dirty: false,
            });
        }
        if let Err(e) = self.store.save_lottery(&record).await {
            room.biz.lock().lottery = None;
            return Err(internal(e));
        }
        self.changed(room_id, crate::cluster::Part::Lottery);
        let view = lottery_json(&record, 0, false, &[]);
        let mut event = view.clone();
        if let Value::Object(map) = &mut event {
            map.insert("phase".into(), Value::from("started"));
        }
        room.push_event(RoomEvent::Lottery(event));
        Ok(view)
    }

    /// Draws a room's running lottery now (its window ended, or the anchor ends it
    /// early). The seed comes from the OS and is published with the result.
    pub async fn draw_lottery(&self, room: &Arc<Room>) -> Result<Value, Rejection> {
        let Some(running) = room.biz.lock().lottery.take() else {
            return Err(Rejection::new(Code::NotFound, "no lottery is running in this room"));
        };
        let mut record = running.record;
        record.pool = running.entries.pool().to_vec();
        let seed = seed();
        record.seed = format!("{seed:016x}");
        record.winners = lottery::draw(&record.pool, record.winner_count, seed);
        record.status = "drawn".into();
        record.drawn_at = now_ms();
        record.ends_at = record.ends_at.min(record.drawn_at);
        if let Err(e) = self.store.save_lottery(&record).await {
            tracing::error!(room = %room.id, error = %e, "lottery result not stored; announcing anyway");
        }
        self.changed(&room.id, crate::cluster::Part::Lottery);
        let nicks = self.winner_nicks(&record).await;
        let view = lottery_json(&record, record.pool.len(), false, &nicks);
        let mut event = view.clone();
        if let Value::Object(map) = &mut event {
            map.insert("phase".into(), Value::from("drawn"));
        }
        room.push_event(RoomEvent::Lottery(event));
        Ok(view)
    }

    /// Draws the lottery `id` now (the caller checked permissions on its room).
    pub async fn draw_lottery_by_id(&self, id: &str) -> Result<Value, Rejection> {
        let mut record = self.lottery_record(id).await?;
        let room = self.get(&record.room_id)?;
        if record.status != "running" || room.biz.lock().lottery.as_ref().is_none_or(|l| l.record.id != id) {
            return Err(Rejection::new(Code::Conflict, format!("lottery '{id}' was already drawn")));
        }
        if !room.sequencing() {
            // Another node holds the pool (it sees every delivered message): end the
            // window there; it draws within a business tick and announces the result.
            record.ends_at = now_ms();
            self.store.save_lottery(&record).await.map_err(internal)?;
            self.changed(&room.id, crate::cluster::Part::Lottery);
            let mut view = lottery_json(&record, 0, false, &[]);
            if let Value::Object(map) = &mut view {
                map.insert("phase".into(), Value::from("drawing"));
            }
            return Ok(view);
        }
        self.draw_lottery(&room).await
    }

    /// Reloads a room's running lottery from the store (another node started, ended
    /// or drew it). A pool this node collected is kept; only the window follows.
    pub(super) async fn reload_lottery(&self, room: &Room) -> Result<(), Rejection> {
        let running =
            self.store.running_lotteries().await.map_err(internal)?.into_iter().find(|l| l.room_id == room.id);
        let mut biz = room.biz.lock();
        match running {
            None => biz.lottery = None,
            Some(record) => match biz.lottery.as_mut() {
                Some(l) if l.record.id == record.id => {
                    l.entries.close_at(record.ends_at);
                    l.record.ends_at = l.record.ends_at.min(record.ends_at);
                }
                _ => biz.lottery = Some(RunningLottery::restore(record)),
            },
        }
        Ok(())
    }

    /// A stored lottery.
    pub async fn lottery_record(&self, id: &str) -> Result<LotteryRecord, Rejection> {
        self.store
            .lottery(id)
            .await
            .map_err(internal)?
            .ok_or_else(|| Rejection::new(Code::NotFound, format!("no lottery '{id}'")))
    }

    /// A lottery as the API shows it (the pool once drawn, the live count before).
    pub async fn lottery_view(&self, id: &str) -> Result<Value, Rejection> {
        let record = self.lottery_record(id).await?;
        if record.status == "running"
            && let Ok(room) = self.get(&record.room_id)
            && let Some(l) = room.biz.lock().lottery.as_ref().filter(|l| l.record.id == id)
        {
            return Ok(lottery_json(&record, l.entries.pool().len(), false, &[]));
        }
        let nicks = self.winner_nicks(&record).await;
        Ok(lottery_json(&record, record.pool.len(), true, &nicks))
    }

    /// The winners' nicks, in their order (empty for an account without a profile).
    async fn winner_nicks(&self, record: &LotteryRecord) -> Vec<String> {
        let mut nicks = Vec::with_capacity(record.winners.len());
        for user in &record.winners {
            nicks.push(self.store.sender_profile(user).await.map(|p| p.nick).unwrap_or_default());
        }
        nicks
    }

    /// A room's lotteries, newest first.
    pub async fn lotteries(&self, room_id: &str) -> Result<Value, Rejection> {
        self.get(room_id)?;
        let list = self.store.lotteries(room_id, 50).await.map_err(internal)?;
        let mut views = Vec::with_capacity(list.len());
        for r in &list {
            let nicks = self.winner_nicks(r).await;
            views.push(lottery_json(r, r.pool.len(), false, &nicks));
        }
        Ok(json!({ "lotteries": views }))
    }

    // ---- co-hosting --------------------------------------------------------

    /// A viewer asks to co-host.
    pub fn cohost_request(&self, room_id: &str, user: &SenderProfile) -> Result<(), Rejection> {
        let room = self.get(room_id)?;
        if room.is_owner(&user.user_id) {
            return Err(Rejection::new(Code::InvalidParam, "the anchor cannot ask to co-host their own room"));
        }
        room.biz.lock().cohosts.request(&user.user_id, now_ms())?;
        room.push_event(RoomEvent::Cohost(
            json!({"phase": "requested", "userId": user.user_id, "nick": user.nick, "avatar": user.avatar}),
        ));
        Ok(())
    }

    /// The anchor answers a request; on accept the guest alone gets a signed WHIP URL
    /// for their camera (and, as an alternative, a signed RTMP push URL) and the name
    /// of the anchor's own feed to watch; the room learns the co-host's stream.
    pub fn cohost_answer(&self, room_id: &str, user: &str, accept: bool) -> Result<Value, Rejection> {
        let room = self.get(room_id)?;
        if !accept {
            room.biz.lock().cohosts.refuse(user)?;
            room.push_event(RoomEvent::Cohost(json!({"phase": "refused", "userId": user})));
            return Ok(json!({"userId": user, "status": "refused"}));
        }
        room.biz.lock().cohosts.accept(user, now_ms())?;
        let room_stream = room.profile().stream;
        let stream = cohost_stream(&room_stream, user);
        let push_url = self.push_url.as_ref().map(|sign| sign(&stream)).unwrap_or_default();
        let whip_url = self.whip_url.as_ref().map(|sign| sign(&stream)).unwrap_or_default();
        let (layout, picture) = picture(&room);
        let answer = json!({
            "userId": user, "status": "accepted", "stream": stream, "whipUrl": whip_url, "pushUrl": push_url,
            "anchorStream": onair_media::mix::raw_stream(&room_stream), "layout": layout,
        });
        let mut accepted = answer.clone();
        if let Value::Object(m) = &mut accepted {
            m.remove("status");
            m.insert("phase".into(), "accepted".into());
        }
        room.push_to_user(user, RoomEvent::Cohost(accepted));
        room.push_event(RoomEvent::Cohost(
            json!({"phase": "started", "userId": user, "stream": stream, "layout": layout, "picture": picture}),
        ));
        Ok(answer)
    }

    /// Ends a co-host session (or withdraws a pending request).
    pub fn cohost_end(&self, room_id: &str, user: &str) -> Result<(), Rejection> {
        let room = self.get(room_id)?;
        self.end_cohost(&room, user, "ended")
    }

    fn end_cohost(&self, room: &Arc<Room>, user: &str, reason: &str) -> Result<(), Rejection> {
        let was_live = room.biz.lock().cohosts.end(user)?;
        if !was_live {
            room.push_event(RoomEvent::Cohost(json!({"phase": "withdrawn", "userId": user})));
            return Ok(());
        }
        self.remix(room);
        let (layout, picture) = picture(room);
        room.push_event(RoomEvent::Cohost(
            json!({"phase": "ended", "userId": user, "reason": reason, "layout": layout, "picture": picture}),
        ));
        Ok(())
    }

    /// The anchor picks how the guests share the picture.
    pub fn cohost_layout(&self, room_id: &str, layout: &str) -> Result<Value, Rejection> {
        let room = self.get(room_id)?;
        let layout = Layout::parse(layout).map_err(|e| Rejection::new(Code::InvalidParam, e))?;
        room.biz.lock().layout = layout;
        self.remix(&room);
        let (layout, picture) = picture(&room);
        room.push_event(RoomEvent::Cohost(json!({"phase": "layout", "layout": layout, "picture": picture})));
        Ok(json!({"layout": layout, "picture": picture}))
    }

    /// A co-host stream (`{room stream}-cohost-{user}`) started or stopped: the guest
    /// enters the room's picture, or leaves the session (a dropped guest: the WHIP
    /// session or the RTMP push is gone). Returns false for a stream of no guest.
    pub(crate) fn cohost_stream_event(&self, stream: &str, live: bool) -> bool {
        let Some((room_stream, _)) = stream.split_once(COHOST_MARK) else { return false };
        let Some(room) = self.room_for_stream(room_stream).and_then(|id| self.get(&id).ok()) else {
            return false;
        };
        let user = {
            let biz = room.biz.lock();
            biz.cohosts.active().into_iter().map(|(u, _)| u).find(|u| cohost_stream(room_stream, u) == stream)
        };
        let Some(user) = user else { return false };
        if live {
            if room.biz.lock().cohosts.set_on_air(&user, true) {
                self.remix(&room);
                let (layout, picture) = picture(&room);
                room.push_event(RoomEvent::Cohost(
                    json!({"phase": "live", "userId": user, "stream": stream, "layout": layout, "picture": picture}),
                ));
            }
        } else if let Err(r) = self.end_cohost(&room, &user, "dropped") {
            tracing::debug!(room = %room.id, user, error = %r, "co-host stream ended after the session");
        }
        true
    }

    /// Tells the media service which guests to compose into the room's stream.
    fn remix(&self, room: &Room) {
        let Some(mixer) = self.mixer.get() else { return };
        let room_stream = room.profile().stream;
        let plan = {
            let biz = room.biz.lock();
            let guests: Vec<String> = biz.cohosts.in_picture().iter().map(|u| cohost_stream(&room_stream, u)).collect();
            (!guests.is_empty()).then_some(MixPlan { guests, layout: biz.layout })
        };
        mixer.set_mix(&room_stream, plan);
    }

    /// Pending requests and guests on air.
    pub fn cohosts(&self, room_id: &str) -> Result<Value, Rejection> {
        let room = self.get(room_id)?;
        let stream = room.profile().stream;
        let (layout, picture) = picture(&room);
        let biz = room.biz.lock();
        let requests: Vec<Value> =
            biz.cohosts.pending().into_iter().map(|(u, at)| json!({"userId": u, "at": at})).collect();
        let active: Vec<Value> = biz
            .cohosts
            .active()
            .into_iter()
            .map(|(u, at)| json!({"userId": u, "since": at, "stream": cohost_stream(&stream, &u)}))
            .collect();
        Ok(json!({"requests": requests, "active": active, "layout": layout, "picture": picture}))
    }

    // ---- the ticker --------------------------------------------------------

    /// One loop for every room's timed business rules.
    pub(crate) async fn run_business(self: Arc<Self>) {
        let mut interval = tokio::time::interval(BUSINESS_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_flush = tokio::time::Instant::now();
        let mut last_credit = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = interval.tick() => {}
                _ = self.shutdown.cancelled() => break,
            }
            let now = now_ms();
            let flush = last_flush.elapsed() >= FLUSH_EVERY;
            let credit = last_credit.elapsed() >= CREDIT_EVERY;
            if credit {
                last_credit = tokio::time::Instant::now();
            }
            let rooms: Vec<Arc<Room>> = self.rooms.read().values().cloned().collect();
            for room in rooms {
                self.business_round(&room, now, flush, credit).await;
            }
            if flush {
                last_flush = tokio::time::Instant::now();
                self.flush(false).await;
            }
        }
        self.flush(true).await;
    }

    async fn business_round(self: &Arc<Self>, room: &Arc<Room>, now: Millis, flush: bool, credit: bool) {
        if room.is_closed() {
            return;
        }
        // Chat-output lines that were shown long enough go.
        self.chat_overlay_feed(room, &[], now);
        let (emits, likes, lottery_due) = {
            let mut biz = room.biz.lock();
            let emits = if biz.combos.is_idle() { Vec::new() } else { biz.combos.poll(now) };
            let emits = biz.with_context(emits);
            let likes = biz.likes.flush(now);
            let due = biz.lottery.as_ref().is_some_and(|l| l.entries.ends_at() <= now);
            (emits, likes, due)
        };
        self.show_gifts(room, emits);
        if let Some(f) = likes {
            room.push_event(RoomEvent::Like { delta: f.delta, total: f.total });
        }
        // Decisions taken once per room, cluster-wide, by the room's sequencer (the
        // only node that sees every delivered message, and the one that publishes).
        let sequencing = room.sequencing();
        if sequencing
            && lottery_due
            && let Err(r) = self.draw_lottery(room).await
        {
            tracing::warn!(room = %room.id, error = %r, "lottery draw failed");
        }
        let (state, changed_at) = {
            let p = room.profile.lock();
            (p.state.clone(), p.state_changed_at)
        };
        let state = LiveState::parse(&state).unwrap_or(LiveState::Upcoming);
        if sequencing && onair_core::live::pause_expired(state, changed_at, self.business.pause_grace_ms, now) {
            match self.change_state(room, LiveState::Ended, ChangeReason::Timeout).await {
                Ok(_) => self.replay_if_ready(room).await,
                Err(r) => tracing::warn!(room = %room.id, error = %r, "could not end a paused room"),
            }
        }
        if credit {
            room.credit_members(now);
        }
        if flush {
            let online = room.online();
            let pending: Vec<(String, u64)> = {
                let mut biz = room.biz.lock();
                if online > biz.stats.peak_online {
                    biz.stats.online(online);
                    biz.stats_dirty = true;
                }
                biz.pending_online.drain().collect()
            };
            for (user, ms) in pending {
                self.credit(&user, |a| a.online_ms += ms);
            }
        }
    }

    /// Writes dirty statistics, like totals, lottery pools and activity.
    pub(crate) async fn flush(&self, all: bool) {
        let mut stats = Vec::new();
        let mut lotteries = Vec::new();
        // Statistics and lottery pools are counted by the room's sequencer; another
        // node's copy would overwrite them with its partial view.
        for room in self.rooms.read().values().filter(|r| r.sequencing()) {
            let mut biz = room.biz.lock();
            if biz.stats_dirty || all {
                biz.stats_dirty = false;
                stats.push((room.id.clone(), biz.stats));
            }
            if let Some(l) = biz.lottery.as_mut().filter(|l| l.dirty || all) {
                l.dirty = false;
                let mut record = l.record.clone();
                record.pool = l.entries.pool().to_vec();
                lotteries.push(record);
            }
        }
        if let Err(e) = self.store.save_room_stats(&stats).await {
            tracing::warn!(error = %e, "could not save room statistics");
        }
        for record in lotteries {
            if let Err(e) = self.store.save_lottery(&record).await {
                tracing::warn!(error = %e, "could not save a lottery pool");
            }
        }
        self.flush_activity().await;
    }
}

/// What every co-host stream name holds; no room may take such a name as its own.
pub(crate) const COHOST_MARK: &str = "-cohost-";

/// The layout's name and the guests in the room's picture (`[{userId, stream}]`),
/// as every `cohost` event carries them.
fn picture(room: &Room) -> (&'static str, Value) {
    let stream = room.profile().stream;
    let biz = room.biz.lock();
    let list: Vec<Value> = biz
        .cohosts
        .in_picture()
        .into_iter()
        .map(|u| json!({"userId": u, "stream": cohost_stream(&stream, &u)}))
        .collect();
    (biz.layout.as_str(), Value::Array(list))
}

/// A co-host's stream name: the room's stream plus the guest.
fn cohost_stream(room_stream: &str, user: &str) -> String {
    let clean: String =
        user.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' }).collect();
    let name = format!("{room_stream}{COHOST_MARK}{clean}");
    name.chars().take(64).collect()
}
