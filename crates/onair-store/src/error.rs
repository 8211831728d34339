//! The store's error type: one enum so callers can tell a duplicate room (a client
//! mistake) from a broken database (an operator problem) without seeing sqlx types
//! beyond the `Sqlx` variant.

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A room with this id already exists.
    #[error("room '{0}' already exists")]
    Conflict(String),
    /// The database refused or failed a statement.
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    /// The embedded migrations could not be applied.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The store's configuration is not usable (e.g. an unsupported `[store] url`).
    #[error("store configuration: {0}")]
    Config(String),
    /// The database server could not be reached at start.
    #[error("cannot connect to the database {0}")]
    Unreachable(String),
    /// The data directory could not be created.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A stored row could not be decoded into its domain type.
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// A value does not fit the database's integer type (u64 above `i64::MAX`).
    #[error("value out of range: {0}")]
    OutOfRange(String),
    /// A history batch failed to commit; every waiter of the batch gets the same
    /// message (the underlying error cannot be cloned).
    #[error("history batch failed: {0}")]
    Batch(String),
    /// The history writer has shut down and accepts no more work.
    #[error("history writer is shut down")]
    Closed,
}
