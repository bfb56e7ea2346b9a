//! The HTTP API and gateway: routes, one file per surface, over the services.
//!
//! | route | file | who |
//! |---|---|---|
//! | `GET /health`, `GET /api/v1/status` | [`status`] | anyone |
//! | `GET`/`HEAD /blob/{hash}` (with `Range`; fetched from the swarm and streamed as verified bytes arrive when not held here) | [`blobs`] | anyone |
//! | `POST /api/v1/blobs` | [`blobs`] | operator |
//! | `/api/v1/uploads...` (tus 1.0) | [`uploads`] | operator |
//! | `GET /api/v1/manifests[/{id}]` | [`jobs`] | anyone |
//! | `POST /api/v1/publish`, `GET /api/v1/jobs[/{id}]`, `POST /api/v1/jobs/{id}/cancel`, `POST /api/v1/manifests/{id}/pin` | [`jobs`] | operator |
//! | `GET /hls/{id}/...`, `GET /dash/{id}/...` | [`gateway`] | anyone |
//! | `/api/v1/auth/...` | [`auth`] | anyone |
//! | `GET /keys/{id}` | [`keys`] | signed-in viewers the policy allows |
//!
//! "operator": `Authorization: Bearer` with the token in `DATA_DIR/api.token` ([`operator`]).
//!
//! Errors are JSON ([`streamgate_api::v1::ErrorBody`]) with a 4xx/5xx status.

pub mod auth;
pub mod blobs;
pub mod gateway;
pub mod jobs;
pub mod keys;
pub mod limits;
pub mod operator;
pub mod server;
pub mod status;
pub mod uploads;

use std::sync::Arc;

use axum::{
    Json, Router,
    http::{Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use streamgate_api::v1::ErrorBody;

use crate::{
    node::Node,
    services::{
        blobs::AddError, fetch::FetchError, library::ManifestLoadError, publish::PublishError,
    },
};

/// Longest error message sent: messages may quote what a client sent.
const MAX_MESSAGE_BYTES: usize = 512;

/// Every route; `server` is the HTTP server's record, which the status route reports.
pub fn router(node: Arc<Node>, server: Arc<server::ServerStats>) -> Router {
    let limits = Arc::new(limits::RateLimits::default());
    // Whatever writes or spends needs the operator token, and carries no CORS headers: no
    // other origin may use it or read its answers.
    let operator = Router::new()
        .merge(blobs::operator_routes())
        .merge(uploads::operator_routes())
        .merge(jobs::operator_routes())
        .route_layer(axum::middleware::from_fn_with_state(
            node.clone(),
            operator::require,
        ));
    let public = Router::new()
        .merge(status::routes(server))
        .merge(blobs::routes())
        .merge(jobs::routes())
        .merge(gateway::routes())
        .merge(auth::routes(&limits))
        .merge(keys::routes(&limits))
        .fallback(not_found)
        .layer(cors());
    // Requests in flight are capped node-wide by the server (`server`), not here.
    public
        .merge(operator)
        .layer(axum::middleware::map_response(json_errors))
        .with_state(node)
}

/// The framework's own rejections (a body over its limit, a malformed JSON body, a method
/// a route lacks) are plain text; every error leaves in the JSON error format.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_MESSAGE_BYTES)
        .await
        .unwrap_or_default();
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_string();
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        _ if status.is_server_error() => "internal",
        _ => "bad_request",
    };
    let json = ApiError::new(status, code, message).into_response();
    let (json_parts, json_body) = json.into_parts();
    // Keep the rejection's own headers (`Allow`, CORS, tus) under the JSON's type and length.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(json_parts.headers);
    Response::from_parts(parts, json_body)
}

/// Any origin may read: content is public or protected by keys, never by origin. Players
/// need the range headers.
fn cors() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{Any, CorsLayer};
    CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any)
        .expose_headers([
            header::CONTENT_LENGTH,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::ETAG,
        ])
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    /// An error; a message over [`MAX_MESSAGE_BYTES`] is cut short, so that no answer
    /// echoes unbounded input.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        let mut message = message.into();
        if message.len() > MAX_MESSAGE_BYTES {
            let mut end = MAX_MESSAGE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        Self {
            status,
            code,
            message,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code, message)
    }

    pub fn internal(message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            message.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code.to_string(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        // Every 503 is a passing condition (a limit, a busy store): say when to come back.
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response
    }
}

/// A content hash from a path segment.
pub fn parse_hash(
    text: &str,
    code: &'static str,
) -> Result<streamgate_protocol::ContentHash, ApiError> {
    text.parse()
        .map_err(|e| ApiError::bad_request(code, format!("{e}")))
}

impl From<FetchError> for ApiError {
    fn from(e: FetchError) -> Self {
        let (status, code) = match &e {
            FetchError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            FetchError::ProvidersFailed { .. } => (StatusCode::BAD_GATEWAY, "providers_failed"),
            FetchError::WrongSize { .. } => (StatusCode::BAD_GATEWAY, "wrong_size"),
            FetchError::Swarm(_) => (StatusCode::SERVICE_UNAVAILABLE, "swarm_unavailable"),
            FetchError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "lookups_busy"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl From<ManifestLoadError> for ApiError {
    fn from(e: ManifestLoadError) -> Self {
        match e {
            ManifestLoadError::Fetch(fetch) => fetch.into(),
            ManifestLoadError::Invalid { .. } => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_manifest",
                e.to_string(),
            ),
            ManifestLoadError::Store(_) => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                e.to_string(),
            ),
        }
    }
}

impl From<AddError> for ApiError {
    fn from(e: AddError) -> Self {
        match e {
            AddError::Upload(msg) => Self::bad_request("upload_failed", msg),
            AddError::Refused(msg) => {
                Self::new(StatusCode::UNPROCESSABLE_ENTITY, "manifest_refused", msg)
            }
            other => Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                other.to_string(),
            ),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        let (status, code) = match &e {
            PublishError::NoSuchUpload(_) => (StatusCode::NOT_FOUND, "no_such_upload"),
            PublishError::UploadIncomplete { .. } => (StatusCode::BAD_REQUEST, "upload_incomplete"),
            PublishError::BadLadder(_) => (StatusCode::BAD_REQUEST, "bad_ladder"),
            PublishError::BadTitle => (StatusCode::BAD_REQUEST, "bad_title"),
            PublishError::BadGate(_) => (StatusCode::BAD_REQUEST, "bad_gate"),
            PublishError::KeyServer(_) => (StatusCode::UNPROCESSABLE_ENTITY, "key_server"),
            PublishError::NoSuchJob(_) => (StatusCode::NOT_FOUND, "no_such_job"),
            PublishError::AlreadyEnded(_) => (StatusCode::CONFLICT, "job_ended"),
            PublishError::Media(_) => (StatusCode::UNPROCESSABLE_ENTITY, "media_error"),
            PublishError::Cancelled => (StatusCode::CONFLICT, "cancelled"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
        };
        Self::new(status, code, e.to_string())
    }
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(
        "no_such_route",
        format!("no route for {method} {}", uri.path()),
    )
}
