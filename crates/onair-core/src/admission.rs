//! Whether a user's message may be sent: the ordered checks every message passes
//! before it reaches a room's frequency control, and who counts as managing a room.
//!
//! The order is a rule of the product, so it lives here once: a destroyed room, then
//! mute-all (managers exempt), a ban, a mute, the per-user limits (managers exempt),
//! the word lists (server-API messages exempt: the backend answers for its own), then
//! the before-send webhook (unless the sender forbade it). The shell gathers the facts
//! (under its own locks), runs the stateful checks as closures this module calls in
//! order, and acts on the [`Verdict`].

use crate::{Code, Millis, Rejection};

/// A user's standing in one room, highest first. Only the server API and logins the
/// app lists as admins are [`Role::AppAdmin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Any other logged-in user.
    Member,
    /// One of the room's admins.
    RoomAdmin,
    /// The room's owner.
    Owner,
    /// An app admin (or the server API).
    AppAdmin,
}

impl Role {
    /// The highest role the facts give.
    pub fn of(app_admin: bool, owner: bool, room_admin: bool) -> Role {
        if app_admin {
            Role::AppAdmin
        } else if owner {
            Role::Owner
        } else if room_admin {
            Role::RoomAdmin
        } else {
            Role::Member
        }
    }

    /// Owner, room admin or app admin: may moderate, speak during mute-all, and is
    /// exempt from the per-user limits.
    pub fn manages(self) -> bool {
        self >= Role::RoomAdmin
    }

    /// Whether a user with this role may moderate one with `other` (strictly lower).
    pub fn outranks(self, other: Role) -> bool {
        self.manages() && self > other
    }
}

/// Where a message entered: typed so that no client can pass for the server API by
/// naming its platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platform {
    /// The server API (`/v4`, `/api/v1`): the cloud's `RESTAPI`.
    RestApi,
    /// A client connection with the platform it logged in with (`Web`, `Android`, …).
    Client(String),
}

impl Default for Platform {
    /// A connection that has not logged in is reported as `Web`.
    fn default() -> Self {
        Platform::Client("Web".into())
    }
}

impl Platform {
    /// The cloud's `OptPlatform` value.
    pub fn as_str(&self) -> &str {
        match self {
            Platform::RestApi => "RESTAPI",
            Platform::Client(name) => name,
        }
    }
}

/// What the shell knows when a message arrives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts<'a> {
    /// The room was destroyed meanwhile.
    pub room_closed: bool,
    /// The room's id (for the "does not exist" text).
    pub room_id: &'a str,
    /// Mute-all is on.
    pub mute_all: bool,
    /// The sender manages the room (see [`Role::manages`]); the server API does.
    pub manages: bool,
    /// The sender is banned from the room.
    pub banned: bool,
    /// The sender is muted until then (`u64::MAX` = permanently).
    pub muted_until: Option<Millis>,
    /// Where the message entered.
    pub platform: &'a Platform,
    /// Ask the app backend (webhooks on and not forbidden by the sender).
    pub ask_backend: bool,
    /// Now, Unix ms.
    pub now: Millis,
}

/// The decision on a message that passed every synchronous check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Submit it to the room, after asking the app backend when `ask_backend`.
    Submit {
        /// Run the before-send webhook first.
        ask_backend: bool,
    },
    /// Accept it without delivering (a word list set to drop): the sender is told it
    /// was sent, nobody else sees it.
    DropSilently,
}

/// What the word lists made of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screened {
    /// Deliver (possibly masked in place).
    Deliver,
    /// Accept without delivering.
    Drop,
}

/// Runs the checks in the product's order on `message`. `limits` checks (and records)
/// the sender's rate, slow mode and repeats; `screen` runs the word lists (and may mask
/// the message in place). Each is called only when its step is reached and applies, so
/// a refused message costs neither (the message is passed through rather than
/// captured so that one closure may read it and the other change it).
pub fn admit<M>(
    facts: &Facts<'_>,
    message: &mut M,
    limits: impl FnOnce(&M) -> Result<(), Rejection>,
    screen: impl FnOnce(&mut M) -> Result<Screened, Rejection>,
) -> Result<Verdict, Rejection> {
    if facts.room_closed {
        return Err(Rejection::new(Code::RoomNotFound, format!("room '{}' does not exist", facts.room_id)));
    }
    if facts.mute_all && !facts.manages {
        return Err(Rejection::new(Code::Muted, "all members are muted in this room"));
    }
    if facts.banned {
        return Err(Rejection::new(Code::NoPermission, "you are banned from this room"));
    }
    if let Some(until) = facts.muted_until {
        let info = if until == u64::MAX {
            "you are muted in this room permanently".to_string()
        } else {
            format!("you are muted in this room for {} more seconds", until.saturating_sub(facts.now).div_ceil(1000))
        };
        return Err(Rejection::new(Code::Muted, info));
    }
    if !facts.manages {
        limits(message)?;
    }
    if *facts.platform != Platform::RestApi && screen(message)? == Screened::Drop {
        return Ok(Verdict::DropSilently);
    }
    Ok(Verdict::Submit { ask_backend: facts.ask_backend })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(platform: &Platform) -> Facts<'_> {
        Facts {
            room_closed: false,
            room_id: "r",
            mute_all: false,
            manages: false,
            banned: false,
            muted_until: None,
            platform,
            ask_backend: true,
            now: 1_000,
        }
    }

    fn pass(_: &()) -> Result<(), Rejection> {
        Ok(())
    }

    fn deliver(_: &mut ()) -> Result<Screened, Rejection> {
        Ok(Screened::Deliver)
    }

    #[test]
    fn checks_run_in_order_and_stop_at_the_first_refusal() {
        let web = Platform::default();
        let cases: Vec<(Facts<'_>, Code)> = vec![
            (Facts { room_closed: true, mute_all: true, banned: true, ..facts(&web) }, Code::RoomNotFound),
            (Facts { mute_all: true, banned: true, ..facts(&web) }, Code::Muted),
            (Facts { banned: true, muted_until: Some(5_000), ..facts(&web) }, Code::NoPermission),
            (Facts { muted_until: Some(5_000), ..facts(&web) }, Code::Muted),
        ];
        for (f, code) in cases {
            let limits_called = std::cell::Cell::new(false);
            let r = admit(
                &f,
                &mut (),
                |m| {
                    limits_called.set(true);
                    pass(m)
                },
                deliver,
            );
            assert_eq!(r.map_err(|e| e.code), Err(code), "{f:?}");
            assert!(!limits_called.get(), "limits must not be charged for a refused message: {f:?}");
        }
    }

    #[test]
    fn a_mute_says_how_long_is_left() {
        let web = Platform::default();
        let r = admit(&Facts { muted_until: Some(3_500), ..facts(&web) }, &mut (), pass, deliver);
        assert_eq!(r.map_err(|e| e.info), Err("you are muted in this room for 3 more seconds".into()));
        let r = admit(&Facts { muted_until: Some(u64::MAX), ..facts(&web) }, &mut (), pass, deliver);
        assert_eq!(r.map_err(|e| e.info), Err("you are muted in this room permanently".into()));
    }

    #[test]
    fn managers_skip_mute_all_and_limits_but_not_bans() {
        let web = Platform::default();
        let refuse = |_: &()| Err(Rejection::new(Code::SenderLimit, "slow down"));
        let r = admit(&Facts { mute_all: true, manages: true, ..facts(&web) }, &mut (), refuse, deliver);
        assert_eq!(r, Ok(Verdict::Submit { ask_backend: true }));
        let r = admit(&Facts { banned: true, manages: true, ..facts(&web) }, &mut (), pass, deliver);
        assert_eq!(r.map_err(|e| e.code), Err(Code::NoPermission));
        let r = admit(&facts(&web), &mut (), refuse, deliver);
        assert_eq!(r.map_err(|e| e.code), Err(Code::SenderLimit));
    }

    #[test]
    fn only_the_server_api_skips_the_word_lists() {
        let drop = |_: &mut ()| Ok(Screened::Drop);
        let rest = Platform::RestApi;
        assert_eq!(admit(&facts(&rest), &mut (), pass, drop), Ok(Verdict::Submit { ask_backend: true }));
        // A client that calls its platform "RESTAPI" is still a client.
        let named = Platform::Client("RESTAPI".into());
        assert_eq!(admit(&facts(&named), &mut (), pass, drop), Ok(Verdict::DropSilently));
        let reject = |_: &mut ()| Err(Rejection::new(Code::SensitiveWord, "no"));
        assert_eq!(
            admit(&facts(&Platform::default()), &mut (), pass, reject).map_err(|e| e.code),
            Err(Code::SensitiveWord)
        );
    }

    #[test]
    fn the_backend_is_asked_only_when_allowed() {
        let web = Platform::default();
        let r = admit(&Facts { ask_backend: false, ..facts(&web) }, &mut (), pass, deliver);
        assert_eq!(r, Ok(Verdict::Submit { ask_backend: false }));
    }

    #[test]
    fn roles_rank_and_manage() {
        assert_eq!(Role::of(true, true, true), Role::AppAdmin);
        assert_eq!(Role::of(false, true, true), Role::Owner);
        assert_eq!(Role::of(false, false, true), Role::RoomAdmin);
        assert_eq!(Role::of(false, false, false), Role::Member);
        assert!(!Role::Member.manages());
        assert!(Role::RoomAdmin.manages());
        assert!(Role::Owner.outranks(Role::RoomAdmin));
        assert!(!Role::RoomAdmin.outranks(Role::RoomAdmin));
        assert!(!Role::Member.outranks(Role::Member));
    }
}
