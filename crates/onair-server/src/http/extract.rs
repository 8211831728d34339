//! Request extractors of the HTTP faces: JSON bodies and query strings whose
//! failures are API errors, and the two ways a caller is authenticated ([`Admin`],
//! [`Caller`]) — the only place credentials of an HTTP request are read.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use onair_core::{Code, Rejection};
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use crate::state::Shared;

/// JSON body extractor whose failures are API errors (90001/10004), not axum's text.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = read_body(req.into_body(), MAX_JSON_BODY).await?;
        let value = parse_json(&bytes)?;
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("invalid request body: {e}"))))
    }
}

/// Most bytes of a JSON request body (axum's own default limit, now named in the
/// refusal).
pub const MAX_JSON_BODY: usize = 2 * 1024 * 1024;

/// A request body of at most `limit` bytes. Larger: 413 with code 93000 and the limit
/// named (axum's body limit answers plain text, which API clients cannot read); read
/// no further than the limit. Broken off by the client: 400.
pub async fn read_body(body: axum::body::Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("could not read body: {e}"))))?;
        if buf.len() + chunk.len() > limit {
            return Err(ApiError(Rejection::new(
                Code::PacketTooLong,
                format!("request body larger than the limit of {} bytes ({})", limit, human_size(limit)),
            )));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.into())
}

/// `4 MiB`, `512 KiB` or `100 bytes`.
fn human_size(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= 1024 && n.is_multiple_of(1024) {
        format!("{} KiB", n / 1024)
    } else {
        format!("{n} bytes")
    }
}

/// Parses a JSON body, refusing a repeated key in any object (90001): parsers
/// disagree on which one wins (serde keeps the last, a proxy or the backend may check
/// the first), so `{"amount":1,"amount":1000000}` must not mean anything.
pub fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    let json_error =
        |e: serde_json::Error| ApiError(Rejection::new(Code::JsonParse, format!("body is not valid JSON: {e}")));
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde::Deserialize::deserialize(&mut de).map(|UniqueKeys| ()).map_err(json_error)?;
    de.end().map_err(json_error)?;
    serde_json::from_slice(bytes).map_err(json_error)
}

/// A JSON value that only deserializes when no object in it repeats a key (it keeps
/// nothing: it is the check).
pub struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }
    fn visit_none<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        while seq.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if seen.contains(&key) {
                return Err(serde::de::Error::custom(format!("duplicate key '{key}'")));
            }
            seen.insert(key);
            map.next_value::<UniqueKeys>()?;
        }
        Ok(UniqueKeys)
    }
}

/// Query-string extractor whose failures are API errors (10004), not axum's text.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|q| ApiQuery(q.0))
            .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("bad query string: {e}"))))
    }
}

/// The caller's address as a REST-originated webhook reports it (`ClientIP`): the
/// TCP peer, or the client a trusted proxy names (`http::forwarded`). Never fails:
/// without connection info (in-process tests) it is empty.
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>();
        Ok(ClientIp(peer.map(|c| c.0.ip().to_string()).unwrap_or_default()))
    }
}

impl ClientIp {
    /// The callbacks' origin of a server-API action from this caller.
    pub fn origin(&self) -> onair_hub::callbacks::Origin {
        onair_hub::callbacks::Origin::rest_from(self.0.clone())
    }
}

/// An authenticated app admin (from `?sdkappid=&identifier=&usersig=`).
pub struct Admin(pub String);

#[derive(Deserialize)]
struct AdminQuery {
    sdkappid: Option<u64>,
    identifier: Option<String>,
    usersig: Option<String>,
}

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.app_admin {
            return Err(ApiError(Rejection::new(Code::NoPermission, format!("'{}' is not an app admin", caller.user))));
        }
        Ok(Admin(caller.user))
    }
}

/// Any authenticated user: an app admin (API token or admin UserSig) or a user with
/// a valid UserSig, from the same three places as [`Admin`].
pub struct Caller {
    /// Account.
    pub user: String,
    /// Whether the account is an app admin.
    pub app_admin: bool,
}

impl Caller {
    /// Whether the caller may manage `room` (its owner, a room admin or an app admin).
    pub fn manages(&self, room: &onair_hub::Room) -> bool {
        room.role_of(&self.user, self.app_admin).manages()
    }

    /// Refuses unless the caller manages `room`.
    pub fn must_manage(&self, room: &onair_hub::Room) -> Result<(), ApiError> {
        if self.manages(room) {
            return Ok(());
        }
        Err(ApiError(Rejection::new(
            Code::NoPermission,
            format!("'{}' is not the owner or an admin of room '{}'", self.user, room.id),
        )))
    }

    /// Refuses unless the caller is `user` or an app admin.
    pub fn must_be(&self, user: &str) -> Result<(), ApiError> {
        if self.app_admin || self.user == user {
            return Ok(());
        }
        Err(ApiError(Rejection::new(Code::NoPermission, format!("only '{user}' or an app admin may do this"))))
    }
}

impl FromRequestParts<Shared> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Shared) -> Result<Self, Self::Rejection> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // 1. A static API token (`[app] api_token`) acts as the first app admin.
        if let Some(auth) = header("authorization") {
            let token = auth.strip_prefix("Bearer ").unwrap_or_default();
            let expected = &state.cfg.app.api_token;
            if expected.is_empty() || !onair_auth::constant_time_eq(token.as_bytes(), expected.as_bytes()) {
                return Err(ApiError(Rejection::new(Code::UserSigInvalid, "invalid API token")));
            }
            let user = state.cfg.app.admins.first().cloned().unwrap_or_else(|| "administrator".into());
            return Ok(Caller { user, app_admin: true });
        }
        // 2. A UserSig in headers, or 3. in the query like the cloud's REST API.
        let (sdkappid, identifier, usersig) = match (header("x-onair-identifier"), header("x-onair-usersig")) {
            (Some(identifier), Some(usersig)) => (Some(state.app.sdkappid), Some(identifier), Some(usersig)),
            _ => {
                let q: AdminQuery = Query::<AdminQuery>::try_from_uri(&parts.uri)
                    .map(|q| q.0)
                    .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("bad query string: {e}"))))?;
                (q.sdkappid, q.identifier, q.usersig)
            }
        };
        let (Some(sdkappid), Some(identifier), Some(usersig)) = (sdkappid, identifier, usersig) else {
            return Err(ApiError(Rejection::new(
                Code::UserSigEmpty,
                "this API needs a UserSig (?sdkappid=&identifier=&usersig=, or the headers X-OnAir-Identifier \
                 and X-OnAir-UserSig) or Authorization: Bearer <api_token>",
            )));
        };
        state.app.verify(sdkappid, &identifier, &usersig)?;
        let app_admin = state.app.admins.contains(&identifier);
        Ok(Caller { user: identifier, app_admin })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_named_in_round_units() {
        assert_eq!(human_size(4 * 1024 * 1024), "4 MiB");
        assert_eq!(human_size(MAX_JSON_BODY), "2 MiB");
        assert_eq!(human_size(512 * 1024), "512 KiB");
        assert_eq!(human_size(4 * 1024 * 1024 + 1024), "4097 KiB");
        assert_eq!(human_size(100), "100 bytes");
    }
}
