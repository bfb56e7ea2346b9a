//! HTTP routes for sign-in and key release.
//!
//! | route | answer |
//! |---|---|
//! | `GET /api/v1/auth/nonce` | `{nonce, domain, origin, chain_ids}` |
//! | `POST /api/v1/auth/siwe` `{message, signature}` | `{token, address, expires_at}` and a `sg_session` cookie |
//! | `GET /keys/{id}` (bearer token or cookie) | the 16-byte AES-128 key of gated video `id` |

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use serde::Deserialize;
use streamgate_protocol::ContentHash;

use super::{AccessError, SignInError};
use crate::{api::ApiError, node::Node};

pub const SESSION_COOKIE: &str = "sg_session";

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/auth/nonce", get(nonce))
        .route("/api/v1/auth/siwe", post(sign_in))
        .route("/keys/{id}", get(key))
}

async fn nonce(State(node): State<Arc<Node>>) -> Response {
    let access = &node.access;
    let mut response = Json(serde_json::json!({
        "nonce": access.new_nonce(),
        "domain": access.domain,
        "origin": access.origin,
        "chain_ids": access.chain_ids(),
    }))
    .into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Debug, Deserialize)]
struct SignInRequest {
    message: String,
    signature: String,
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
    let max_age = session
        .expires_at
        .saturating_sub(crate::runfile::unix_now());
    let mut response = Json(serde_json::json!({
        "token": token,
        "address": session.address.to_checksum(None),
        "expires_at": session.expires_at,
    }))
    .into_response();
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Ok(response)
}

/// The session token from `Authorization: Bearer` or the session cookie.
fn session_token(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_string());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            pair.trim()
                .strip_prefix(&format!("{SESSION_COOKIE}="))
                .map(str::to_string)
        })
}

async fn key(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id: ContentHash = id
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_manifest_id", format!("{e}")))?;
    let session = session_token(&headers)
        .and_then(|t| node.access.session(&t))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "sign_in_required",
                "sign in first (POST /api/v1/auth/siwe, or `streamgate sign-in`) and send the token as Authorization: Bearer",
            )
        })?;
    let signed = node.manifest(id).await?;
    let manifest = &signed.manifest;
    let (Some(policy), Some(encryption)) = (&manifest.access, &manifest.encryption) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_gated",
            "this video is public and has no key",
        ));
    };
    node.access
        .check(*id.as_bytes(), policy, session.address)
        .await?;
    let key = match super::keys::unseal(encryption, &node.identity.signing_key()) {
        Some(Ok(key)) => key,
        Some(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "key_unusable",
                e,
            ));
        }
        None => {
            let elsewhere: Vec<&str> = encryption
                .key_wraps
                .iter()
                .filter_map(|w| w.url.as_deref())
                .collect();
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "no_key_here",
                format!("this node holds no key for this video; its key servers are {elsewhere:?}"),
            ));
        }
    };
    tracing::info!(manifest = %id, viewer = %session.address, "content key released");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        key.to_vec(),
    )
        .into_response())
}
