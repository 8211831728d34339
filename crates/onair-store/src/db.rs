//! The two databases behind [`Store`](crate::Store): the embedded SQLite (default)
//! and PostgreSQL (`[store] url = "postgres://…"`, shared by a cluster's nodes).
//!
//! Why an enum of native pools and not sqlx's `Any` driver: `Any` converts every
//! argument and every row through its own value type (a copy per string, a dynamic
//! call per statement) and cannot set SQLite's connection options (WAL,
//! `synchronous`, busy timeout) except through per-connection hooks; the SQLite path
//! is the one most servers run and must not get slower. With an enum each query is
//! written once (with `$N` placeholders, which both databases and sqlx's SQLite
//! driver accept) and [`on_pool!`] expands it once per driver, so each arm is
//! ordinary, statically typed sqlx code. The few statements that differ come from
//! [`Dialect`]; the one hot path that differs in shape (the history batch insert) is
//! written per backend in `store.rs` (on SQLite with positional `?`: sqlx's SQLite
//! driver resolves each `$N` by name on every execution, a cost worth avoiding only
//! on a statement run once per stored message).

use std::future::Future;
use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};

use crate::StoreError;

/// A pool of one of the supported databases.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The embedded SQLite file in the data directory.
    Sqlite(SqlitePool),
    /// A PostgreSQL server.
    Postgres(PgPool),
}

impl Backend {
    /// Which SQL dialect this pool speaks.
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Backend::Sqlite(_) => Dialect::Sqlite,
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }
}

/// Runs `$body` with `$p` bound to the backend's native pool: the body is written
/// once and compiled once per driver, so rows, transactions and connections inside
/// it have that driver's concrete types.
macro_rules! on_pool {
    ($backend:expr, $p:ident => $body:expr) => {
        match $backend {
            $crate::db::Backend::Sqlite($p) => $body,
            $crate::db::Backend::Postgres($p) => $body,
        }
    };
}
pub(crate) use on_pool;

/// The statements that are not the same text in both databases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// How a money transaction starts. SQLite: `BEGIN IMMEDIATE` takes the write lock
    /// before anything is read, so every money request is serialised by the database
    /// itself. PostgreSQL has row locks instead (see [`Dialect::lock_wallets`]) and
    /// its unique index on the idempotency key; a plain `BEGIN` (READ COMMITTED).
    pub(crate) fn begin_money(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// PostgreSQL only, before [`Dialect::lock_wallets`]: makes sure the wallet that
    /// is credited (`$1`: a gift's payee, a top-up's owner) exists, so the lock
    /// below can cover it. Without this, two requests could start when the payee
    /// had no wallet yet, lock different sets of rows, and meet in a deadlock when
    /// the row appears (PostgreSQL detects that only after `deadlock_timeout`, 1 s).
    /// Concurrent creations of the same row queue on its unique index, before
    /// anything is locked. Creating an empty wallet changes nothing a caller sees:
    /// a missing wallet reads as all zero.
    pub(crate) fn ensure_wallet(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("INSERT INTO wallets (user_id) VALUES ($1) ON CONFLICT DO NOTHING"),
        }
    }

    /// PostgreSQL only: locks the wallet rows of the payer and the payee (`$1`,
    /// `$2`; the same user twice for a top-up) for the rest of the transaction,
    /// always in user-id order. A second request of the same payer waits here and
    /// then sees the first one's committed idempotency key (READ COMMITTED takes a
    /// new snapshot per statement) instead of racing it, and two gifts in opposite
    /// directions between the same two wallets queue up instead of deadlocking.
    /// Whatever race is left (a payer whose wallet is being created) ends at a
    /// unique index and is retried (see [`retry_money`]). SQLite needs nothing:
    /// `BEGIN IMMEDIATE` already holds the database's only write lock.
    pub(crate) fn lock_wallets(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => {
                Some("SELECT user_id FROM wallets WHERE user_id IN ($1, $2) ORDER BY user_id FOR UPDATE")
            }
        }
    }
}

/// Column access shared by both drivers' rows, so the row decoders are written once.
pub(crate) trait RowExt {
    /// An integer column (BIGINT in PostgreSQL, INTEGER in SQLite).
    fn int(&self, col: &str) -> Result<i64, sqlx::Error>;
    /// A text column.
    fn text(&self, col: &str) -> Result<String, sqlx::Error>;
    /// A boolean column (BOOLEAN in PostgreSQL, 0/1 INTEGER in SQLite).
    fn flag(&self, col: &str) -> Result<bool, sqlx::Error>;
}

macro_rules! row_ext {
    ($row:ty) => {
        impl RowExt for $row {
            fn int(&self, col: &str) -> Result<i64, sqlx::Error> {
                self.try_get(col)
            }
            fn text(&self, col: &str) -> Result<String, sqlx::Error> {
                self.try_get(col)
            }
            fn flag(&self, col: &str) -> Result<bool, sqlx::Error> {
                self.try_get(col)
            }
        }
    };
}
row_ext!(SqliteRow);
row_ext!(PgRow);

/// Whether a failed money transaction may simply be run again: PostgreSQL's
/// unique violation (a concurrent request committed the same idempotency key or
/// created the same wallet first), serialization failure and deadlock (two gifts
/// between the same two wallets in opposite directions lock them in opposite
/// order). SQLite reports none of these codes for money transactions (they are
/// serialised), so on SQLite nothing is ever retried.
fn retryable(e: &crate::MoneyError) -> bool {
    let crate::MoneyError::Store(StoreError::Sqlx(e)) = e else { return false };
    let Some(db) = e.as_database_error() else { return false };
    matches!(db.code().as_deref(), Some("23505" | "40001" | "40P01"))
}

/// Most attempts of one money request; each retry first sees what the winner of
/// the race committed, so two are almost always enough.
const MONEY_ATTEMPTS: u32 = 8;

/// Runs a money transaction, again when it lost a race (see [`retryable`]). The
/// transaction is all-or-nothing, so a retry starts from a clean slate: a replayed
/// key then answers with the first receipt ("debited once"), never with an error.
pub(crate) async fn retry_money<T, F, Fut>(mut attempt: F) -> Result<T, crate::MoneyError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, crate::MoneyError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Err(e) if tries < MONEY_ATTEMPTS && retryable(&e) => {
                tracing::debug!(error = %e, tries, "money transaction lost a race; retrying");
                // A short, growing pause so a deadlock's two sides do not collide again.
                tokio::time::sleep(Duration::from_millis(u64::from(tries) * 2)).await;
            }
            other => return other,
        }
    }
}
