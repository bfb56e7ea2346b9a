//! The HTTP API and gateway.
//!
//! | route | does |
//! |---|---|
//! | `GET /health` | liveness: `{"status":"ok"}` |
//! | `GET /api/v1/status` | peer id, peers, blobs and bytes stored, provider standings |
//! | `POST /api/v1/blobs` | stores the request body as a blob; answers its hash and size |
//! | `GET`/`HEAD /blob/{hash}` | the blob's bytes, with `Range`; fetched from the swarm when not held here |
//! | `/api/v1/uploads...` | resumable uploads (tus 1.0), see [`crate::uploads`] |
//! | `POST /api/v1/publish`, `GET /api/v1/jobs[/{id}]`, `GET /api/v1/manifests[/{id}]`, `POST /api/v1/manifests/{id}/pin` | publishing and pinning, see [`crate::publish`] |
//! | `GET /hls/{id}/...`, `GET /dash/{id}/...` | HLS and DASH, see [`crate::gateway`] |
//! | `/api/v1/auth/...`, `GET /keys/{id}` | wallet sign-in and key release, see [`crate::access`] |
//!
//! Errors are JSON `{"error": "<code>", "message": "<what to do>"}` with a 4xx/5xx status.

use std::{io, sync::Arc};

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use futures::StreamExt;
use serde::Serialize;
use streamgate_protocol::{
    ContentHash,
    range::{self, RangeReply},
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::{
    fetch::FetchError,
    node::{AddError, Added, Node, iroh_hash},
    videos::ManifestLoadError,
};

/// Requests handled at once; more wait in the accept queue. Bounds memory and open
/// store readers under load.
const MAX_CONCURRENT_REQUESTS: usize = 1024;
/// Read buffer for streaming blob bodies.
const STREAM_CHUNK: usize = 64 * 1024;

pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/status", get(status))
        .route(
            "/api/v1/blobs",
            // The limit is enforced while streaming, against api.max_upload_bytes.
            post(add_blob).layer(DefaultBodyLimit::disable()),
        )
        .route("/blob/{hash}", get(get_blob))
        .merge(crate::uploads::routes())
        .merge(crate::publish::routes())
        .merge(crate::gateway::routes())
        .merge(crate::access::api::routes())
        .fallback(not_found)
        .layer(cors())
        .layer(tower::limit::ConcurrencyLimitLayer::new(
            MAX_CONCURRENT_REQUESTS,
        ))
        .with_state(node)
}

/// Any origin may read: content is public or protected by keys, never by origin. Clients
/// need the tus and range headers.
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
            header::LOCATION,
            header::HeaderName::from_static("upload-offset"),
            header::HeaderName::from_static("upload-length"),
            header::HeaderName::from_static("tus-resumable"),
            header::HeaderName::from_static("tus-version"),
            header::HeaderName::from_static("tus-extension"),
            header::HeaderName::from_static("tus-max-size"),
        ])
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
        };
        (self.status, Json(body)).into_response()
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

impl From<FetchError> for ApiError {
    fn from(e: FetchError) -> Self {
        let (status, code) = match &e {
            FetchError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            FetchError::ProvidersFailed { .. } => (StatusCode::BAD_GATEWAY, "providers_failed"),
            FetchError::Swarm(_) => (StatusCode::SERVICE_UNAVAILABLE, "swarm_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "store_error"),
        };
        Self::new(status, code, e.to_string())
    }
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn status(State(node): State<Arc<Node>>) -> Result<Response, ApiError> {
    let status = node
        .status()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))?;
    Ok(Json(status).into_response())
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!("no route for {method} {}", uri.path()),
    )
}

/// Why forwarding an upload body stopped early.
enum UploadEnd {
    TooLarge,
    Interrupted(String),
}

async fn add_blob(
    State(node): State<Arc<Node>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Added>), ApiError> {
    let limit = node.config.api.max_upload_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "body is larger than this node accepts ({limit} bytes; config key api.max_upload_bytes)"
            ),
        )
    };
    if let Some(length) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit
    {
        return Err(too_large());
    }
    // The store wants a `Sync` stream; the request body is not, so bytes cross a small
    // channel. 8 chunks in flight bound the memory one upload can hold.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(8);
    let mut source = body.into_data_stream();
    let forward = async move {
        let mut total = 0u64;
        while let Some(chunk) = source.next().await {
            let bytes = chunk.map_err(|e| UploadEnd::Interrupted(e.to_string()))?;
            total += bytes.len() as u64;
            if total > limit {
                return Err(UploadEnd::TooLarge);
            }
            if tx.send(bytes).await.is_err() {
                break;
            }
        }
        Ok(())
    };
    let data = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|bytes| (Ok(bytes), rx))
    });
    // A bad upload is abandoned by dropping the store's import before it sees the end of
    // the stream, which aborts it. (Handing the store an error item instead can panic
    // inside iroh-blobs 0.104's `add_stream` when it races the import's own progress.)
    let add = node.add(data);
    tokio::pin!(add);
    let added = tokio::select! {
        forwarded = forward => match forwarded {
            Ok(()) => add.await,
            Err(UploadEnd::TooLarge) => return Err(too_large()),
            Err(UploadEnd::Interrupted(e)) => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "upload_interrupted",
                    e,
                ));
            }
        },
        added = &mut add => added,
    };
    let added = added.map_err(|e| match e {
        AddError::Upload(msg) => ApiError::new(StatusCode::BAD_REQUEST, "upload_failed", msg),
        other => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            other.to_string(),
        ),
    })?;
    tracing::info!(hash = %added.hash, size = added.size, "blob added");
    Ok((StatusCode::CREATED, Json(added)))
}

async fn get_blob(
    State(node): State<Arc<Node>>,
    Path(hash): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let hash: ContentHash = hash
        .parse()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_hash", format!("{e}")))?;
    let size = node.ensure_local(hash).await?;
    serve_blob(
        &node,
        hash,
        size,
        None,
        &method,
        &headers,
        "application/octet-stream",
    )
    .await
}

/// Answers a request for a locally complete blob: `Range`, `HEAD`, and caching headers for
/// content that can never change. The body comes from `cached` when the bytes are in
/// memory, else from the blob store.
pub async fn serve_blob(
    node: &Node,
    hash: ContentHash,
    size: u64,
    cached: Option<Bytes>,
    method: &Method,
    headers: &HeaderMap,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    let range_header = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(v.to_str().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_range",
                "Range header is not ASCII",
            )
        })?),
    };
    let reply = range::resolve(range_header, size)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_range", e.to_string()))?;
    let (status, start, len) = match reply {
        RangeReply::Full => (StatusCode::OK, 0, size),
        RangeReply::Partial(r) => (StatusCode::PARTIAL_CONTENT, r.start, r.end - r.start),
        RangeReply::Unsatisfiable => {
            let mut response = ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("the blob is {size} bytes"),
            )
            .into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                response.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return Ok(response);
        }
    };
    let mut builder = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, len)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag(&hash))
        .header(header::CACHE_CONTROL, IMMUTABLE);
    if status == StatusCode::PARTIAL_CONTENT {
        builder = builder.header(
            header::CONTENT_RANGE,
            format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    let body = if *method == Method::HEAD || len == 0 {
        Body::empty()
    } else if let Some(bytes) = cached {
        Body::from(bytes.slice(start as usize..(start + len) as usize))
    } else {
        let mut reader = node.data_plane.store().blobs().reader(iroh_hash(&hash));
        reader.seek(io::SeekFrom::Start(start)).await.map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                e.to_string(),
            )
        })?;
        Body::from_stream(tokio_util::io::ReaderStream::with_capacity(
            reader.take(len),
            STREAM_CHUNK,
        ))
    };
    builder
        .body(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))
}

/// `"<hex hash>"`, built without the formatting machinery: it is on every segment response.
fn etag(hash: &ContentHash) -> HeaderValue {
    let mut quoted = [b'"'; 2 + 64];
    // 32 bytes always encode into exactly 64 hex digits.
    let _ = hex::encode_to_slice(hash.as_bytes(), &mut quoted[1..65]);
    HeaderValue::from_bytes(&quoted).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

/// Content-addressed: the bytes behind a hash never change.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_the_quoted_hash() {
        let hash = ContentHash::of(b"segment");
        assert_eq!(etag(&hash), format!("\"{hash}\"").as_str());
    }
}
