//! Wallet sign-in (EIP-4361); the rules are the `access` service's.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/auth/nonce` | [`NonceResponse`] |
//! | `POST /api/v1/auth/siwe` [`SignInRequest`] | [`SessionResponse`] and a `sg_session` cookie |

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use streamgate_api::v1::{NonceResponse, SessionResponse, SignInRequest};
use streamgate_swarm::daemon::unix_now;

use super::{
    ApiError,
    keys::SESSION_COOKIE,
    limits::{self, Class, RateLimits},
};
use crate::{
    node::Node,
    services::access::{AccessError, MAX_MESSAGE_BYTES, MAX_SIGNATURE_HEX_BYTES, SignInError},
};

pub fn routes(limits: &Arc<RateLimits>) -> Router<Arc<Node>> {
    let limited = |class| from_fn_with_state((limits.clone(), class), limits::limit);
    Router::new()
        .route(
            "/api/v1/auth/nonce",
            get(nonce).route_layer(limited(Class::Nonce)),
        )
        .route(
            "/api/v1/auth/siwe",
            post(sign_in)
                .route_layer(limited(Class::SignIn))
                .layer(DefaultBodyLimit::max(MAX_SIGN_IN_BODY)),
        )
}

/// A sign-in body: the message and signature at their largest, quoted, with room to spare.
const MAX_SIGN_IN_BODY: usize = 2 * (MAX_MESSAGE_BYTES + MAX_SIGNATURE_HEX_BYTES) + 1024;

async fn nonce(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let access = &node.access;
    let nonce = access
        .new_nonce()
        .map_err(|busy| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "busy", busy.to_string()))?;
    let mut response = Json(NonceResponse {
        nonce,
        domain: access.domain.clone(),
        origin: access.origin.clone(),
        chain_ids: access.chain_ids(),
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

impl From<SignInError> for ApiError {
    fn from(e: SignInError) -> Self {
        let status = match &e {
            SignInError::Message(streamgate_protocol::siwe::SiweError::Malformed(_)) => {
                StatusCode::BAD_REQUEST
            }
            SignInError::Message(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SignInError::Chain(_) | SignInError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            SignInError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.code(), e.to_string())
    }
}

impl From<AccessError> for ApiError {
    fn from(e: AccessError) -> Self {
        let (status, code) = match &e {
            AccessError::NotEntitled { .. } => (StatusCode::FORBIDDEN, "not_entitled"),
            AccessError::Retired => (StatusCode::GONE, "retired"),
            AccessError::WalletNotOnChain { .. } => (StatusCode::FORBIDDEN, "wallet_not_on_chain"),
            AccessError::UnknownChain(_) | AccessError::Chain(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

async fn sign_in(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    // JSON only: a form on another site can post text/plain or form data without asking
    // the browser's permission, and must not be able to sign anyone in (login CSRF).
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_required",
            "send the sign-in as Content-Type: application/json",
        ));
    }
    let request: SignInRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_request",
            format!("expected JSON {{\"message\", \"signature\"}}: {e}"),
        )
    })?;
    let (token, session) = node
        .access
        .sign_in(&request.message, &request.signature)
        .await?;
    let max_age = session.expires_at.saturating_sub(unix_now());
    let mut response = Json(SessionResponse {
        token: token.clone(),
        address: session.address.to_checksum(None),
        expires_at: session.expires_at,
    })
    .into_response();
    // Secure whenever viewers reach the node over https: the cookie then never travels
    // in clear.
    let secure = if node.access.origin.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
