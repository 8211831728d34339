//! Signatures that OnAir must check or produce byte-for-byte like Tencent Cloud does.
//!
//! OnAir is a drop-in replacement for Tencent Cloud Chat (IM) + CSS for live rooms, so
//! clients and app backends keep their existing signing code. That makes every scheme in
//! this crate an interoperability contract, not a design choice:
//!
//! * [`gen_usersig`] / [`verify_usersig`] — TLSSigAPIv2 UserSig (HMAC-SHA256 inside a
//!   zlib-compressed, URL-safe Base64 JSON container), see docs/cloud-compat.md "UserSig".
//! * [`tx_secret`] / [`verify_tx_secret`] — CSS push/play hotlink protection
//!   (`txSecret`/`txTime` query parameters), see docs/cloud-compat.md "Push signatures (txSecret)".
//! * [`callback_sign`] — Chat webhook `Sign` parameter, see docs/cloud-compat.md "Webhook signature".
//! * [`stream_callback_sign`] — CSS stream event callback `sign` field, see §9.2.
//!
//! The crate is pure: no I/O, no clock (the caller passes `now_secs`), no async runtime.
//! Everything that parses attacker-controlled text is written so it cannot panic and
//! cannot be made to allocate more than a small fixed bound.

mod css;
mod ct;
mod usersig;
mod webhook;

pub use css::{TxSecretError, stream_callback_sign, tx_secret, verify_tx_secret};
pub use ct::constant_time_eq;
pub use usersig::{
    DEFAULT_USERSIG_EXPIRE_SECS, UserSigError, VerifiedUserSig, gen_usersig, gen_usersig_with_userbuf, verify_usersig,
};
pub use webhook::callback_sign;
