//! Durable mutes and bans: what a room restores at start so a mute or a ban
//! outlives a restart.

use crate::db::{RowExt, on_pool};
use crate::{Store, StoreError};
use onair_core::Millis;
use onair_core::moderation::Ban;

/// "Never ends" in storage (both databases' integers are i64).
const FOREVER: i64 = i64::MAX;

fn until_to_db(until: Millis) -> i64 {
    i64::try_from(until).unwrap_or(FOREVER)
}

fn until_from_db(v: i64) -> Millis {
    if v == FOREVER { u64::MAX } else { u64::try_from(v).unwrap_or(0) }
}

impl Store {
    /// Stores a mute's end; 0 removes it.
    pub async fn set_mute(&self, room_id: &str, user_id: &str, until: Millis) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => {
            if until == 0 {
                sqlx::query("DELETE FROM mutes WHERE room_id = $1 AND user_id = $2")
                    .bind(room_id)
                    .bind(user_id)
                    .execute(pool)
                    .await?;
            } else {
                sqlx::query(
                    "INSERT INTO mutes (room_id, user_id, until_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (room_id, user_id) DO UPDATE SET until_ms = excluded.until_ms",
                )
                .bind(room_id)
                .bind(user_id)
                .bind(until_to_db(until))
                .execute(pool)
                .await?;
            }
        });
        Ok(())
    }

    /// Stores a ban; `None` removes it.
    pub async fn set_ban(&self, room_id: &str, user_id: &str, ban: Option<&Ban>) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => match ban {
            None => {
                sqlx::query("DELETE FROM bans WHERE room_id = $1 AND user_id = $2")
                    .bind(room_id)
                    .bind(user_id)
                    .execute(pool)
                    .await?;
            }
            Some(ban) => {
                sqlx::query(
                    "INSERT INTO bans (room_id, user_id, until_ms, reason) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (room_id, user_id) DO UPDATE SET until_ms = excluded.until_ms, reason = excluded.reason",
                )
                .bind(room_id)
                .bind(user_id)
                .bind(until_to_db(ban.until))
                .bind(&ban.reason)
                .execute(pool)
                .await?;
            }
        });
        Ok(())
    }

    /// A room's mutes and bans (expired ones included; the room filters).
    pub async fn load_moderation(
        &self,
        room_id: &str,
    ) -> Result<(Vec<(String, Millis)>, Vec<(String, Ban)>), StoreError> {
        on_pool!(&self.db, pool => {
            let mutes = sqlx::query("SELECT user_id, until_ms FROM mutes WHERE room_id = $1")
                .bind(room_id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| Ok((r.text("user_id")?, until_from_db(r.int("until_ms")?))))
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let bans = sqlx::query("SELECT user_id, until_ms, reason FROM bans WHERE room_id = $1")
                .bind(room_id)
                .fetch_all(pool)
                .await?
                .iter()
                .map(|r| {
                    Ok((r.text("user_id")?, Ban { until: until_from_db(r.int("until_ms")?), reason: r.text("reason")? }))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok((mutes, bans))
        })
    }
}

impl Store {
    /// Marks a message recalled; whether it existed and was not recalled already
    /// (a second recall of the same message is the cloud's "does not exist", 10030).
    pub async fn recall_message(&self, room_id: &str, seq: u64) -> Result<bool, StoreError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        let done = on_pool!(&self.db, pool => {
            sqlx::query("UPDATE messages SET recalled = 1 WHERE room_id = $1 AND seq = $2 AND recalled = 0")
                .bind(room_id)
                .bind(seq)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(done > 0)
    }

    /// A room's admins.
    pub async fn room_admins(&self, room_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(on_pool!(&self.db, pool => {
            sqlx::query_scalar("SELECT user_id FROM room_admins WHERE room_id = $1 ORDER BY user_id")
                .bind(room_id)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Replaces a room's admins.
    pub async fn set_room_admins(&self, room_id: &str, admins: &[String]) -> Result<(), StoreError> {
        on_pool!(&self.db, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query("DELETE FROM room_admins WHERE room_id = $1").bind(room_id).execute(&mut *tx).await?;
            for user in admins {
                // DO NOTHING: a duplicate in the list, or (PostgreSQL, several nodes)
                // a concurrent replacement that inserted the same pair first, is not
                // an error.
                sqlx::query("INSERT INTO room_admins (room_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(room_id)
                    .bind(user)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}

/// A stored word list: its action name and words.
pub type StoredWordList = (String, Vec<String>);

impl Store {
    /// Every stored word list by scope (`""` = the app's list, else a room id).
    pub async fn filter_lists(&self) -> Result<Vec<(String, StoredWordList)>, StoreError> {
        on_pool!(&self.db, pool => {
            let rows = sqlx::query("SELECT scope, action, words FROM filter_lists").fetch_all(pool).await?;
            rows.iter()
                .map(|r| {
                    let scope = r.text("scope")?;
                    let action = r.text("action")?;
                    let words = r.text("words")?;
                    let words: Vec<String> = serde_json::from_str(&words)
                        .map_err(|e| StoreError::Corrupt(format!("filter list '{scope}': {e}")))?;
                    Ok((scope, (action, words)))
                })
                .collect()
        })
    }

    /// Stores (or, with `None`, deletes) the word list of a scope.
    pub async fn set_filter_list(&self, scope: &str, list: Option<(&str, &[String])>) -> Result<(), StoreError> {
        let list = match list {
            None => None,
            Some((action, words)) => {
                Some((action, serde_json::to_string(words).map_err(|e| StoreError::Corrupt(e.to_string()))?))
            }
        };
        on_pool!(&self.db, pool => match &list {
            None => {
                sqlx::query("DELETE FROM filter_lists WHERE scope = $1").bind(scope).execute(pool).await?;
            }
            Some((action, words)) => {
                sqlx::query(
                    "INSERT INTO filter_lists (scope, action, words) VALUES ($1, $2, $3) \
                     ON CONFLICT (scope) DO UPDATE SET action = excluded.action, words = excluded.words",
                )
                .bind(scope)
                .bind(*action)
                .bind(words)
                .execute(pool)
                .await?;
            }
        });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::each_backend;

    #[tokio::test]
    async fn mutes_and_bans_survive_reopen() {
        each_backend(|db| async move {
            let store = db.open().await;
            store.set_mute("r", "a", 5_000).await.expect("mute");
            store.set_mute("r", "b", u64::MAX).await.expect("mute");
            store.set_mute("r", "b", 0).await.expect("unmute");
            store.set_mute("r", "c", u64::MAX).await.expect("mute");
            store.set_ban("r", "d", Some(&Ban { until: u64::MAX, reason: "spam".into() })).await.expect("ban");
            store.close().await;
            let store = db.open().await;
            let (mut mutes, bans) = store.load_moderation("r").await.expect("load");
            mutes.sort();
            assert_eq!(mutes, vec![("a".to_string(), 5_000), ("c".to_string(), u64::MAX)]);
            assert_eq!(bans, vec![("d".to_string(), Ban { until: u64::MAX, reason: "spam".into() })]);
            store.set_ban("r", "d", None).await.expect("unban");
            assert!(store.load_moderation("r").await.expect("load").1.is_empty());
            store.set_room_admins("r", &["x".into(), "y".into()]).await.expect("admins");
            assert_eq!(store.room_admins("r").await.expect("admins"), vec!["x".to_string(), "y".to_string()]);
            assert!(!store.recall_message("r", 1).await.expect("recall"), "no such message");
            assert!(store.delete_room("r").await.is_ok());
            assert!(store.room_admins("r").await.expect("admins").is_empty());
            let words = vec!["a".to_string(), "广告".to_string()];
            store.set_filter_list("", Some(("mask", &words))).await.expect("save");
            store.set_filter_list("r", Some(("reject", &words))).await.expect("save");
            store.set_filter_list("r", None).await.expect("delete");
            assert_eq!(store.filter_lists().await.expect("load"), vec![(String::new(), ("mask".to_string(), words))]);
        })
        .await;
    }
}
