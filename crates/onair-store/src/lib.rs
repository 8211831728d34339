//! Persistence for OnAir: the app record, user profiles, room profiles and message
//! history, in the embedded SQLite or in PostgreSQL (`[store] url`).
//!
//! This is the only crate that knows SQL. The server talks to [`Store`] in domain
//! types (`RoomProfile`, `ChatMessage`) and sends delivered messages through the
//! [`HistoryWriter`], which batches every room's writes into few transactions so
//! the single SQLite writer (or PostgreSQL, a round trip away) is not hit once per
//! message. Migrations live in `migrations/sqlite/` and `migrations/postgres/` (one
//! file per version in each, the same schema in each dialect) and are embedded in
//! the binary.

mod business;
mod db;
mod error;
mod moderation;
mod store;
mod writer;

pub use business::{GiftOrder, LedgerEntry, LotteryRecord, MoneyError, Receipt, WalletRecord};
pub use error::StoreError;
pub use moderation::StoredWordList;
pub use store::{AppRecord, Store, UserRecord};
pub use writer::HistoryWriter;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
