//! Wallet sign-in (EIP-4361); the rules are the `access` service's.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/auth/nonce` | [`NonceResponse`] |
//! | `POST /api/v1/auth/siwe` [`SignInRequest`] | [`SessionResponse`] and a `sg_session` cookie |

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use streamgate_api::v1::{NonceResponse, SessionResponse, SignInRequest};
use streamgate_swarm::daemon::unix_now;

use super::{ApiError, keys::SESSION_COOKIE};
use crate::{
    node::Node,
    services::access::{AccessError, SignInError},
};

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/auth/nonce", get(nonce))
        .route("/api/v1/auth/siwe", post(sign_in))
}

async fn nonce(State(node): State<Arc<Node>>) -> Response {
    let access = &node.access;
    let mut response = Json(NonceResponse {
        nonce: access.new_nonce(),
        domain: access.domain.clone(),
        origin: access.origin.clone(),
        chain_ids: access.chain_ids(),
    })
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl From<SignInError> for ApiError {
    fn from(e: SignInError) -> Self {
        let status = match &e {
            SignInError::Message(streamgate_protocol::siwe::SiweError::Malformed(_)) => {
                StatusCode::BAD_REQUEST
            }
            SignInError::Message(_) => StatusCode::UNPROCESSABLE_ENTITY,
            SignInError::Chain(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            AccessError::UnknownChain(_) | AccessError::Chain(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "chain_unavailable")
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

async fn sign_in(
    State(node): State<Arc<Node>>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
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
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}
