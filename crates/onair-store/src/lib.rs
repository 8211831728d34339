//! Persistence for OnAir: the app record, user profiles, room profiles and message
//! history, in SQLite.
//!
//! This is the only crate that knows SQL. The server talks to [`Store`] in domain
//! types (`RoomProfile`, `ChatMessage`) and sends delivered messages through the
//! [`HistoryWriter`], which batches every room's writes into few transactions so
//! the single SQLite writer is not hit once per message. Migrations live in
//! `migrations/sqlite/` and are embedded in the binary; a PostgreSQL backend can
//! add `migrations/postgres/` next to them.

mod business;
mod error;
mod moderation;
mod store;
mod writer;

pub use business::{GiftOrder, LedgerEntry, LotteryRecord, MoneyError, Receipt, WalletRecord};
pub use error::StoreError;
pub use moderation::StoredWordList;
pub use store::{AppRecord, Store, UserRecord};
pub use writer::HistoryWriter;
