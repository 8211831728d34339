//! The pure heart of OnAir: room chat semantics with no I/O, no tokio and no clock.
//!
//! Everything here is a plain struct fed with input, the current time (`now`, in
//! milliseconds since the Unix epoch) and a source of randomness, returning what
//! should happen (the sans-IO style of `quinn-proto`). The server crate owns the
//! sockets, timers and the database and drives these types; tests drive them with a
//! fake clock and a seeded random source, so every rule is reproducible.

pub mod admission;
pub mod chat;
pub mod cluster;
pub mod cohost;
pub mod dedup;
pub mod error;
pub mod event;
pub mod filter;
pub mod freq;
pub mod gifts;
pub mod history;
pub mod level;
pub mod likes;
pub mod limits;
pub mod live;
pub mod lottery;
pub mod message;
pub mod moderation;
pub mod popularity;
pub mod presence;
pub mod random;
pub mod room;
pub mod stagger;
pub mod tick;

pub use error::{Code, Rejection};

/// Milliseconds since the Unix epoch. Every time-dependent rule takes one of these
/// instead of reading a clock.
pub type Millis = u64;
