//! [`Store`]: the SQLite database behind OnAir, opened once at start and shared by
//! every task (it is a cheap handle on a connection pool).
//!
//! Queries are runtime-checked (`sqlx::query`), so building needs no database, and
//! every row is decoded by hand with range checks: a row this code cannot make
//! sense of becomes [`StoreError::Corrupt`], never a panic. SQLite stores integers
//! as i64, so unsigned domain values are range-checked on the way in as well.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use onair_core::message::{ChatMessage, MsgElem, Priority, SenderProfile};
use onair_core::room::RoomProfile;
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};

use crate::StoreError;

/// Name of the database file inside the data directory.
const DB_FILE: &str = "onair.db";

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
    pub(crate) pool: SqlitePool,
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

const MESSAGE_COLUMNS: &str =
    "seq, time_ms, from_account, nick, avatar, level, priority, random, body, cloud_custom_data";

fn message_from_row(row: &SqliteRow) -> Result<ChatMessage, StoreError> {
    let body: String = row.try_get("body")?;
    Ok(ChatMessage {
        seq: from_db(row.try_get("seq")?, "seq")?,
        time_ms: from_db(row.try_get("time_ms")?, "time_ms")?,
        sender: SenderProfile {
            user_id: row.try_get("from_account")?,
            nick: row.try_get("nick")?,
            avatar: row.try_get("avatar")?,
            level: from_db(row.try_get("level")?, "level")?,
        },
        priority: priority_from_db(row.try_get("priority")?)?,
        random: from_db(row.try_get("random")?, "random")?,
        body: decode_json::<Vec<MsgElem>>(&body, "message body")?,
        cloud_custom_data: row.try_get("cloud_custom_data")?,
    })
}

fn room_from_row(row: &SqliteRow) -> Result<RoomProfile, StoreError> {
    let id: String = row.try_get("id")?;
    let app_defined: String = row.try_get("app_defined_data")?;
    let attrs: String = row.try_get("attrs")?;
    Ok(RoomProfile {
        name: row.try_get("name")?,
        introduction: row.try_get("introduction")?,
        notification: row.try_get("notification")?,
        face_url: row.try_get("face_url")?,
        owner: row.try_get("owner")?,
        app_defined_data: decode_json(&app_defined, &format!("app_defined_data of room '{id}'"))?,
        attrs: decode_json(&attrs, &format!("attrs of room '{id}'"))?,
        mute_all: row.try_get("mute_all")?,
        state: row.try_get("state")?,
        created_at: from_db(row.try_get("created_at")?, "created_at")?,
        info_seq: from_db(row.try_get("info_seq")?, "info_seq")?,
        scheduled_at: from_db(row.try_get("scheduled_at")?, "scheduled_at")?,
        state_changed_at: from_db(row.try_get("state_changed_at")?, "state_changed_at")?,
        stream: row.try_get("stream")?,
        replay_url: row.try_get("replay_url")?,
        id,
    })
}

impl Store {
    /// Creates `data_dir` if needed, opens `data_dir/onair.db` (creating it if
    /// missing) in WAL mode with `synchronous=NORMAL`, a 5 s busy timeout and
    /// foreign keys on, and applies any pending migrations.
    pub async fn open(data_dir: &Path) -> Result<Store, StoreError> {
        tokio::fs::create_dir_all(data_dir).await?;
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
        Ok(Store { pool })
    }

    /// Closes every connection (waits for checked-out ones to come back). Clones of
    /// this store fail afterwards.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The app record, or `None` before the first start created it.
    pub async fn load_app(&self) -> Result<Option<AppRecord>, StoreError> {
        let row = sqlx::query("SELECT sdkappid, secret_key, created_at FROM app WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AppRecord {
            sdkappid: from_db(row.try_get("sdkappid")?, "sdkappid")?,
            secret_key: row.try_get("secret_key")?,
            created_at: from_db(row.try_get("created_at")?, "created_at")?,
        }))
    }

    /// Creates or replaces the app record.
    pub async fn save_app(&self, app: &AppRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO app (id, sdkappid, secret_key, created_at) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO UPDATE SET sdkappid = excluded.sdkappid, \
             secret_key = excluded.secret_key, created_at = excluded.created_at",
        )
        .bind(to_db(app.sdkappid, "sdkappid")?)
        .bind(&app.secret_key)
        .bind(to_db(app.created_at, "created_at")?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A user's profile, or `None` if it was never stored.
    pub async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query("SELECT user_id, nick, avatar, level FROM users WHERE user_id = ?")
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(UserRecord {
            user_id: row.try_get("user_id")?,
            nick: row.try_get("nick")?,
            avatar: row.try_get("avatar")?,
            level: from_db(row.try_get("level")?, "level")?,
        }))
    }

    /// Creates or replaces a user's profile (stamping `updated_at` with now).
    /// The profile to stamp on a user's messages (an unknown user gets an empty one).
    pub async fn sender_profile(&self, user_id: &str) -> Result<SenderProfile, StoreError> {
        Ok(self
            .get_user(user_id)
            .await?
            .map(|r| SenderProfile::from(&r))
            .unwrap_or_else(|| SenderProfile { user_id: user_id.to_owned(), ..Default::default() }))
    }

    pub async fn upsert_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO users (user_id, nick, avatar, level, updated_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (user_id) DO UPDATE SET nick = excluded.nick, avatar = excluded.avatar, \
             level = excluded.level, updated_at = excluded.updated_at",
        )
        .bind(&user.user_id)
        .bind(&user.nick)
        .bind(&user.avatar)
        .bind(i64::from(user.level))
        .bind(to_db(now_ms(), "updated_at")?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a new room; [`StoreError::Conflict`] if the id is taken.
    pub async fn insert_room(&self, room: &RoomProfile) -> Result<(), StoreError> {
        let done = sqlx::query(
            "INSERT INTO rooms (id, name, introduction, notification, face_url, owner, \
             app_defined_data, attrs, mute_all, state, created_at, info_seq, scheduled_at, state_changed_at, \
             stream, replay_url) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&room.id)
        .bind(&room.name)
        .bind(&room.introduction)
        .bind(&room.notification)
        .bind(&room.face_url)
        .bind(&room.owner)
        .bind(encode_json(&room.app_defined_data, "app_defined_data")?)
        .bind(encode_json(&room.attrs, "attrs")?)
        .bind(room.mute_all)
        .bind(&room.state)
        .bind(to_db(room.created_at, "created_at")?)
        .bind(to_db(room.info_seq, "info_seq")?)
        .bind(to_db(room.scheduled_at, "scheduled_at")?)
        .bind(to_db(room.state_changed_at, "state_changed_at")?)
        .bind(&room.stream)
        .bind(&room.replay_url)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(room.id.clone()));
        }
        Ok(())
    }

    /// Replaces every column of the room with this id (a missing room is left
    /// missing: nothing is written).
    pub async fn update_room(&self, room: &RoomProfile) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE rooms SET name = ?, introduction = ?, notification = ?, face_url = ?, owner = ?, \
             app_defined_data = ?, attrs = ?, mute_all = ?, state = ?, created_at = ?, info_seq = ?, \
             scheduled_at = ?, state_changed_at = ?, stream = ?, replay_url = ? WHERE id = ?",
        )
        .bind(&room.name)
        .bind(&room.introduction)
        .bind(&room.notification)
        .bind(&room.face_url)
        .bind(&room.owner)
        .bind(encode_json(&room.app_defined_data, "app_defined_data")?)
        .bind(encode_json(&room.attrs, "attrs")?)
        .bind(room.mute_all)
        .bind(&room.state)
        .bind(to_db(room.created_at, "created_at")?)
        .bind(to_db(room.info_seq, "info_seq")?)
        .bind(to_db(room.scheduled_at, "scheduled_at")?)
        .bind(to_db(room.state_changed_at, "state_changed_at")?)
        .bind(&room.stream)
        .bind(&room.replay_url)
        .bind(&room.id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deletes a room and its history in one transaction; `false` if there was no
    /// such room (its stray history, if any, is still removed).
    pub async fn delete_room(&self, room_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM messages WHERE room_id = ?").bind(room_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM mutes WHERE room_id = ?").bind(room_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM room_admins WHERE room_id = ?").bind(room_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM filter_lists WHERE scope = ?").bind(room_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM bans WHERE room_id = ?").bind(room_id).execute(&mut *tx).await?;
        // Money records (ledger, earnings) outlive the room; its statistics do not.
        sqlx::query("DELETE FROM room_stats WHERE room_id = ?").bind(room_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM lotteries WHERE room_id = ?").bind(room_id).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM room_gift_totals WHERE room_id = ?").bind(room_id).execute(&mut *tx).await?;
        let done = sqlx::query("DELETE FROM rooms WHERE id = ?").bind(room_id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every room, oldest first (ties by id).
    pub async fn list_rooms(&self) -> Result<Vec<RoomProfile>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, introduction, notification, face_url, owner, app_defined_data, attrs, \
             mute_all, state, created_at, info_seq, scheduled_at, state_changed_at, stream, replay_url \
             FROM rooms ORDER BY created_at, id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(room_from_row).collect()
    }

    /// Writes every room's batch in one transaction. A `(room, seq)` already stored
    /// is skipped, not an error, so a retried batch is harmless.
    pub async fn append_messages(&self, batches: &[(String, Vec<Arc<ChatMessage>>)]) -> Result<(), StoreError> {
        if batches.iter().all(|(_, msgs)| msgs.is_empty()) {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for (room_id, msgs) in batches {
            for msg in msgs {
                sqlx::query(
                    "INSERT OR IGNORE INTO messages (room_id, seq, time_ms, from_account, nick, avatar, \
                     level, priority, random, body, cloud_custom_data) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        Ok(())
    }

    /// The highest stored seq of a room, 0 when it has no history.
    pub async fn max_seq(&self, room_id: &str) -> Result<u64, StoreError> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM messages WHERE room_id = ?")
            .bind(room_id)
            .fetch_one(&self.pool)
            .await?;
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
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM messages WHERE room_id = ? AND seq < ? AND recalled = 0 ORDER BY seq DESC LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(room_id)
            .bind(before)
            .bind(limit_db(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(message_from_row).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use onair_core::message::{
        CustomElem, FaceElem, FileElem, ImageElem, ImageInfo, LocationElem, SoundElem, TextElem, VideoFileElem,
    };

    use super::*;

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

    async fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(dir.path()).await.expect("open")
    }

    #[tokio::test]
    async fn reopen_sees_everything() {
        let dir = tempfile::tempdir().expect("tempdir");
        let nested = dir.path().join("a/b");
        let store = Store::open(&nested).await.expect("open creates dirs");
        assert_eq!(store.load_app().await.expect("load"), None);
        let app = AppRecord { sdkappid: 1_400_000_000, secret_key: "s3cret".into(), created_at: 5 };
        store.save_app(&app).await.expect("save");
        let user = UserRecord { user_id: "alice".into(), nick: "Alice".into(), avatar: "a".into(), level: 3 };
        store.upsert_user(&user).await.expect("user");
        store.insert_room(&room("r1", 1)).await.expect("room");
        store.append_messages(&[("r1".into(), vec![msg(1, "a"), msg(2, "b")])]).await.expect("append");
        store.close().await;

        let again = Store::open(&nested).await.expect("reopen");
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
    }

    #[tokio::test]
    async fn rooms_insert_conflict_update_delete_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
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
    }

    #[tokio::test]
    async fn history_paging_and_idempotent_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
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
    }

    #[tokio::test]
    async fn every_element_type_and_priority_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
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
    }

    #[tokio::test]
    async fn out_of_range_and_corrupt_rows_are_errors_not_panics() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir).await;
        let mut big = (*msg(1, "x")).clone();
        big.seq = u64::MAX;
        let res = store.append_messages(&[("r".into(), vec![Arc::new(big)])]).await;
        assert!(matches!(res, Err(StoreError::OutOfRange(_))), "{res:?}");
        assert_eq!(store.max_seq("r").await.expect("max"), 0, "nothing committed");

        store.append_messages(&[("r".into(), vec![msg(1, "x")])]).await.expect("append");
        sqlx::query("UPDATE messages SET body = 'not json'").execute(&store.pool).await.expect("corrupt");
        let res = store.latest_messages("r", 1).await;
        assert!(matches!(res, Err(StoreError::Corrupt(_))), "{res:?}");
        sqlx::query("UPDATE messages SET body = '[]', priority = 9").execute(&store.pool).await.expect("corrupt");
        let res = store.messages_before("r", None, 1).await;
        assert!(matches!(res, Err(StoreError::Corrupt(_))), "{res:?}");

        store.insert_room(&room("a", 1)).await.expect("room");
        sqlx::query("UPDATE rooms SET attrs = '[1]'").execute(&store.pool).await.expect("corrupt");
        assert!(matches!(store.list_rooms().await, Err(StoreError::Corrupt(_))));
    }
}
