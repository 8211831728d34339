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

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("could not read body: {e}"))))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| ApiError(Rejection::new(Code::JsonParse, format!("body is not valid JSON: {e}"))))?;
        serde_json::from_value(value)
            .map(Body)
            .map_err(|e| ApiError(Rejection::new(Code::InvalidParam, format!("invalid request body: {e}"))))
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
/// TCP peer. Never fails: without connection info (in-process tests) it is empty.
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
