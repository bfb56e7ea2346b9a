//! Resumable uploads with tus 1.0 (<https://tus.io/protocols/resumable-upload>): the core
//! protocol plus the `creation`, `expiration` and `termination` extensions, so any tus
//! client can upload. `OPTIONS` needs no operator token; everything else does.
//! The uploads themselves are the `uploads` service.
//!
//! | request | answer |
//! |---|---|
//! | `OPTIONS /api/v1/uploads[/{id}]` | 204 with `Tus-Version`, `Tus-Extension`, `Tus-Max-Size` |
//! | `POST /api/v1/uploads` (`Upload-Length`, `Upload-Metadata`) | 201 with `Location`, `Upload-Expires`; 507 over the quota of unfinished uploads |
//! | `HEAD /api/v1/uploads/{id}` | 200 with `Upload-Offset`, `Upload-Length`, `Upload-Expires` |
//! | `PATCH /api/v1/uploads/{id}` (`Upload-Offset`, `application/offset+octet-stream`) | 204 with the new `Upload-Offset`, `Upload-Expires` |
//! | `DELETE /api/v1/uploads/{id}` | 204 |

use std::sync::Arc;

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use streamgate_protocol::tus;

use super::ApiError;
use streamgate_swarm::daemon::unix_now;

use crate::{node::Node, services::uploads::UploadError};

pub const TUS_VERSION: &str = "1.0.0";

/// Every upload route is the operator's.
pub fn operator_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/uploads", post(create).options(options))
        .route(
            "/api/v1/uploads/{id}",
            axum::routing::head(offset)
                .options(options)
                // The size limit is the upload's own Upload-Length, checked while streaming.
                .patch(append)
                .layer(DefaultBodyLimit::disable())
                .delete(terminate),
        )
}

/// An error answer carrying the tus headers a client needs to recover.
#[derive(Debug)]
struct TusError {
    error: ApiError,
    /// The node's offset, so a client can resume without another HEAD.
    offset: Option<u64>,
    version_mismatch: bool,
}

impl From<ApiError> for TusError {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            offset: None,
            version_mismatch: false,
        }
    }
}

impl From<UploadError> for TusError {
    fn from(e: UploadError) -> Self {
        let (status, code, offset) = match &e {
            UploadError::NotFound(_) => (StatusCode::NOT_FOUND, "no_such_upload", None),
            UploadError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", None),
            UploadError::OverQuota { .. } => {
                (StatusCode::INSUFFICIENT_STORAGE, "upload_quota", None)
            }
            UploadError::Busy => (StatusCode::CONFLICT, "upload_busy", None),
            UploadError::OffsetMismatch { offset, .. } => {
                (StatusCode::CONFLICT, "offset_mismatch", Some(*offset))
            }
            UploadError::PastEnd { offset, .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large", Some(*offset))
            }
            UploadError::Interrupted { offset, .. } => {
                (StatusCode::BAD_REQUEST, "upload_interrupted", Some(*offset))
            }
            UploadError::Incomplete { offset, .. } => {
                (StatusCode::BAD_REQUEST, "upload_incomplete", Some(*offset))
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "store_error", None),
        };
        Self {
            error: ApiError::new(status, code, e.to_string()),
            offset,
            version_mismatch: false,
        }
    }
}

impl IntoResponse for TusError {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        tus_headers(&mut response);
        if self.version_mismatch {
            response
                .headers_mut()
                .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
        }
        if let Some(offset) = self.offset
            && let Ok(v) = HeaderValue::from_str(&offset.to_string())
        {
            response.headers_mut().insert("upload-offset", v);
        }
        response
    }
}

fn tus_headers(response: &mut Response) {
    response
        .headers_mut()
        .insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
}

fn with_tus(status: StatusCode, headers: &[(&'static str, String)]) -> Response {
    let mut response = status.into_response();
    tus_headers(&mut response);
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            response.headers_mut().insert(*name, v);
        }
    }
    response
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn check_version(headers: &HeaderMap) -> Result<(), TusError> {
    match header_str(headers, "tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        other => Err(TusError {
            error: ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "tus_version",
                format!("this node speaks tus {TUS_VERSION}; the request said {other:?}"),
            ),
            offset: None,
            version_mismatch: true,
        }),
    }
}

async fn options(State(node): State<Arc<Node>>) -> Response {
    with_tus(
        StatusCode::NO_CONTENT,
        &[
            ("tus-version", TUS_VERSION.into()),
            ("tus-extension", "creation,expiration,termination".into()),
            ("tus-max-size", node.uploads.max_bytes().to_string()),
        ],
    )
}

async fn create(State(node): State<Arc<Node>>, headers: HeaderMap) -> Result<Response, TusError> {
    check_version(&headers)?;
    let bad = |msg: String| TusError::from(ApiError::bad_request("bad_upload", msg));
    let length = header_str(&headers, "upload-length")
        .ok_or_else(|| bad("Upload-Length is required (deferred length is not supported)".into()))
        .and_then(|text| tus::parse_upload_length(text).map_err(|e| bad(e.to_string())))?;
    let metadata = match header_str(&headers, "upload-metadata") {
        Some(text) => tus::parse_metadata(text).map_err(|e| bad(e.to_string()))?,
        None => Vec::new(),
    };
    let id = node.uploads.create(length, metadata).await?;
    Ok(with_tus(
        StatusCode::CREATED,
        &[
            ("location", format!("/api/v1/uploads/{id}")),
            ("upload-offset", "0".into()),
            ("upload-expires", expires(&node, unix_now())),
        ],
    ))
}

/// `Upload-Expires` for an upload last touched at `touched` (unix seconds).
fn expires(node: &Node, touched: u64) -> String {
    let at = touched.saturating_add(node.uploads.budget().expiry_secs);
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(at))
}

async fn offset(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TusError> {
    check_version(&headers)?;
    let state = node.uploads.state(&id).await?;
    Ok(with_tus(
        StatusCode::OK,
        &[
            ("upload-offset", state.offset.to_string()),
            ("upload-length", state.entry.length.to_string()),
            ("upload-expires", expires(&node, state.entry.touched_at())),
            ("cache-control", "no-store".into()),
        ],
    ))
}

async fn append(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TusError> {
    check_version(&headers)?;
    if header_str(&headers, "content-type") != Some("application/offset+octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "PATCH bodies must be Content-Type: application/offset+octet-stream",
        )
        .into());
    }
    let claimed = header_str(&headers, "upload-offset")
        .and_then(|v| tus::parse_upload_offset(v).ok())
        .ok_or_else(|| ApiError::bad_request("bad_offset", "Upload-Offset is required"))?;
    let written = node
        .uploads
        .append(&id, claimed, body.into_data_stream())
        .await?;
    Ok(with_tus(
        StatusCode::NO_CONTENT,
        &[
            ("upload-offset", written.to_string()),
            ("upload-expires", expires(&node, unix_now())),
        ],
    ))
}

async fn terminate(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TusError> {
    check_version(&headers)?;
    node.uploads.remove(&id).await?;
    Ok(with_tus(StatusCode::NO_CONTENT, &[]))
}
