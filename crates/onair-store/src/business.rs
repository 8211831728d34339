//! Money, activity, statistics and lotteries.
//!
//! Every coin movement is one transaction. On SQLite it is `BEGIN IMMEDIATE`: the
//! write lock is taken before anything is read, so concurrent gift requests against
//! one wallet are serialised by SQLite itself and can neither overdraw it nor debit
//! it twice for the same idempotency key. On PostgreSQL (READ COMMITTED) the payer's
//! and payee's wallet rows are locked first (`FOR UPDATE`, in user-id order), the debit is a conditional
//! `UPDATE … WHERE balance >= cost`, and the `(scope, key)` primary key of the
//! idempotency table settles any race the lock cannot (a wallet that did not exist
//! yet): the loser's transaction fails with a unique violation, rolls back whole and
//! is run again, and then answers with the winner's receipt. The
//! `CHECK (balance >= 0)` in the schema is the last line of defence, not the
//! mechanism.

use crate::StoreError;
use crate::db::{RowExt, on_pool, retry_money};
use crate::store::{Store, decode_json, encode_json, from_db, limit_db, now_ms, to_db};
use onair_core::gifts::Gift;
use onair_core::level::Activity;
use onair_core::popularity::RoomStats;

/// A wallet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WalletRecord {
    /// Owner.
    pub user_id: String,
    /// Coins to spend.
    pub balance: u64,
    /// Coins received as an anchor.
    pub earnings: u64,
}

/// One ledger row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerEntry {
    /// Row id (increasing).
    pub id: u64,
    /// Whose wallet.
    pub user_id: String,
    /// `topup`, `gift` or `earning`.
    pub kind: String,
    /// Signed amount (+ in, − out).
    pub amount: i64,
    /// Balance (or earnings, for `earning`) after this row.
    pub balance_after: u64,
    /// Gift id (gift and earning rows).
    pub gift_id: String,
    /// Gifts in the request.
    pub gift_count: u64,
    /// Room (gift and earning rows).
    pub room_id: String,
    /// The other side: the anchor of a gift, the sender of an earning, the admin of a top-up.
    pub counterparty: String,
    /// The request's idempotency key.
    pub idempotency_key: String,
    /// Unix ms.
    pub at: u64,
}

/// A paid gift request.
#[derive(Debug, Clone)]
pub struct GiftOrder<'a> {
    /// Who pays.
    pub sender: &'a str,
    /// Who earns (the room owner).
    pub anchor: &'a str,
    /// Where.
    pub room_id: &'a str,
    /// What.
    pub gift: &'a Gift,
    /// How many.
    pub count: u64,
    /// Total price.
    pub cost: u64,
    /// Idempotency key (per sender).
    pub key: &'a str,
}

impl GiftOrder<'_> {
    /// What a replay of the key must match.
    fn fingerprint(&self) -> String {
        format!("gift|{}|{}|{}|{}", self.room_id, self.gift.gift_id, self.count, self.cost)
    }
}

/// A money request that went through (now or, for a replayed key, before).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The payer's ledger row.
    pub ledger_id: u64,
    /// Balance after the request (as it was then, for a replay).
    pub balance: u64,
    /// The key was seen before with the same request: nothing moved now.
    pub replayed: bool,
}

/// Why a money request did not go through.
#[derive(Debug, thiserror::Error)]
pub enum MoneyError {
    /// The wallet does not cover the cost.
    #[error("balance {balance} does not cover {cost}")]
    Insufficient {
        /// Balance now.
        balance: u64,
        /// What was asked.
        cost: u64,
    },
    /// The idempotency key was used before for a different request.
    #[error("idempotency key already used for a different request")]
    KeyReused,
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for MoneyError {
    fn from(e: sqlx::Error) -> Self {
        MoneyError::Store(StoreError::Sqlx(e))
    }
}

/// A stored lottery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LotteryRecord {
    /// Lottery id.
    pub id: String,
    /// Room.
    pub room_id: String,
    /// Entry keyword.
    pub keyword: String,
    /// Unix ms.
    pub started_at: u64,
    /// Unix ms the window closes.
    pub ends_at: u64,
    /// Winners asked for.
    pub winner_count: u32,
    /// Minimum level to enter.
    pub min_level: u32,
    /// `running` or `drawn`.
    pub status: String,
    /// Published draw seed (16 hex digits) once drawn.
    pub seed: String,
    /// Entrants in entry order.
    pub pool: Vec<String>,
    /// Winners in draw order.
    pub winners: Vec<String>,
    /// Who started it.
    pub created_by: String,
    /// Unix ms of the draw (0 while running).
    pub drawn_at: u64,
}

fn ledger_from_row(row: &impl RowExt) -> Result<LedgerEntry, StoreError> {
    Ok(LedgerEntry {
        id: from_db(row.int("id")?, "ledger id")?,
        user_id: row.text("user_id")?,
        kind: row.text("kind")?,
        amount: row.int("amount")?,
        balance_after: from_db(row.int("balance_after")?, "balance_after")?,
        gift_id: row.text("gift_id")?,
        gift_count: from_db(row.int("gift_count")?, "gift_count")?,
        room_id: row.text("room_id")?,
        counterparty: row.text("counterparty")?,
        idempotency_key: row.text("idempotency_key")?,
        at: from_db(row.int("at")?, "at")?,
    })
}

fn lottery_from_row(row: &impl RowExt) -> Result<LotteryRecord, StoreError> {
    let id = row.text("id")?;
    let pool = row.text("pool")?;
    let winners = row.text("winners")?;
    Ok(LotteryRecord {
        room_id: row.text("room_id")?,
        keyword: row.text("keyword")?,
        started_at: from_db(row.int("started_at")?, "started_at")?,
        ends_at: from_db(row.int("ends_at")?, "ends_at")?,
        winner_count: from_db(row.int("winner_count")?, "winner_count")?,
        min_level: from_db(row.int("min_level")?, "min_level")?,
        status: row.text("status")?,
        seed: row.text("seed")?,
        pool: decode_json(&pool, &format!("pool of lottery '{id}'"))?,
        winners: decode_json(&winners, &format!("winners of lottery '{id}'"))?,
        created_by: row.text("created_by")?,
        drawn_at: from_db(row.int("drawn_at")?, "drawn_at")?,
        id,
    })
}

const LOTTERY_COLUMNS: &str = "id, room_id, keyword, started_at, ends_at, winner_count, min_level, status, seed, \
     pool, winners, created_by, drawn_at";

// The three steps every money transaction shares. They are macros, not functions,
// because they run on the transaction's connection, whose type differs per driver
// (see `db.rs`); each expands inside an `on_pool!` arm. `?` and `return` in them act
// on the enclosing money function.

/// Writes a ledger row on `$tx`; evaluates to its id.
macro_rules! insert_ledger {
    ($tx:ident, $r:expr) => {{
        let r: &LedgerRow<'_> = $r;
        let id: i64 = sqlx::query(
            "INSERT INTO ledger (user_id, kind, amount, balance_after, gift_id, gift_count, room_id, counterparty, \
             idempotency_key, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
        )
        .bind(r.user_id)
        .bind(r.kind)
        .bind(r.amount)
        .bind(r.balance_after)
        .bind(r.gift_id)
        .bind(r.gift_count)
        .bind(r.room_id)
        .bind(r.counterparty)
        .bind(r.key)
        .bind(r.at)
        .fetch_one(&mut *$tx)
        .await?
        .int("id")?;
        id
    }};
}

/// If the key was seen before, commits `$tx` and returns the earlier answer from
/// the enclosing function (or `KeyReused` if it named another request).
macro_rules! return_if_replayed {
    ($tx:ident, $scope:expr, $key:expr, $fingerprint:expr) => {{
        let row = sqlx::query(
            "SELECT i.request_hash, i.ledger_id, l.balance_after FROM idempotency i \
             JOIN ledger l ON l.id = i.ledger_id WHERE i.scope = $1 AND i.key = $2",
        )
        .bind($scope)
        .bind($key)
        .fetch_optional(&mut *$tx)
        .await?;
        if let Some(row) = row {
            if row.text("request_hash")? != $fingerprint {
                return Err(MoneyError::KeyReused);
            }
            let receipt = Receipt {
                ledger_id: from_db(row.int("ledger_id")?, "ledger id")?,
                balance: from_db(row.int("balance_after")?, "balance_after")?,
                replayed: true,
            };
            $tx.commit().await?;
            return Ok(receipt);
        }
    }};
}

/// Remembers the key with its request and payer ledger row.
macro_rules! remember_key {
    ($tx:ident, $scope:expr, $key:expr, $fingerprint:expr, $ledger_id:expr, $now:expr) => {
        sqlx::query("INSERT INTO idempotency (scope, key, request_hash, ledger_id, at) VALUES ($1, $2, $3, $4, $5)")
            .bind($scope)
            .bind($key)
            .bind($fingerprint)
            .bind($ledger_id)
            .bind($now)
            .execute(&mut *$tx)
            .await?
    };
}

impl Store {
    /// The catalog, by price then id.
    pub async fn gifts(&self) -> Result<Vec<Gift>, StoreError> {
        on_pool!(&self.db, pool => {
            let rows = sqlx::query("SELECT gift_id, name, price, icon, animation FROM gifts ORDER BY price, gift_id")
                .fetch_all(pool)
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(Gift {
                        gift_id: row.text("gift_id")?,
                        name: row.text("name")?,
                        price: from_db(row.int("price")?, "price")?,
                        icon: row.text("icon")?,
                        animation: row.text("animation")?,
                    })
                })
                .collect()
        })
    }

    /// Adds or replaces a catalog entry.
    pub async fn put_gift(&self, gift: &Gift) -> Result<(), StoreError> {
        let price = to_db(gift.price, "price")?;
        let now = to_db(now_ms(), "updated_at")?;
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO gifts (gift_id, name, price, icon, animation, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (gift_id) DO UPDATE SET name = excluded.name, price = excluded.price, \
                 icon = excluded.icon, animation = excluded.animation, updated_at = excluded.updated_at",
            )
            .bind(&gift.gift_id)
            .bind(&gift.name)
            .bind(price)
            .bind(&gift.icon)
            .bind(&gift.animation)
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Removes a catalog entry; false if there was none. Ledger rows keep the id.
    pub async fn delete_gift(&self, gift_id: &str) -> Result<bool, StoreError> {
        let done = on_pool!(&self.db, pool => {
            sqlx::query("DELETE FROM gifts WHERE gift_id = $1").bind(gift_id).execute(pool).await?.rows_affected()
        });
        Ok(done > 0)
    }

    /// A wallet (all zero if the user never had coins).
    pub async fn wallet(&self, user_id: &str) -> Result<WalletRecord, StoreError> {
        let (balance, earnings) = on_pool!(&self.db, pool => {
            let row = sqlx::query("SELECT balance, earnings FROM wallets WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(pool)
                .await?;
            match row {
                Some(row) => (from_db(row.int("balance")?, "balance")?, from_db(row.int("earnings")?, "earnings")?),
                None => (0, 0),
            }
        });
        Ok(WalletRecord { user_id: user_id.to_owned(), balance, earnings })
    }

    /// Adds coins to a wallet (an admin top-up), once per idempotency key.
    pub async fn top_up(&self, user_id: &str, amount: u64, key: &str, admin: &str) -> Result<Receipt, MoneyError> {
        retry_money(|| self.top_up_once(user_id, amount, key, admin)).await
    }

    async fn top_up_once(&self, user_id: &str, amount: u64, key: &str, admin: &str) -> Result<Receipt, MoneyError> {
        let scope = format!("topup:{user_id}");
        let fingerprint = format!("topup|{amount}");
        let amount_db = to_db(amount, "amount")?;
        let dialect = self.db.dialect();
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_with(dialect.begin_money()).await?;
            if let Some(ensure) = dialect.ensure_wallet() {
                sqlx::query(ensure).bind(user_id).execute(&mut *tx).await?;
            }
            if let Some(lock) = dialect.lock_wallets() {
                sqlx::query(lock).bind(user_id).bind(user_id).execute(&mut *tx).await?;
            }
            return_if_replayed!(tx, &scope, key, fingerprint);
            // `wallets.balance`, qualified: in PostgreSQL a bare `balance` next to
            // `excluded` is ambiguous.
            let balance = sqlx::query(
                "INSERT INTO wallets (user_id, balance) VALUES ($1, $2) ON CONFLICT (user_id) \
                 DO UPDATE SET balance = wallets.balance + excluded.balance RETURNING balance",
            )
            .bind(user_id)
            .bind(amount_db)
            .fetch_one(&mut *tx)
            .await?
            .int("balance")?;
            let now = to_db(now_ms(), "at")?;
            let row = LedgerRow {
                amount: amount_db,
                balance_after: balance,
                counterparty: admin,
                key,
                at: now,
                ..LedgerRow::new(user_id, "topup")
            };
            let ledger_id = insert_ledger!(tx, &row);
            remember_key!(tx, &scope, key, &fingerprint, ledger_id, now);
            tx.commit().await?;
            Ok(Receipt {
                ledger_id: from_db(ledger_id, "ledger id")?,
                balance: from_db(balance, "balance")?,
                replayed: false,
            })
        })
    }

    /// Pays for a gift: debits the sender, credits the anchor, writes both ledger
    /// rows, the room leaderboard and the anchor's earnings, and remembers the key —
    /// all or nothing.
    pub async fn send_gift(&self, order: &GiftOrder<'_>) -> Result<Receipt, MoneyError> {
        retry_money(|| self.send_gift_once(order)).await
    }

    async fn send_gift_once(&self, order: &GiftOrder<'_>) -> Result<Receipt, MoneyError> {
        let scope = format!("gift:{}", order.sender);
        let fingerprint = order.fingerprint();
        let cost = to_db(order.cost, "cost")?;
        let count = to_db(order.count, "count")?;
        let dialect = self.db.dialect();
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin_with(dialect.begin_money()).await?;
            if let Some(ensure) = dialect.ensure_wallet() {
                sqlx::query(ensure).bind(order.anchor).execute(&mut *tx).await?;
            }
            if let Some(lock) = dialect.lock_wallets() {
                sqlx::query(lock).bind(order.sender).bind(order.anchor).execute(&mut *tx).await?;
            }
            return_if_replayed!(tx, &scope, order.key, fingerprint);
            let debited = sqlx::query(
                "UPDATE wallets SET balance = balance - $1 WHERE user_id = $2 AND balance >= $1 RETURNING balance",
            )
            .bind(cost)
            .bind(order.sender)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = debited else {
                let balance = sqlx::query("SELECT balance FROM wallets WHERE user_id = $1")
                    .bind(order.sender)
                    .fetch_optional(&mut *tx)
                    .await?
                    .map(|r| r.int("balance"))
                    .transpose()?
                    .unwrap_or(0);
                tx.rollback().await?;
                return Err(MoneyError::Insufficient { balance: from_db(balance, "balance")?, cost: order.cost });
            };
            let balance = row.int("balance")?;
            let now = to_db(now_ms(), "at")?;
            let paid = LedgerRow {
                amount: -cost,
                balance_after: balance,
                gift_id: &order.gift.gift_id,
                gift_count: count,
                room_id: order.room_id,
                counterparty: order.anchor,
                key: order.key,
                at: now,
                ..LedgerRow::new(order.sender, "gift")
            };
            let ledger_id = insert_ledger!(tx, &paid);
            let earnings = sqlx::query(
                "INSERT INTO wallets (user_id, earnings) VALUES ($1, $2) ON CONFLICT (user_id) \
                 DO UPDATE SET earnings = wallets.earnings + excluded.earnings RETURNING earnings",
            )
            .bind(order.anchor)
            .bind(cost)
            .fetch_one(&mut *tx)
            .await?
            .int("earnings")?;
            let earned = LedgerRow {
                user_id: order.anchor,
                kind: "earning",
                amount: cost,
                balance_after: earnings,
                counterparty: order.sender,
                ..paid
            };
            insert_ledger!(tx, &earned);
            sqlx::query(
                "INSERT INTO room_gift_totals (room_id, user_id, total) VALUES ($1, $2, $3) \
                 ON CONFLICT (room_id, user_id) DO UPDATE SET total = room_gift_totals.total + excluded.total",
            )
            .bind(order.room_id)
            .bind(order.sender)
            .bind(cost)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO anchor_earnings (anchor, room_id, total) VALUES ($1, $2, $3) \
                 ON CONFLICT (anchor, room_id) DO UPDATE SET total = anchor_earnings.total + excluded.total",
            )
            .bind(order.anchor)
            .bind(order.room_id)
            .bind(cost)
            .execute(&mut *tx)
            .await?;
            remember_key!(tx, &scope, order.key, &fingerprint, ledger_id, now);
            tx.commit().await?;
            Ok(Receipt {
                ledger_id: from_db(ledger_id, "ledger id")?,
                balance: from_db(balance, "balance")?,
                replayed: false,
            })
        })
    }

    /// A user's ledger, newest first, rows with id below `before` (0 = from the newest).
    pub async fn ledger(&self, user_id: &str, before: u64, limit: usize) -> Result<Vec<LedgerEntry>, StoreError> {
        let before = if before == 0 { i64::MAX } else { to_db(before, "before")? };
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT id, user_id, kind, amount, balance_after, gift_id, gift_count, room_id, counterparty, \
                 idempotency_key, at FROM ledger WHERE user_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )
            .bind(user_id)
            .bind(before)
            .bind(limit_db(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(ledger_from_row).collect()
        })
    }

    /// Top spenders of a room: (user, coins), highest first.
    pub async fn gift_leaderboard(&self, room_id: &str, limit: usize) -> Result<Vec<(String, u64)>, StoreError> {
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT user_id, total FROM room_gift_totals WHERE room_id = $1 ORDER BY total DESC, user_id LIMIT $2",
            )
            .bind(room_id)
            .bind(limit_db(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok((r.text("user_id")?, from_db(r.int("total")?, "total")?))).collect()
        })
    }

    /// An anchor's earnings per room, highest first.
    pub async fn earnings_by_room(&self, anchor: &str) -> Result<Vec<(String, u64)>, StoreError> {
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT room_id, total FROM anchor_earnings WHERE anchor = $1 ORDER BY total DESC, room_id",
            )
            .bind(anchor)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| Ok((r.text("room_id")?, from_db(r.int("total")?, "total")?))).collect()
        })
    }

    /// A user's stored activity (all zero if none).
    pub async fn activity(&self, user_id: &str) -> Result<Activity, StoreError> {
        on_pool!(&self.db, pool => {
            let row = sqlx::query(
                "SELECT online_ms, messages, likes, gift_value, member FROM user_activity WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(Activity::default()) };
            Ok(Activity {
                online_ms: from_db(row.int("online_ms")?, "online_ms")?,
                messages: from_db(row.int("messages")?, "messages")?,
                likes: from_db(row.int("likes")?, "likes")?,
                gift_value: from_db(row.int("gift_value")?, "gift_value")?,
                member: row.flag("member")?,
            })
        })
    }

    /// Adds many users' activity in one transaction.
    ///
    /// Each entry is (user, increments, member flag to set if any). Counters are added
    /// to what is stored — never overwritten — so nodes of a cluster that credit the
    /// same user (messages where the room is sequenced, online time where the user is
    /// connected) never lose each other's increments.
    pub async fn add_activity(&self, batch: &[(String, Activity, Option<bool>)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for (user, a, member) in batch {
                sqlx::query(
                    "INSERT INTO user_activity (user_id, online_ms, messages, likes, gift_value, member) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (user_id) DO UPDATE SET \
                     online_ms = user_activity.online_ms + excluded.online_ms, \
                     messages = user_activity.messages + excluded.messages, \
                     likes = user_activity.likes + excluded.likes, \
                     gift_value = user_activity.gift_value + excluded.gift_value, \
                     member = CASE WHEN $7 THEN excluded.member ELSE user_activity.member END",
                )
                .bind(user)
                .bind(to_db(a.online_ms, "online_ms")?)
                .bind(to_db(a.messages, "messages")?)
                .bind(to_db(a.likes, "likes")?)
                .bind(to_db(a.gift_value, "gift_value")?)
                .bind(member.unwrap_or(false))
                .bind(member.is_some())
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// A room's stored statistics (zero if none).
    pub async fn room_stats(&self, room_id: &str) -> Result<RoomStats, StoreError> {
        on_pool!(&self.db, pool => {
            let row = sqlx::query(
                "SELECT peak_online, messages, likes, gifts, gift_value, watch_ms FROM room_stats WHERE room_id = $1",
            )
            .bind(room_id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else { return Ok(RoomStats::default()) };
            Ok(RoomStats::restore(
                from_db(row.int("peak_online")?, "peak_online")?,
                from_db(row.int("messages")?, "messages")?,
                from_db(row.int("likes")?, "likes")?,
                from_db(row.int("gifts")?, "gifts")?,
                from_db(row.int("gift_value")?, "gift_value")?,
                from_db(row.int("watch_ms")?, "watch_ms")?,
            ))
        })
    }

    /// Stores many rooms' statistics (absolute values) in one transaction. Rooms
    /// deleted meanwhile are skipped.
    pub async fn save_room_stats(&self, batch: &[(String, RoomStats)]) -> Result<(), StoreError> {
        if batch.is_empty() {
            return Ok(());
        }
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            for (room, s) in batch {
                sqlx::query(
                    "INSERT INTO room_stats (room_id, peak_online, messages, likes, gifts, gift_value, watch_ms) \
                     SELECT $1, $2, $3, $4, $5, $6, $7 WHERE EXISTS (SELECT 1 FROM rooms WHERE id = $1) \
                     ON CONFLICT (room_id) DO UPDATE SET peak_online = excluded.peak_online, \
                     messages = excluded.messages, likes = excluded.likes, gifts = excluded.gifts, \
                     gift_value = excluded.gift_value, watch_ms = excluded.watch_ms",
                )
                .bind(room)
                .bind(to_db(s.peak_online, "peak_online")?)
                .bind(to_db(s.messages, "messages")?)
                .bind(to_db(s.likes, "likes")?)
                .bind(to_db(s.gifts, "gifts")?)
                .bind(to_db(s.gift_value, "gift_value")?)
                .bind(to_db(s.watch_ms, "watch_ms")?)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    /// Inserts or replaces a lottery.
    pub async fn save_lottery(&self, l: &LotteryRecord) -> Result<(), StoreError> {
        let ints = [
            to_db(l.started_at, "started_at")?,
            to_db(l.ends_at, "ends_at")?,
            i64::from(l.winner_count),
            i64::from(l.min_level),
            to_db(l.drawn_at, "drawn_at")?,
        ];
        let pool_json = encode_json(&l.pool, "pool")?;
        let winners_json = encode_json(&l.winners, "winners")?;
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO lotteries (id, room_id, keyword, started_at, ends_at, winner_count, min_level, status, \
                 seed, pool, winners, created_by, drawn_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (id) DO UPDATE SET status = excluded.status, seed = excluded.seed, pool = excluded.pool, \
                 winners = excluded.winners, drawn_at = excluded.drawn_at, ends_at = excluded.ends_at",
            )
            .bind(&l.id)
            .bind(&l.room_id)
            .bind(&l.keyword)
            .bind(ints[0])
            .bind(ints[1])
            .bind(ints[2])
            .bind(ints[3])
            .bind(&l.status)
            .bind(&l.seed)
            .bind(&pool_json)
            .bind(&winners_json)
            .bind(&l.created_by)
            .bind(ints[4])
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// One lottery.
    pub async fn lottery(&self, id: &str) -> Result<Option<LotteryRecord>, StoreError> {
        let sql = format!("SELECT {LOTTERY_COLUMNS} FROM lotteries WHERE id = $1");
        on_pool!(&self.db, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(lottery_from_row).transpose()
        })
    }

    /// A room's lotteries, newest first.
    pub async fn lotteries(&self, room_id: &str, limit: usize) -> Result<Vec<LotteryRecord>, StoreError> {
        let sql =
            format!("SELECT {LOTTERY_COLUMNS} FROM lotteries WHERE room_id = $1 ORDER BY started_at DESC, id LIMIT $2");
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id).bind(limit_db(limit)).fetch_all(pool).await?;
            rows.iter().map(lottery_from_row).collect()
        })
    }

    /// Lotteries still running (to resume after a restart).
    pub async fn running_lotteries(&self) -> Result<Vec<LotteryRecord>, StoreError> {
        let sql = format!("SELECT {LOTTERY_COLUMNS} FROM lotteries WHERE status = 'running'");
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
            rows.iter().map(lottery_from_row).collect()
        })
    }
}

/// One ledger row to write (integers already in the database's range).
#[derive(Clone, Copy)]
struct LedgerRow<'a> {
    user_id: &'a str,
    kind: &'a str,
    amount: i64,
    balance_after: i64,
    gift_id: &'a str,
    gift_count: i64,
    room_id: &'a str,
    counterparty: &'a str,
    key: &'a str,
    at: i64,
}

impl<'a> LedgerRow<'a> {
    fn new(user_id: &'a str, kind: &'a str) -> Self {
        LedgerRow {
            user_id,
            kind,
            amount: 0,
            balance_after: 0,
            gift_id: "",
            gift_count: 0,
            room_id: "",
            counterparty: "",
            key: "",
            at: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use onair_core::room::RoomProfile;

    use super::*;
    use crate::test_util::each_backend;

    fn rose() -> Gift {
        Gift {
            gift_id: "rose".into(),
            name: "Rose".into(),
            price: 10,
            icon: "https://cdn.example/rose.png".into(),
            animation: String::new(),
        }
    }

    fn order<'a>(sender: &'a str, anchor: &'a str, gift: &'a Gift, count: u64, key: &'a str) -> GiftOrder<'a> {
        GiftOrder { sender, anchor, room_id: "r", gift, count, cost: gift.price * count, key }
    }

    #[tokio::test]
    async fn money_catalog_activity_stats_and_lotteries_round_trip() {
        each_backend(|db| async move {
            let store = db.open().await;
            let gift = rose();
            store.put_gift(&gift).await.expect("put");
            store.put_gift(&Gift { gift_id: "car".into(), price: 500, ..rose() }).await.expect("put");
            assert_eq!(
                store.gifts().await.expect("gifts").iter().map(|g| g.gift_id.as_str()).collect::<Vec<_>>(),
                ["rose", "car"]
            );
            assert!(store.delete_gift("car").await.expect("delete"));
            assert!(!store.delete_gift("car").await.expect("delete again"));
            assert_eq!(store.gifts().await.expect("gifts"), vec![gift.clone()]);

            // Top-ups: once per key; the same key with another amount is refused.
            let t1 = store.top_up("alice", 100, "t1", "admin").await.expect("top up");
            assert_eq!((t1.balance, t1.replayed), (100, false));
            let again = store.top_up("alice", 100, "t1", "admin").await.expect("replay");
            assert_eq!((again.ledger_id, again.balance, again.replayed), (t1.ledger_id, 100, true));
            assert!(matches!(store.top_up("alice", 5, "t1", "admin").await, Err(MoneyError::KeyReused)));

            // Gifts: debit, credit, leaderboard, earnings, replay, refusal.
            let paid = store.send_gift(&order("alice", "anchor", &gift, 3, "g1")).await.expect("gift");
            assert_eq!((paid.balance, paid.replayed), (70, false));
            let replay = store.send_gift(&order("alice", "anchor", &gift, 3, "g1")).await.expect("replay");
            assert_eq!((replay.ledger_id, replay.balance, replay.replayed), (paid.ledger_id, 70, true));
            let reused = store.send_gift(&order("alice", "anchor", &gift, 2, "g1")).await;
            assert!(matches!(reused, Err(MoneyError::KeyReused)), "{reused:?}");
            let poor = store.send_gift(&order("alice", "anchor", &gift, 8, "g2")).await;
            assert!(matches!(poor, Err(MoneyError::Insufficient { balance: 70, cost: 80 })), "{poor:?}");
            let nobody = store.send_gift(&order("nobody", "anchor", &gift, 1, "g3")).await;
            assert!(matches!(nobody, Err(MoneyError::Insufficient { balance: 0, cost: 10 })), "{nobody:?}");
            assert_eq!(
                store.wallet("alice").await.expect("w"),
                WalletRecord { user_id: "alice".into(), balance: 70, earnings: 0 }
            );
            assert_eq!(store.wallet("anchor").await.expect("w").earnings, 30);
            assert_eq!(store.wallet("stranger").await.expect("w").balance, 0);
            assert_eq!(store.gift_leaderboard("r", 10).await.expect("board"), vec![("alice".to_string(), 30)]);
            assert_eq!(store.earnings_by_room("anchor").await.expect("earnings"), vec![("r".to_string(), 30)]);

            let ledger = store.ledger("alice", 0, 10).await.expect("ledger");
            let rows: Vec<_> = ledger.iter().map(|e| (e.kind.as_str(), e.amount, e.balance_after)).collect();
            assert_eq!(rows, [("gift", -30, 70), ("topup", 100, 100)]);
            assert_eq!(ledger[0].id, paid.ledger_id);
            assert_eq!(
                (ledger[0].gift_id.as_str(), ledger[0].gift_count, ledger[0].room_id.as_str()),
                ("rose", 3, "r")
            );
            assert_eq!((ledger[0].counterparty.as_str(), ledger[0].idempotency_key.as_str()), ("anchor", "g1"));
            assert_eq!(store.ledger("alice", ledger[0].id, 10).await.expect("page"), ledger[1..].to_vec());
            let earned = store.ledger("anchor", 0, 10).await.expect("ledger");
            assert_eq!(
                (earned[0].kind.as_str(), earned[0].amount, earned[0].counterparty.as_str()),
                ("earning", 30, "alice")
            );

            // Activity is added up (member set only when given); statistics are
            // absolute values and need the room.
            let a = Activity { online_ms: 5, messages: 6, likes: 7, gift_value: 8, member: false };
            store.add_activity(&[("alice".into(), a, Some(true))]).await.expect("activity");
            store.add_activity(&[("alice".into(), a, None)]).await.expect("activity");
            let got = store.activity("alice").await.expect("activity");
            assert_eq!((got.online_ms, got.messages, got.likes, got.gift_value, got.member), (10, 12, 14, 16, true));
            store.add_activity(&[("alice".into(), Activity::default(), Some(false))]).await.expect("activity");
            assert!(!store.activity("alice").await.expect("activity").member);
            assert_eq!(store.activity("nobody").await.expect("activity").messages, 0);
            let stats = RoomStats::restore(1, 2, 3, 4, 5, 6);
            store.save_room_stats(&[("r".into(), stats)]).await.expect("stats without room");
            assert_eq!(store.room_stats("r").await.expect("stats").messages, 0, "no room, no stats");
            store.insert_room(&RoomProfile::new("r".into(), "R".into(), "anchor".into(), 1)).await.expect("room");
            store.save_room_stats(&[("r".into(), stats)]).await.expect("stats");
            store.save_room_stats(&[("r".into(), RoomStats::restore(1, 2, 9, 4, 5, 6))]).await.expect("stats");
            let got = store.room_stats("r").await.expect("stats");
            assert_eq!((got.peak_online, got.messages, got.likes, got.watch_ms), (1, 2, 9, 6));

            // Lotteries: insert, update in place, list.
            let mut l = LotteryRecord {
                id: "l1".into(),
                room_id: "r".into(),
                keyword: "win".into(),
                started_at: 10,
                ends_at: 20,
                winner_count: 2,
                min_level: 1,
                status: "running".into(),
                pool: vec!["a".into(), "b".into()],
                created_by: "anchor".into(),
                ..Default::default()
            };
            store.save_lottery(&l).await.expect("lottery");
            assert_eq!(store.running_lotteries().await.expect("running"), vec![l.clone()]);
            l.status = "drawn".into();
            l.seed = "00000000deadbeef".into();
            l.winners = vec!["b".into()];
            l.drawn_at = 21;
            store.save_lottery(&l).await.expect("draw");
            assert_eq!(store.lottery("l1").await.expect("one"), Some(l.clone()));
            assert_eq!(store.lottery("nope").await.expect("none"), None);
            assert!(store.running_lotteries().await.expect("running").is_empty());
            assert_eq!(store.lotteries("r", 10).await.expect("list"), vec![l]);
            store.close().await;
        })
        .await;
    }

    /// Many requests at once against one wallet: no overdraft, every key debited
    /// once, the ledger exact. On PostgreSQL this exercises the row lock, the retry
    /// after a unique violation (same key on a wallet that does not exist yet) and
    /// after a deadlock (gifts in both directions between two wallets).
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn parallel_money_requests_end_exact() {
        each_backend(|db| async move {
            let store = db.open().await;
            let gift = Arc::new(rose());
            store.top_up("carol", 1_000, "t", "admin").await.expect("top up"); // 100 roses
            store.top_up("x", 1_000, "t", "admin").await.expect("top up");
            store.top_up("y", 1_000, "t", "admin").await.expect("top up");
            store.top_up("dave", 100, "t", "admin").await.expect("top up");
            let mut distinct = Vec::new();
            for i in 0..150 {
                let (store, gift) = (store.clone(), gift.clone());
                distinct.push(tokio::spawn(async move {
                    store.send_gift(&order("carol", "anchor", &gift, 1, &format!("p{i}"))).await
                }));
            }
            // One key, 20 requests at once: one debit, 19 replays of it.
            let mut same = Vec::new();
            for _ in 0..20 {
                let (store, gift) = (store.clone(), gift.clone());
                same.push(tokio::spawn(
                    async move { store.send_gift(&order("dave", "anchor", &gift, 2, "same")).await },
                ));
            }
            // One top-up key, 20 requests at once, on a wallet that does not exist yet.
            let mut topups = Vec::new();
            for _ in 0..20 {
                let store = store.clone();
                topups.push(tokio::spawn(async move { store.top_up("erin", 50, "once", "admin").await }));
            }
            // Gifts both ways between x and y (opposite lock order on PostgreSQL).
            let mut cross = Vec::new();
            for i in 0..40 {
                let (store, gift) = (store.clone(), gift.clone());
                let (from, to) = if i % 2 == 0 { ("x", "y") } else { ("y", "x") };
                cross.push(tokio::spawn(
                    async move { store.send_gift(&order(from, to, &gift, 1, &format!("c{i}"))).await },
                ));
            }

            let (mut ok, mut poor) = (0, 0);
            for t in distinct {
                match t.await.expect("task") {
                    Ok(r) => {
                        assert!(!r.replayed);
                        ok += 1;
                    }
                    Err(MoneyError::Insufficient { .. }) => poor += 1,
                    Err(e) => panic!("distinct keys: {e}"),
                }
            }
            assert_eq!((ok, poor), (100, 50));
            let mut receipts = Vec::new();
            for t in same {
                receipts.push(t.await.expect("task").expect("same key never fails"));
            }
            assert_eq!(receipts.iter().filter(|r| !r.replayed).count(), 1, "{receipts:?}");
            assert!(receipts.iter().all(|r| r.ledger_id == receipts[0].ledger_id && r.balance == 80));
            let mut receipts = Vec::new();
            for t in topups {
                receipts.push(t.await.expect("task").expect("same top-up key never fails"));
            }
            assert_eq!(receipts.iter().filter(|r| !r.replayed).count(), 1, "{receipts:?}");
            assert!(receipts.iter().all(|r| r.ledger_id == receipts[0].ledger_id && r.balance == 50));
            for t in cross {
                t.await.expect("task").expect("cross gifts all go through");
            }

            assert_eq!(store.wallet("carol").await.expect("w").balance, 0);
            assert_eq!(store.wallet("dave").await.expect("w").balance, 80);
            assert_eq!(store.wallet("erin").await.expect("w").balance, 50);
            let (x, y) = (store.wallet("x").await.expect("w"), store.wallet("y").await.expect("w"));
            assert_eq!((x.balance, x.earnings, y.balance, y.earnings), (800, 200, 800, 200));
            assert_eq!(store.wallet("anchor").await.expect("w").earnings, 1_000 + 20);
            let carol = store.ledger("carol", 0, 500).await.expect("ledger");
            assert_eq!(carol.iter().filter(|e| e.kind == "gift").count(), 100);
            // Every row's balance_after is exact: newest first, 0, 10, 20, ….
            let afters: Vec<u64> = carol.iter().filter(|e| e.kind == "gift").map(|e| e.balance_after).collect();
            assert_eq!(afters, (0..100).map(|i| i * 10).collect::<Vec<_>>());
            assert_eq!(store.ledger("dave", 0, 50).await.expect("ledger").len(), 2, "top-up and one gift");
            assert_eq!(store.ledger("erin", 0, 50).await.expect("ledger").len(), 1, "one top-up");
            assert_eq!(store.gift_leaderboard("r", 10).await.expect("board")[0], ("carol".to_string(), 1_000));
            store.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn a_bad_store_url_fails_clearly() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Store::connect("mysql://h/db", dir.path()).await.expect_err("unsupported");
        assert!(matches!(err, StoreError::Config(_)), "{err}");
        // Nothing listens on port 1: start-up fails (within the connect timeout)
        // and says where it tried.
        let started = std::time::Instant::now();
        let err = Store::connect("postgres://onair:secret@127.0.0.1:1/onair", dir.path()).await.expect_err("down");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Unreachable(_)), "{text}");
        assert!(text.contains("postgres://onair@127.0.0.1:1/onair") && !text.contains("secret"), "{text}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "refused fails fast: {:?}", started.elapsed());
        // A server that is up but has no such database: refused at once as well.
        if let Some(pg) = crate::test_util::ScratchPostgres::create().await {
            let url = format!("{}_missing", pg.url);
            let err = Store::connect(&url, dir.path()).await.expect_err("no such database");
            assert!(matches!(err, StoreError::Unreachable(_)), "{err}");
            assert!(err.to_string().contains("_missing"), "{err}");
        }
    }
}
