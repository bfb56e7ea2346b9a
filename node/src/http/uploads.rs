//! Resumable uploads with tus 1.0 (<https://tus.io/protocols/resumable-upload>): the core
//! protocol plus the `creation` and `termination` extensions, so any tus client can upload.
//! The uploads themselves are the `uploads` service.
//!
//! | request | answer |
//! |---|---|
//! | `OPTIONS /api/v1/uploads` | 204 with `Tus-Version`, `Tus-Extension`, `Tus-Max-Size` |
//! | `POST /api/v1/uploads` (`Upload-Length`, `Upload-Metadata`) | 201 with `Location` |
//! | `HEAD /api/v1/uploads/{id}` | 200 with `Upload-Offset`, `Upload-Length` |
//! | `PATCH /api/v1/uploads/{id}` (`Upload-Offset`, `application/offset+octet-stream`) | 204 with the new `Upload-Offset` |
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
use base64::Engine;

use super::ApiError;
use crate::{node::Node, services::uploads::UploadError};

pub const TUS_VERSION: &str = "1.0.0";
/// Longest `Upload-Metadata` header accepted.
const MAX_METADATA_BYTES: usize = 4096;

/// Every upload route is the operator's.
pub fn operator_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/uploads", post(create).options(options))
        .route(
            "/api/v1/uploads/{id}",
            axum::routing::head(offset)
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
            ("tus-extension", "creation,termination".into()),
            ("tus-max-size", node.uploads.max_bytes().to_string()),
        ],
    )
}

/// Parses `Upload-Metadata`: comma-separated `key base64value` pairs.
fn parse_metadata(text: &str) -> Result<Vec<(String, String)>, String> {
    if text.len() > MAX_METADATA_BYTES {
        return Err(format!(
            "Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes"
        ));
    }
    let mut pairs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let mut parts = item.splitn(2, ' ');
        let key = parts.next().unwrap_or_default();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(format!(
                "Upload-Metadata key {key:?} is not printable ASCII"
            ));
        }
        let value = match parts.next() {
            Some(encoded) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .map_err(|_| format!("Upload-Metadata value of {key:?} is not base64"))?;
                String::from_utf8(bytes)
                    .map_err(|_| format!("Upload-Metadata value of {key:?} is not UTF-8"))?
            }
            None => String::new(),
        };
        pairs.push((key.to_string(), value));
    }
    Ok(pairs)
}

async fn create(State(node): State<Arc<Node>>, headers: HeaderMap) -> Result<Response, TusError> {
    check_version(&headers)?;
    let bad = |msg: String| TusError::from(ApiError::bad_request("bad_upload", msg));
    let length: u64 = header_str(&headers, "upload-length")
        .ok_or_else(|| bad("Upload-Length is required (deferred length is not supported)".into()))?
        .parse()
        .map_err(|_| bad("Upload-Length is not a number".into()))?;
    let metadata = match header_str(&headers, "upload-metadata") {
        Some(text) => parse_metadata(text).map_err(bad)?,
        None => Vec::new(),
    };
    let id = node.uploads.create(length, metadata).await?;
    Ok(with_tus(
        StatusCode::CREATED,
        &[
            ("location", format!("/api/v1/uploads/{id}")),
            ("upload-offset", "0".into()),
        ],
    ))
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
    let claimed: u64 = header_str(&headers, "upload-offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::bad_request("bad_offset", "Upload-Offset is required"))?;
    let written = node
        .uploads
        .append(&id, claimed, body.into_data_stream())
        .await?;
    Ok(with_tus(
        StatusCode::NO_CONTENT,
        &[("upload-offset", written.to_string())],
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_parses_and_rejects_garbage() {
        let pairs = parse_metadata("filename d29ybGQubXA0,is_confidential").expect("valid");
        assert_eq!(
            pairs,
            vec![
                ("filename".into(), "world.mp4".into()),
                ("is_confidential".into(), String::new())
            ]
        );
        assert!(parse_metadata("title !!!notbase64").is_err());
        assert!(parse_metadata(&"a".repeat(5000)).is_err());
    }
}
