//! Error codes a client sees. The numbers are the cloud's (docs/cloud-compat.md, "Error codes")
//! so a client written for the cloud needs no new table.

use std::fmt;

/// A numeric error code from the cloud's table, with the OnAir meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Code {
    /// 10002: internal error; the client may retry.
    Internal,
    /// 10003: unknown command (REST) or `op` (WebSocket).
    UnknownCommand,
    /// 10004: a parameter is invalid.
    InvalidParam,
    /// 10007: the caller lacks the permission for this action.
    NoPermission,
    /// 10010: the room does not exist (or was destroyed).
    RoomNotFound,
    /// 10015: the room id is not acceptable.
    InvalidRoomId,
    /// 10016: the app backend refused it (before-callback).
    CallbackRejected,
    /// 10017: the sender is muted.
    Muted,
    /// 10021: a room with this id already exists.
    RoomIdInUse,
    /// 10023: the sender is over a per-user limit (rate, slow mode, repeats).
    SenderLimit,
    /// 10049: group attribute writes too frequent / limits exceeded.
    AttrLimit,
    /// 10030: the message to recall does not exist (or was recalled already).
    MsgNotFound,
    /// 70001: UserSig expired.
    UserSigExpired,
    /// 70002: UserSig missing.
    UserSigEmpty,
    /// 70003: UserSig check failed.
    UserSigInvalid,
    /// 70013: identifier does not match the UserSig.
    UserSigIdentifier,
    /// 70014: SDKAppID does not match the UserSig.
    UserSigApp,
    /// 80001: the text contains a sensitive word.
    SensitiveWord,
    /// 80002: message body too long.
    MsgTooLong,
    /// 90001: JSON could not be parsed.
    JsonParse,
    /// 90002: message body has an invalid format.
    BodyFormat,
    /// 93000: JSON packet (frame) too long.
    PacketTooLong,
    /// 60020-style "needs a login" for actions anonymous viewers may not take.
    /// The cloud answers an unauthenticated send with 70002-family codes; OnAir uses
    /// 70002 (UserSig empty) so SDKs map it to "please log in".
    NotLoggedIn,
    /// 120001 (OnAir): the live state cannot make this move.
    InvalidTransition,
    /// 120002 (OnAir): no gift with this id in the catalog.
    UnknownGift,
    /// 120003 (OnAir): the wallet balance does not cover the gift.
    InsufficientBalance,
    /// 120004 (OnAir): an idempotency key was reused with a different request.
    IdempotencyConflict,
    /// 120005 (OnAir): the named thing (lottery, co-host request…) does not exist.
    NotFound,
    /// 120006 (OnAir): the request conflicts with the current state (a lottery is
    /// already running, a co-host request is already pending…).
    Conflict,
}

impl Code {
    /// The number a client sees.
    pub fn number(self) -> u32 {
        match self {
            Code::Internal => 10002,
            Code::UnknownCommand => 10003,
            Code::InvalidParam => 10004,
            Code::NoPermission => 10007,
            Code::RoomNotFound => 10010,
            Code::InvalidRoomId => 10015,
            Code::CallbackRejected => 10016,
            Code::Muted => 10017,
            Code::RoomIdInUse => 10021,
            Code::SenderLimit => 10023,
            Code::AttrLimit => 10049,
            Code::MsgNotFound => 10030,
            Code::UserSigExpired => 70001,
            Code::UserSigEmpty | Code::NotLoggedIn => 70002,
            Code::UserSigInvalid => 70003,
            Code::UserSigIdentifier => 70013,
            Code::UserSigApp => 70014,
            Code::SensitiveWord => 80001,
            Code::MsgTooLong => 80002,
            Code::JsonParse => 90001,
            Code::BodyFormat => 90002,
            Code::PacketTooLong => 93000,
            Code::InvalidTransition => 120001,
            Code::UnknownGift => 120002,
            Code::InsufficientBalance => 120003,
            Code::IdempotencyConflict => 120004,
            Code::NotFound => 120005,
            Code::Conflict => 120006,
        }
    }
}

/// A refused request: the code plus a sentence a developer can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// What the client sees as `code` / `ErrorCode`.
    pub code: Code,
    /// What the client sees as `message` / `ErrorInfo`.
    pub info: String,
}

impl Rejection {
    /// Builds a rejection with its explanation.
    pub fn new(code: Code, info: impl Into<String>) -> Self {
        Rejection { code, info: info.into() }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.info, self.code.number())
    }
}

impl std::error::Error for Rejection {}
