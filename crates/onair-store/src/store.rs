//! [`Store`]: the database behind OnAir — the embedded SQLite file by default, or
//! PostgreSQL — opened once at start and shared by every task (it is a cheap handle
//! on a connection pool).
//!
//! Queries are runtime-checked (`sqlx::query`), so building needs no database, and
//! every row is decoded by hand with range checks: a row this code cannot make
//! sense of becomes [`StoreError::Corrupt`], never a panic. Both databases store
//! integers as i64, so unsigned domain values are range-checked on the way in as
//! well. How one query text serves both databases: see `db.rs`.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onair_core::message::{ChatMessage, MsgElem, Priority, SenderProfile};
use onair_core::room::RoomProfile;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use crate::StoreError;
use crate::db::{Backend, RowExt, on_pool};

/// Name of the database file inside the data directory.
const DB_FILE: &str = "onair.db";

/// Connections to a PostgreSQL server per node. Money requests hold one while they
/// wait for a wallet's row lock; a cluster of five nodes stays well inside
/// PostgreSQL's default `max_connections = 100`.
const PG_MAX_CONNECTIONS: u32 = 16;

/// How long start-up waits for PostgreSQL before failing.
const PG_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The app: one per server, created on first start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// The app id clients sign with.
    pub sdkappid: u64,
    /// The key user signatures are made with.
    pub secret_key: String,
    /// Creation time (Unix ms).
    pub created_at: u64,
}

/// A user's profile, stamped on the messages they send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRecord {
    /// Account id.
    pub user_id: String,
    /// Display name.
    pub nick: String,
    /// Avatar URL.
    pub avatar: String,
    /// User level.
    pub level: u32,
}

impl From<&UserRecord> for SenderProfile {
    fn from(r: &UserRecord) -> Self {
        SenderProfile { user_id: r.user_id.clone(), nick: r.nick.clone(), avatar: r.avatar.clone(), level: r.level }
    }
}

/// Handle on the database. Cloning is cheap (it shares the pool).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) db: Backend,
}

/// Converts an unsigned domain value for an INTEGER column.
pub(crate) fn to_db(value: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| StoreError::OutOfRange(format!("{what} {value} exceeds {}", i64::MAX)))
}

/// Converts an INTEGER column back into an unsigned domain value.
pub(crate) fn from_db<T: TryFrom<i64>>(value: i64, what: &str) -> Result<T, StoreError> {
    T::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} {value} is out of range")))
}

/// A row limit for SQL (`LIMIT` takes i64).
pub(crate) fn limit_db(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

fn priority_from_db(value: i64) -> Result<Priority, StoreError> {
    match value {
        0 => Ok(Priority::Lowest),
        1 => Ok(Priority::Low),
        2 => Ok(Priority::Normal),
        3 => Ok(Priority::High),
        _ => Err(StoreError::Corrupt(format!("priority {value} is not 0..=3"))),
    }
}

pub(crate) fn encode_json<T: serde::Serialize>(value: &T, what: &str) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("cannot encode {what}: {e}")))
}

pub(crate) fn decode_json<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("cannot decode {what}: {e}")))
}

const ROOM_COLUMNS: &str = "id, name, introduction, notification, face_url, owner, app_defined_data, attrs, \
     mute_all, state, created_at, info_seq, scheduled_at, state_changed_at, stream, replay_url, info_changed_at";

fn message_from_row(row: &impl RowExt) -> Result<ChatMessage, StoreError> {
    let body = row.text("body")?;
    Ok(ChatMessage {
        seq: from_db(row.int("seq")?, "seq")?,
        time_ms: from_db(row.int("time_ms")?, "time_ms")?,
        sender: SenderProfile {
            user_id: row.text("from_account")?,
            nick: row.text("nick")?,
            avatar: row.text("avatar")?,
            level: from_db(row.int("level")?, "level")?,
        },
        priority: priority_from_db(row.int("priority")?)?,
        random: from_db(row.int("random")?, "random")?,
        body: decode_json::<Vec<MsgElem>>(&body, "message body")?,
        cloud_custom_data: row.text("cloud_custom_data")?,
    })
}

fn room_from_row(row: &impl RowExt) -> Result<RoomProfile, StoreError> {
    let id = row.text("id")?;
    let app_defined = row.text("app_defined_data")?;
    let attrs = row.text("attrs")?;
    Ok(RoomProfile {
        name: row.text("name")?,
        introduction: row.text("introduction")?,
        notification: row.text("notification")?,
        face_url: row.text("face_url")?,
        owner: row.text("owner")?,
        app_defined_data: decode_json(&app_defined, &format!("app_defined_data of room '{id}'"))?,
        attrs: decode_json(&attrs, &format!("attrs of room '{id}'"))?,
        mute_all: row.flag("mute_all")?,
        state: row.text("state")?,
        created_at: from_db(row.int("created_at")?, "created_at")?,
        info_seq: from_db(row.int("info_seq")?, "info_seq")?,
        scheduled_at: from_db(row.int("scheduled_at")?, "scheduled_at")?,
        state_changed_at: from_db(row.int("state_changed_at")?, "state_changed_at")?,
        stream: row.text("stream")?,
        replay_url: row.text("replay_url")?,
        info_changed_at: from_db(row.int("info_changed_at")?, "info_changed_at")?,
        id,
    })
}

/// `postgres://user@host:port/db` without the password, for logs and errors.
fn describe_pg(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        options.get_username(),
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or("")
    )
}

/// Makes the SQLite file readable by its owner only (0600), creating it empty if
/// missing so it is never world-readable, even for a moment; SQLite gives its `-wal`
/// and `-shm` files the database file's mode, and existing ones are tightened too.
/// The database holds the app's secret key and every wallet.
fn owner_only(db: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(db);
        for suffix in ["", "-wal", "-shm"] {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            let path = std::path::PathBuf::from(name);
            if path.exists() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = db;
    Ok(())
}

impl Store {
    /// Opens the database `[store] url` names: empty = the SQLite file in
    /// `data_dir` (see [`Store::open`]); `postgres://…` or `postgresql://…` = that
    /// PostgreSQL database (see [`Store::open_postgres`]). Anything else is refused.
    pub async fn connect(url: &str, data_dir: &Path) -> Result<Store, StoreError> {
        Store::connect_with_ca(url, data_dir, None).await
    }

    /// Like [`Store::connect`]; a PostgreSQL connection that uses TLS (`sslmode=require`,
    /// `verify-ca`, `verify-full` in the URL) also trusts the PEM certificates in
    /// `ca_file` (`[tls] ca_file`) unless the URL names its own `sslrootcert`.
    pub async fn connect_with_ca(url: &str, data_dir: &Path, ca_file: Option<&Path>) -> Result<Store, StoreError> {
        let url = url.trim();
        if url.is_empty() {
            Store::open(data_dir).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let mut options = PgConnectOptions::from_str(url)?;
            if let Some(ca) = ca_file
                && !url.contains("sslrootcert=")
            {
                options = options.ssl_root_cert(ca);
            }
            Store::open_postgres_with(options).await
        } else {
            let scheme = url.split("://").next().unwrap_or(url);
            Err(StoreError::Config(format!(
                "[store] url must be empty (SQLite in the data directory) or postgres://…, not '{scheme}://…'"
            )))
        }
    }

    /// Creates `data_dir` if needed, opens `data_dir/onair.db` (creating it if
    /// missing) in WAL mode with `synchronous=NORMAL`, a 5 s busy timeout and
    /// foreign keys on, and applies any pending migrations.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        tokio::fs::create_dir_all(data_dir).await?;
        owner_only(&data_dir.join(DB_FILE))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join(DB_FILE))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        tracing::debug!(dir = %data_dir.display(), "store opened");
        Ok(Store { db: Backend::Sqlite(pool) })
    }

    /// Connects to a PostgreSQL database (which must exist) and applies any pending
    /// migrations (under sqlx's advisory lock, so nodes starting together do not
    /// race). Fails at once (or, if the server does not answer, within 10 s) with
    /// [`StoreError::Unreachable`] naming the server, if it cannot be reached.
    pub async fn open_postgres(url: &str) -> Result<Store, StoreError> {
        Store::open_postgres_with(PgConnectOptions::from_str(url)?).await
    }

    async fn open_postgres_with(options: PgConnectOptions) -> Result<Store, StoreError> {
        let options = options.application_name("onair");
        let name = describe_pg(&options);
        // First one plain connection: it fails at once, by name, on a refused
        // connection, a wrong password or a missing database (the pool would retry
        // those until its timeout), and within PG_CONNECT_TIMEOUT on a server that
        // does not answer. The pool itself keeps sqlx's 30 s wait for a free
        // connection: a burst of money requests on one wallet queues on its row lock
        // while holding connections, and must not fail for that.
        let unreachable = |why: String| StoreError::Unreachable(format!("{name}: {why}"));
        let secs = PG_CONNECT_TIMEOUT.as_secs();
        match tokio::time::timeout(PG_CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
            Ok(Ok(probe)) => {
                let _ = probe.close().await;
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {secs} s"))),
        }
        let pool = PgPoolOptions::new().max_connections(PG_MAX_CONNECTIONS).connect_with(options);
        let pool = match tokio::time::timeout(PG_CONNECT_TIMEOUT, pool).await {
            Ok(Ok(pool)) => pool,
            Ok(Err(e)) => return Err(unreachable(e.to_string())),
            Err(_) => return Err(unreachable(format!("no answer within {secs} s"))),
        };
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        tracing::debug!(db = %name, "store opened");
        Ok(Store { db: Backend::Postgres(pool) })
    }

    /// Which database this is: `"sqlite"` or `"postgres"` (for logs and health).
    pub fn backend(&self) -> &'static str {
        match self.db {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Closes every connection (waits for checked-out ones to come back). Clones of
    /// this store fail afterwards.
    pub async fn close(&self) {
        on_pool!(&self.db, pool => pool.close().await)
    }

    /// The app record, or `None` before the first start created it.
    pub async fn load_app(&self) -> Result<Option<AppRecord>, StoreError> {
        on_pool!(&self.db, pool => {
            let row = sqlx::query("SELECT sdkappid, secret_key, created_at FROM app WHERE id = 1")
                .fetch_optional(pool)
                .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(AppRecord {
                sdkappid: from_db(row.int("sdkappid")?, "sdkappid")?,
                secret_key: row.text("secret_key")?,
                created_at: from_db(row.int("created_at")?, "created_at")?,
            }))
        })
    }

    /// Creates or replaces the app record.
    pub async fn save_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        let sdkappid = to_db(app.sdkappid, "sdkappid")?;
        let created_at = to_db(app.created_at, "created_at")?;
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO app (id, sdkappid, secret_key, created_at) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET sdkappid = excluded.sdkappid, \
                 secret_key = excluded.secret_key, created_at = excluded.created_at",
            )
            .bind(sdkappid)
            .bind(&app.secret_key)
            .bind(created_at)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// A user's profile, or `None` if it was never stored.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        on_pool!(&self.db, pool => {
            let row = sqlx::query("SELECT user_id, nick, avatar, level FROM users WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(pool)
                .await?;
            let Some(row) = row else { return Ok(None) };
            Ok(Some(UserRecord {
                user_id: row.text("user_id")?,
                nick: row.text("nick")?,
                avatar: row.text("avatar")?,
                level: from_db(row.int("level")?, "level")?,
            }))
        })
    }

    /// The profile to stamp on a user's messages (an unknown user gets an empty one).
    pub async fn sender_profile(&self, user_id: &str) -> Result<SenderProfile, StoreError> {
        Ok(self
            .get_user(user_id)
            .await?
            .map(|r| SenderProfile::from(&r))
            .unwrap_or_else(|| SenderProfile { user_id: user_id.to_owned(), ..Default::default() }))
    }

    /// Creates or replaces a user's profile (stamping `updated_at` with now).
    pub async fn upsert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        let now = to_db(now_ms(), "updated_at")?;
        on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO users (user_id, nick, avatar, level, updated_at) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (user_id) DO UPDATE SET nick = excluded.nick, avatar = excluded.avatar, \
                 level = excluded.level, updated_at = excluded.updated_at",
            )
            .bind(&user.user_id)
            .bind(&user.nick)
            .bind(&user.avatar)
            .bind(i64::from(user.level))
            .bind(now)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Stores a new room; [`StoreError::Conflict`] if the id is taken.
    pub async fn insert_room(&self, room: &RoomProfile) -> Result<(), StoreError> {
        let app_defined = encode_json(&room.app_defined_data, "app_defined_data")?;
        let attrs = encode_json(&room.attrs, "attrs")?;
        let ints = [
            to_db(room.created_at, "created_at")?,
            to_db(room.info_seq, "info_seq")?,
            to_db(room.scheduled_at, "scheduled_at")?,
            to_db(room.state_changed_at, "state_changed_at")?,
            to_db(room.info_changed_at, "info_changed_at")?,
        ];
        let affected = on_pool!(&self.db, pool => {
            sqlx::query(
                "INSERT INTO rooms (id, name, introduction, notification, face_url, owner, \
                 app_defined_data, attrs, mute_all, state, created_at, info_seq, scheduled_at, state_changed_at, \
                 stream, replay_url, info_changed_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(&room.id)
            .bind(&room.name)
            .bind(&room.introduction)
            .bind(&room.notification)
            .bind(&room.face_url)
            .bind(&room.owner)
            .bind(&app_defined)
            .bind(&attrs)
            .bind(room.mute_all)
            .bind(&room.state)
            .bind(ints[0])
            .bind(ints[1])
            .bind(ints[2])
            .bind(ints[3])
            .bind(&room.stream)
            .bind(&room.replay_url)
            .bind(ints[4])
            .execute(pool)
            .await?
            .rows_affected()
        });
        if affected == 0 {
            return Err(StoreError::Conflict(room.id.clone()));
        }
        Ok(())
    }

    /// Replaces every column of the room with this id (a missing room is left
    /// missing: nothing is written).
    pub async fn update_room(&self, room: &RoomProfile) -> Result<(), StoreError> {
        let app_defined = encode_json(&room.app_defined_data, "app_defined_data")?;
        let attrs = encode_json(&room.attrs, "attrs")?;
        let ints = [
            to_db(room.created_at, "created_at")?,
            to_db(room.info_seq, "info_seq")?,
            to_db(room.scheduled_at, "scheduled_at")?,
            to_db(room.state_changed_at, "state_changed_at")?,
            to_db(room.info_changed_at, "info_changed_at")?,
        ];
        on_pool!(&self.db, pool => {
            sqlx::query(
                "UPDATE rooms SET name = $1, introduction = $2, notification = $3, face_url = $4, owner = $5, \
                 app_defined_data = $6, attrs = $7, mute_all = $8, state = $9, created_at = $10, info_seq = $11, \
                 scheduled_at = $12, state_changed_at = $13, stream = $14, replay_url = $15, info_changed_at = $16 \
                 WHERE id = $17",
            )
            .bind(&room.name)
            .bind(&room.introduction)
            .bind(&room.notification)
            .bind(&room.face_url)
            .bind(&room.owner)
            .bind(&app_defined)
            .bind(&attrs)
            .bind(room.mute_all)
            .bind(&room.state)
            .bind(ints[0])
            .bind(ints[1])
            .bind(ints[2])
            .bind(ints[3])
            .bind(&room.stream)
            .bind(&room.replay_url)
            .bind(ints[4])
            .bind(&room.id)
            .execute(pool)
            .await?;
        });
        Ok(())
    }

    /// Deletes a room and its history in one transaction; `false` if there was no
    /// such room (its stray history, if any, is still removed).
    pub async fn delete_room(&self, room_id: &str) -> Result<bool, StoreError> {
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM messages WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM mutes WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM room_admins WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM filter_lists WHERE scope = $1").bind(room_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM bans WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            // Money records (ledger, earnings) outlive the room; its statistics do not.
            sqlx::query("DELETE FROM room_stats WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM lotteries WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM room_gift_totals WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            let done = sqlx::query("DELETE FROM rooms WHERE id = $1").bind(room_id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// One room, if stored (a node that does not know a room looks here before it
    /// says the room does not exist).
    pub async fn room(&self, room_id: &str) -> Result<Option<RoomProfile>, StoreError> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms WHERE id = $1");
        on_pool!(&self.db, pool => {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(room_id).fetch_optional(pool).await?;
            row.as_ref().map(room_from_row).transpose()
        })
    }

    /// Every room, oldest first (ties by id).
    pub async fn list_rooms(&self) -> Result<Vec<RoomProfile>, StoreError> {
        let sql = format!("SELECT {ROOM_COLUMNS} FROM rooms ORDER BY created_at, id");
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
            rows.iter().map(room_from_row).collect()
        })
    }

    /// Writes every room's batch in one transaction. A `(room, seq)` already stored
    /// is skipped, not an error, so a retried batch is harmless.
    pub async fn append_messages(&self, batches: &[(String, Vec<Arc<ChatMessage>>)]) -> Result<(), StoreError> {
        if batches.iter().all(|(_, msgs)| msgs.is_empty()) {
            return Ok(());
        }
        match &self.db {
            Backend::Sqlite(pool) => {
                // One prepared statement run per row: in-process SQLite makes a row
                // a few microseconds, and the statement text (so sqlx's statement
                // cache) stays the same whatever the batch size. Plain `?`
                // placeholders here, not `$N`: sqlx's SQLite driver looks every `$N`
                // up by name on each execution, which measurably slowed the bulk
                // insert; this is the hottest statement, so it keeps positional ones.
                let mut tx = pool.begin().await?;
                for (room_id, msgs) in batches {
                    for msg in msgs {
                        sqlx::query(
                            "INSERT INTO messages (room_id, seq, time_ms, from_account, nick, avatar, \
                             level, priority, random, body, cloud_custom_data) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                        )
                        .bind(room_id)
                        .bind(to_db(msg.seq, "seq")?)
                        .bind(to_db(msg.time_ms, "time_ms")?)
                        .bind(&msg.sender.user_id)
                        .bind(&msg.sender.nick)
                        .bind(&msg.sender.avatar)
                        .bind(i64::from(msg.sender.level))
                        .bind(msg.priority.index() as i64)
                        .bind(i64::from(msg.random))
                        .bind(encode_json(&msg.body, "message body")?)
                        .bind(&msg.cloud_custom_data)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                tx.commit().await?;
            }
            Backend::Postgres(pool) => {
                // PostgreSQL is a network round trip away, so a row per statement
                // would cost a round trip per message: the whole batch goes as one
                // statement of column arrays instead (rows keep their order, so on
                // a repeated (room, seq) the first one still wins).
                let rows: usize = batches.iter().map(|(_, m)| m.len()).sum();
                let mut cols = PgMessageColumns::with_capacity(rows);
                for (room_id, msgs) in batches {
                    for msg in msgs {
                        cols.push(room_id, msg)?;
                    }
                }
                sqlx::query(
                    "INSERT INTO messages (room_id, seq, time_ms, from_account, nick, avatar, \
                     level, priority, random, body, cloud_custom_data) \
                     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], \
                     $7::int8[], $8::int8[], $9::int8[], $10::text[], $11::text[]) ON CONFLICT DO NOTHING",
                )
                .bind(cols.room_id)
                .bind(cols.seq)
                .bind(cols.time_ms)
                .bind(cols.from_account)
                .bind(cols.nick)
                .bind(cols.avatar)
                .bind(cols.level)
                .bind(cols.priority)
                .bind(cols.random)
                .bind(cols.body)
                .bind(cols.cloud_custom_data)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// The highest stored seq of a room, 0 when it has no history.
    pub async fn max_seq(&self, room_id: &str) -> Result<u64, StoreError> {
        let max: Option<i64> = on_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT MAX(seq) FROM messages WHERE room_id = $1")
                .bind(room_id)
                .fetch_one(pool)
                .await?
        });
        max.map_or(Ok(0), |m| from_db(m, "seq"))
    }

    /// The newest `limit` messages of a room, oldest first (to refill the in-memory
    /// history on start).
    pub async fn latest_messages(&self, room_id: &str, limit: usize) -> Result<Vec<Arc<ChatMessage>>, StoreError> {
        let mut msgs = self.messages_before(room_id, None, limit).await?;
        msgs.reverse();
        Ok(msgs.into_iter().map(Arc::new).collect())
    }

    /// Up to `limit` messages with `seq < before_seq` (or the newest when `None`),
    /// newest first: pages backwards through a room's history. Recalled messages are
    /// never returned.
    pub async fn messages_before(
        &self,
        room_id: &str,
        before_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let before = match before_seq {
            Some(seq) => i64::try_from(seq).unwrap_or(i64::MAX),
            None => i64::MAX,
        };
        on_pool!(&self.db, pool => {
            let rows = sqlx::query(
                "SELECT seq, time_ms, from_account, nick, avatar, level, priority, random, body, cloud_custom_data \
                 FROM messages WHERE room_id = $1 AND seq < $2 AND recalled = 0 ORDER BY seq DESC LIMIT $3",
            )
            .bind(room_id)
            .bind(before)
            .bind(limit_db(limit))
            .fetch_all(pool)
            .await?;
            rows.iter().map(message_from_row).collect()
        })
    }
}

/// A history batch as column arrays, for PostgreSQL's `UNNEST` insert.
#[derive(Default)]
struct PgMessageColumns {
    room_id: Vec<String>,
    seq: Vec<i64>,
    time_ms: Vec<i64>,
    from_account: Vec<String>,
    nick: Vec<String>,
    avatar: Vec<String>,
    level: Vec<i64>,
    priority: Vec<i64>,
    random: Vec<i64>,
    body: Vec<String>,
    cloud_custom_data: Vec<String>,
}

impl PgMessageColumns {
    fn with_capacity(n: usize) -> Self {
        PgMessageColumns {
            room_id: Vec::with_capacity(n),
            seq: Vec::with_capacity(n),
            time_ms: Vec::with_capacity(n),
            from_account: Vec::with_capacity(n),
            nick: Vec::with_capacity(n),
            avatar: Vec::with_capacity(n),
            level: Vec::with_capacity(n),
            priority: Vec::with_capacity(n),
            random: Vec::with_capacity(n),
            body: Vec::with_capacity(n),
            cloud_custom_data: Vec::with_capacity(n),
        }
    }

    fn push(&mut self, room_id: &str, msg: &ChatMessage) -> Result<(), StoreError> {
        // Range checks first, so a bad message leaves no half-pushed row behind.
        let seq = to_db(msg.seq, "seq")?;
        let time_ms = to_db(msg.time_ms, "time_ms")?;
        let body = encode_json(&msg.body, "message body")?;
        self.room_id.push(room_id.to_owned());
        self.seq.push(seq);
        self.time_ms.push(time_ms);
        self.from_account.push(msg.sender.user_id.clone());
        self.nick.push(msg.sender.nick.clone());
        self.avatar.push(msg.sender.avatar.clone());
        self.level.push(i64::from(msg.sender.level));
        self.priority.push(msg.priority.index() as i64);
        self.random.push(i64::from(msg.random));
        self.body.push(body);
        self.cloud_custom_data.push(msg.cloud_custom_data.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use onair_core::message::{
        CustomElem, FaceElem, FileElem, ImageElem, ImageInfo, LocationElem, SoundElem, TextElem, VideoFileElem,
    };

    use super::*;
    use crate::test_util::each_backend;

    fn msg(seq: u64, text: &str) -> Arc<ChatMessage> {
        Arc::new(ChatMessage {
            seq,
            time_ms: 1_700_000_000_000 + seq,
            sender: SenderProfile {
                user_id: "alice".into(),
                nick: "Alice".into(),
                avatar: "http://a/x.png".into(),
                level: 7,
            },
            priority: Priority::Normal,
            random: 42,
            body: vec![MsgElem::Text(TextElem { text: text.into() })],
            cloud_custom_data: "ccd".into(),
        })
    }

    fn room(id: &str, created_at: u64) -> RoomProfile {
        let mut r = RoomProfile::new(id.into(), format!("room {id}"), "anchor".into(), created_at);
        r.app_defined_data = BTreeMap::from([("k".into(), "v".into())]);
        r.attrs = BTreeMap::from([("seat1".into(), "bob".into())]);
        r
    }

    #[tokio::test]
    async fn reopen_sees_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        Store::open(&nested).await.expect("open creates dirs").close().await;
        assert!(nested.join(DB_FILE).exists());

        each_backend(|db| async move {
            let store = db.open().await;
            assert_eq!(store.load_app().await.expect("load"), None);
            let app = AppRecord { sdkappid: 1_400_000_000, secret_key: "s3cret".into(), created_at: 5 };
            store.save_app(&app).await.expect("save");
            let user = UserRecord { user_id: "alice".into(), nick: "Alice".into(), avatar: "a".into(), level: 3 };
            store.upsert_user(&user).await.expect("user");
            store.insert_room(&room("r1", 1)).await.expect("room");
            store.append_messages(&[("r1".into(), vec![msg(1, "a"), msg(2, "b")])]).await.expect("append");
            store.close().await;

            let again = db.open().await;
            assert_eq!(again.load_app().await.expect("load"), Some(app.clone()));
            assert_eq!(again.get_user("alice").await.expect("user"), Some(user));
            assert_eq!(again.get_user("nobody").await.expect("user"), None);
            assert_eq!(again.list_rooms().await.expect("rooms"), vec![room("r1", 1)]);
            assert_eq!(again.max_seq("r1").await.expect("max"), 2);
            let latest = again.latest_messages("r1", 10).await.expect("latest");
            assert_eq!(latest, vec![msg(1, "a"), msg(2, "b")]);

            // Upserts replace.
            let app2 = AppRecord { secret_key: "rotated".into(), ..app };
            again.save_app(&app2).await.expect("save");
            assert_eq!(again.load_app().await.expect("load"), Some(app2));
            let user2 = UserRecord { user_id: "alice".into(), nick: "Al".into(), avatar: String::new(), level: 9 };
            again.upsert_user(&user2).await.expect("user");
            assert_eq!(again.get_user("alice").await.expect("user"), Some(user2));
            again.close().await;
        })
        .await;
    }

    #[tokio::test]
    async fn rooms_insert_conflict_update_delete_list() {
        each_backend(|db| async move {
            let store = db.open().await;
            store.insert_room(&room("b", 10)).await.expect("b");
            store.insert_room(&room("a", 10)).await.expect("a");
            store.insert_room(&room("z", 5)).await.expect("z");
            let dup = store.insert_room(&room("a", 99)).await;
            assert!(matches!(dup, Err(StoreError::Conflict(ref id)) if id == "a"), "{dup:?}");

            let ids: Vec<_> = store.list_rooms().await.expect("list").into_iter().map(|r| r.id).collect();
            assert_eq!(ids, ["z", "a", "b"], "created_at, then id");

            let mut a = room("a", 10);
            a.name = "renamed".into();
            a.mute_all = true;
            a.state = "live".into();
            a.info_seq = 4;
            a.attrs.clear();
            a.app_defined_data.insert("x".into(), "{\"json\":true}".into());
            store.update_room(&a).await.expect("update");
            let rooms = store.list_rooms().await.expect("list");
            assert_eq!(rooms.iter().find(|r| r.id == "a"), Some(&a));

            store
                .append_messages(&[("a".into(), vec![msg(1, "x")]), ("b".into(), vec![msg(1, "y")])])
                .await
                .expect("append");
            assert!(store.delete_room("a").await.expect("delete"));
            assert!(!store.delete_room("a").await.expect("delete again"));
            assert_eq!(store.max_seq("a").await.expect("max"), 0, "history went with the room");
            assert_eq!(store.max_seq("b").await.expect("max"), 1, "other rooms untouched");
            let ids: Vec<_> = store.list_rooms().await.expect("list").into_iter().map(|r| r.id).collect();
            assert_eq!(ids, ["z", "b"]);
            // The id is free again.
            store.insert_room(&room("a", 11)).await.expect("reinsert");
        })
        .await;
    }

    #[tokio::test]
    async fn history_paging_and_idempotent_appends() {
        each_backend(|db| async move {
            let store = db.open().await;
            assert_eq!(store.max_seq("r").await.expect("max"), 0);
            assert!(store.latest_messages("r", 5).await.expect("latest").is_empty());

            let all: Vec<_> = (1..=25).map(|s| msg(s, &format!("m{s}"))).collect();
            store.append_messages(&[("r".into(), all[..10].to_vec())]).await.expect("first");
            store
                .append_messages(&[("r".into(), all[10..].to_vec()), ("other".into(), vec![msg(1, "o")])])
                .await
                .expect("second");
            assert_eq!(store.max_seq("r").await.expect("max"), 25);

            // Re-inserting stored (room, seq) pairs is ignored; the first write wins.
            store.append_messages(&[("r".into(), vec![msg(3, "changed"), msg(25, "changed")])]).await.expect("again");
            let latest = store.latest_messages("r", 5).await.expect("latest");
            let seqs: Vec<_> = latest.iter().map(|m| m.seq).collect();
            assert_eq!(seqs, [21, 22, 23, 24, 25], "newest five, oldest first");
            assert_eq!(latest[4], all[24]);
            assert_eq!(store.latest_messages("r", 100).await.expect("latest").len(), 25);

            // Page backwards 10 at a time: newest first.
            let page1 = store.messages_before("r", None, 10).await.expect("p1");
            assert_eq!(page1.iter().map(|m| m.seq).collect::<Vec<_>>(), (16..=25).rev().collect::<Vec<_>>());
            let page2 = store.messages_before("r", Some(16), 10).await.expect("p2");
            assert_eq!(page2.iter().map(|m| m.seq).collect::<Vec<_>>(), (6..=15).rev().collect::<Vec<_>>());
            let page3 = store.messages_before("r", Some(6), 10).await.expect("p3");
            assert_eq!(page3.iter().map(|m| m.seq).collect::<Vec<_>>(), [5, 4, 3, 2, 1]);
            assert_eq!(page3[2], *all[2], "ignored re-insert did not overwrite");
            assert!(store.messages_before("r", Some(1), 10).await.expect("p4").is_empty());
            assert!(store.messages_before("r", Some(u64::MAX), 0).await.expect("zero").is_empty());
            assert_eq!(store.messages_before("other", None, 10).await.expect("other").len(), 1);
        })
        .await;
    }

    #[tokio::test]
    async fn every_element_type_and_priority_round_trips() {
        each_backend(|db| async move {
            let store = db.open().await;
            let body = vec![
                MsgElem::Text(TextElem { text: "héllo \"quoted\" 🎉".into() }),
                MsgElem::Custom(CustomElem {
                    data: "{\"cmd\":\"gift\"}".into(),
                    desc: Some("d".into()),
                    ext: None,
                    sound: Some("s".into()),
                }),
                MsgElem::Face(FaceElem { index: 3, data: Some("smile".into()) }),
                MsgElem::Image(ImageElem {
                    uuid: Some("u".into()),
                    image_format: Some(3),
                    image_info_array: vec![ImageInfo {
                        kind: 1,
                        size: 10,
                        width: 2,
                        height: 3,
                        url: "http://x/a.png".into(),
                    }],
                }),
                MsgElem::Location(LocationElem { desc: "here".into(), latitude: 37.5665, longitude: 126.978 }),
                MsgElem::Sound(SoundElem {
                    url: "http://x/a.mp3".into(),
                    uuid: None,
                    size: 1,
                    second: 2,
                    download_flag: Some(2),
                }),
                MsgElem::VideoFile(VideoFileElem {
                    video_url: "http://x/v.mp4".into(),
                    video_uuid: Some("v".into()),
                    video_size: 1,
                    video_second: 2,
                    video_format: "mp4".into(),
                    video_download_flag: Some(2),
                    thumb_url: "http://x/t.jpg".into(),
                    thumb_uuid: None,
                    thumb_size: 4,
                    thumb_width: 5,
                    thumb_height: 6,
                    thumb_format: "JPG".into(),
                    thumb_download_flag: None,
                }),
                MsgElem::File(FileElem {
                    url: "http://x/f".into(),
                    uuid: Some("f".into()),
                    file_size: 3,
                    file_name: "f.txt".into(),
                    download_flag: Some(2),
                }),
            ];
            let msgs: Vec<_> = Priority::HIGH_TO_LOW
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    Arc::new(ChatMessage {
                        seq: i as u64 + 1,
                        time_ms: u64::MAX >> 1,
                        sender: SenderProfile {
                            user_id: "u".into(),
                            nick: String::new(),
                            avatar: String::new(),
                            level: u32::MAX,
                        },
                        priority: *p,
                        random: u32::MAX,
                        body: body.clone(),
                        cloud_custom_data: String::new(),
                    })
                })
                .collect();
            store.append_messages(&[("r".into(), msgs.clone())]).await.expect("append");
            assert_eq!(store.latest_messages("r", 10).await.expect("latest"), msgs);
        })
        .await;
    }

    #[tokio::test]
    async fn out_of_range_and_corrupt_rows_are_errors_not_panics() {
        each_backend(|db| async move {
            let store = db.open().await;
            let mut big = (*msg(1, "x")).clone();
            big.seq = u64::MAX;
            let res = store.append_messages(&[("r".into(), vec![Arc::new(big)])]).await;
            assert!(matches!(res, Err(StoreError::OutOfRange(_))), "{res:?}");
            assert_eq!(store.max_seq("r").await.expect("max"), 0, "nothing committed");

            store.append_messages(&[("r".into(), vec![msg(1, "x")])]).await.expect("append");
            store.exec_raw("UPDATE messages SET body = 'not json'").await.expect("corrupt");
            let res = store.latest_messages("r", 1).await;
            assert!(matches!(res, Err(StoreError::Corrupt(_))), "{res:?}");
            store.exec_raw("UPDATE messages SET body = '[]', priority = 9").await.expect("corrupt");
            let res = store.messages_before("r", None, 1).await;
            assert!(matches!(res, Err(StoreError::Corrupt(_))), "{res:?}");

            store.insert_room(&room("a", 1)).await.expect("room");
            store.exec_raw("UPDATE rooms SET attrs = '[1]'").await.expect("corrupt");
            assert!(matches!(store.list_rooms().await, Err(StoreError::Corrupt(_))));
        })
        .await;
    }
}
