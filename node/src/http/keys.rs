//! `GET /keys/{id}`: the 16-byte AES-128 key of gated video `id`, for a signed-in viewer
//! (bearer token or session cookie) whom the video's policy allows.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Request, State},
    http::{HeaderMap, StatusCode, header},
    middleware::from_fn_with_state,
    response::{IntoResponse, Response},
    routing::get,
};

use super::{
    ApiError,
    limits::{self, Class, RateLimits},
    parse_hash,
};
use crate::{node::Node, services::access::KeyError};

pub const SESSION_COOKIE: &str = "sg_session";

pub fn routes(limits: &Arc<RateLimits>) -> Router<Arc<Node>> {
    Router::new().route(
        "/keys/{id}",
        get(key).route_layer(from_fn_with_state(
            (limits.clone(), Class::Key),
            limits::limit,
        )),
    )
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::NotGated => ApiError::not_found("not_gated", e.to_string()),
            KeyError::Denied(denied) => denied.into(),
            KeyError::NoKeyHere { .. } => {
                ApiError::new(StatusCode::CONFLICT, "no_key_here", e.to_string())
            }
            KeyError::Unusable(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "key_unusable",
                e.to_string(),
            ),
        }
    }
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
    request: Request,
) -> Result<Response, ApiError> {
    let id = parse_hash(&id, "bad_manifest_id")?;
    let session = session_token(request.headers())
        .and_then(|t| node.access.session(&t))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "sign_in_required",
                "sign in first (POST /api/v1/auth/siwe, or `streamgate sign-in`) and send the token as Authorization: Bearer",
            )
        })?;
    let signed = node.library.manifest(id).await?;
    let key = node.access.release_key(id, &signed, &session).await?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        key.to_vec(),
    )
        .into_response())
}
