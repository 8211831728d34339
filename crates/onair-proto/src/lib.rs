//! The wire: every JSON shape that crosses the WebSocket (docs/protocol.md), decoded
//! from client frames and encoded for server frames.
//!
//! Decoding never panics and always says what was wrong (code + text, with the
//! request `id` when it could be read). Encoding of room pushes happens once per tick
//! and the bytes are shared by every member's connection.

mod decode;
mod encode;
pub mod views;

pub use decode::{
    DecodeError, JoinRequest, LoginRequest, Moderation, ModerationAction, Request, RequestKind, SendRequest,
    decode_request,
};
pub use encode::{
    RoomView, YouView, ack_error, ack_ok, ack_ok_with, encode_join_ack, encode_push, encode_send_ack, kicked_frame,
    wire_msg,
};

/// Inbound frames larger than this are refused without parsing (93000).
pub const MAX_FRAME_BYTES: usize = 16 * 1024;
