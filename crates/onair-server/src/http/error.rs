//! The one error type of the HTTP faces: a cloud code and text, rendered as JSON with
//! a fitting HTTP status; and the few JSON answer helpers every face uses.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use onair_core::{Code, Rejection};
use serde_json::{Value, json};

/// An API error: the cloud code and text, with a fitting HTTP status.
pub struct ApiError(pub Rejection);

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        ApiError(r)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match self.0.code {
            Code::RoomNotFound => StatusCode::NOT_FOUND,
            Code::NoPermission => StatusCode::FORBIDDEN,
            Code::RoomIdInUse | Code::InvalidTransition | Code::IdempotencyConflict | Code::Conflict => {
                StatusCode::CONFLICT
            }
            Code::UnknownGift | Code::NotFound => StatusCode::NOT_FOUND,
            Code::InsufficientBalance => StatusCode::PAYMENT_REQUIRED,
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::PacketTooLong => StatusCode::PAYLOAD_TOO_LARGE,
            Code::UnknownCommand => StatusCode::NOT_FOUND,
            Code::UserSigExpired
            | Code::UserSigEmpty
            | Code::UserSigInvalid
            | Code::UserSigIdentifier
            | Code::UserSigApp
            | Code::NotLoggedIn => StatusCode::UNAUTHORIZED,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, Json(json!({"code": self.0.code.number(), "message": self.0.info}))).into_response()
    }
}

/// What a JSON handler answers.
pub type ApiResult = Result<Response, ApiError>;

/// A JSON answer.
pub fn ok(v: Value) -> ApiResult {
    Ok(Json(v).into_response())
}

/// A JSON answer that browsers and CDNs may cache for `max_age` seconds.
pub fn cached(v: Value, max_age: u32) -> Response {
    let mut response = Json(v).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    response
}

/// Any serialisable view as JSON.
pub fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or_default()
}

/// A storage failure as the client sees it (logged in full, answered as 10002).
pub fn storage(e: onair_store::StoreError) -> ApiError {
    ApiError(onair_hub::internal(e))
}
