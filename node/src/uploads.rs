//! Resumable uploads with tus 1.0 (<https://tus.io/protocols/resumable-upload>): the core
//! protocol plus the `creation` and `termination` extensions, so any tus client can upload.
//!
//! | request | answer |
//! |---|---|
//! | `OPTIONS /api/v1/uploads` | 204 with `Tus-Version`, `Tus-Extension`, `Tus-Max-Size` |
//! | `POST /api/v1/uploads` (`Upload-Length`, `Upload-Metadata`) | 201 with `Location` |
//! | `HEAD /api/v1/uploads/{id}` | 200 with `Upload-Offset`, `Upload-Length` |
//! | `PATCH /api/v1/uploads/{id}` (`Upload-Offset`, `application/offset+octet-stream`) | 204 with the new `Upload-Offset` |
//! | `DELETE /api/v1/uploads/{id}` | 204 |
//!
//! Bytes go to `DATA_DIR/uploads/<id>.part`; the offset is that file's length, so an
//! interrupted `PATCH` keeps every byte that arrived, and a client resumes by asking `HEAD`.

use std::{collections::HashSet, path::PathBuf, sync::Arc};

use axum::{
    Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, State},
    http::{HeaderMap, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use base64::Engine;
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

use crate::{api::ApiError, db::UploadEntry, node::Node, runfile::unix_now};

pub const TUS_VERSION: &str = "1.0.0";
/// Longest `Upload-Metadata` header accepted.
const MAX_METADATA_BYTES: usize = 4096;

/// Uploads with a `PATCH` in progress: tus allows one writer per upload at a time.
#[derive(Debug, Default)]
pub struct Busy(std::sync::Mutex<HashSet<String>>);

pub fn routes() -> Router<Arc<Node>> {
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

/// The file an upload's bytes are in.
pub fn upload_path(node: &Node, id: &str) -> PathBuf {
    node.data_dir.join("uploads").join(format!("{id}.part"))
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

fn tus_err(status: StatusCode, code: &'static str, message: impl Into<String>) -> TusError {
    ApiError::new(status, code, message).into()
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

fn valid_id(id: &str) -> Result<(), ApiError> {
    if id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_upload",
            format!("no upload {id:?}"),
        ))
    }
}

async fn options(State(node): State<Arc<Node>>) -> Response {
    with_tus(
        StatusCode::NO_CONTENT,
        &[
            ("tus-version", TUS_VERSION.into()),
            ("tus-extension", "creation,termination".into()),
            ("tus-max-size", node.config.api.max_upload_bytes.to_string()),
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
    let bad = |msg: String| tus_err(StatusCode::BAD_REQUEST, "bad_upload", msg);
    let length: u64 = header_str(&headers, "upload-length")
        .ok_or_else(|| bad("Upload-Length is required (deferred length is not supported)".into()))?
        .parse()
        .map_err(|_| bad("Upload-Length is not a number".into()))?;
    let limit = node.config.api.max_upload_bytes;
    if length > limit {
        return Err(tus_err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "{length} bytes is more than this node accepts ({limit}; config key api.max_upload_bytes)"
            ),
        ));
    }
    let metadata = match header_str(&headers, "upload-metadata") {
        Some(text) => parse_metadata(text).map_err(bad)?,
        None => Vec::new(),
    };
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    let id = hex::encode(raw);
    let path = upload_path(&node, &id);
    let store_err = |e: String| tus_err(StatusCode::INTERNAL_SERVER_ERROR, "store_error", e);
    if let Some(dir) = path.parent() {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(|e| store_err(e.to_string()))?;
    }
    tokio::fs::File::create(&path)
        .await
        .map_err(|e| store_err(e.to_string()))?;
    node.db
        .put_upload(
            &id,
            &UploadEntry {
                length,
                metadata,
                created_at: unix_now(),
            },
        )
        .map_err(|e| store_err(e.to_string()))?;
    Ok(with_tus(
        StatusCode::CREATED,
        &[
            ("location", format!("/api/v1/uploads/{id}")),
            ("upload-offset", "0".into()),
        ],
    ))
}

async fn current_offset(node: &Node, id: &str) -> Result<(UploadEntry, u64), ApiError> {
    valid_id(id)?;
    let entry = node
        .db
        .upload(id)
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "store_error",
                e.to_string(),
            )
        })?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "no_such_upload",
                format!("no upload {id}"),
            )
        })?;
    let offset = match tokio::fs::metadata(upload_path(node, id)).await {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    Ok((entry, offset))
}

async fn offset(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, TusError> {
    check_version(&headers)?;
    let (entry, offset) = current_offset(&node, &id).await?;
    Ok(with_tus(
        StatusCode::OK,
        &[
            ("upload-offset", offset.to_string()),
            ("upload-length", entry.length.to_string()),
            ("cache-control", "no-store".into()),
        ],
    ))
}

/// Releases the one-writer lock when a PATCH ends, however it ends.
struct WriterGuard<'a> {
    busy: &'a Busy,
    id: String,
}

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.busy.0.lock() {
            set.remove(&self.id);
        }
    }
}

async fn append(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TusError> {
    check_version(&headers)?;
    let err = |status, code, msg: String| tus_err(status, code, msg);
    if header_str(&headers, "content-type") != Some("application/offset+octet-stream") {
        return Err(err(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "bad_content_type",
            "PATCH bodies must be Content-Type: application/offset+octet-stream".into(),
        ));
    }
    let claimed: u64 = header_str(&headers, "upload-offset")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| {
            err(
                StatusCode::BAD_REQUEST,
                "bad_offset",
                "Upload-Offset is required".into(),
            )
        })?;
    valid_id(&id)?;
    let _guard = {
        let mut set = node.uploads.0.lock().map_err(|_| {
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "lock poisoned".into(),
            )
        })?;
        if !set.insert(id.clone()) {
            return Err(err(
                StatusCode::CONFLICT,
                "upload_busy",
                "another PATCH to this upload is in progress".into(),
            ));
        }
        WriterGuard {
            busy: &node.uploads,
            id: id.clone(),
        }
    };
    let (entry, offset) = current_offset(&node, &id).await?;
    if claimed != offset {
        let mut response = err(
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!(
                "Upload-Offset is {claimed} but the node has {offset} bytes; ask HEAD and resume from there"
            ),
        );
        response.offset = Some(offset);
        return Err(response);
    }
    let store_err = |e: std::io::Error| {
        err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )
    };
    let mut file = tokio::fs::OpenOptions::new()
        .append(true)
        .open(upload_path(&node, &id))
        .await
        .map_err(store_err)?;
    let mut written = offset;
    let mut stream = body.into_data_stream();
    let mut overflow = false;
    let mut interrupted = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(bytes) => {
                let room = entry.length - written;
                let take = (bytes.len() as u64).min(room) as usize;
                file.write_all(&bytes[..take]).await.map_err(store_err)?;
                written += take as u64;
                if take < bytes.len() {
                    overflow = true;
                    break;
                }
            }
            Err(e) => {
                // The client went away: keep what arrived (tus resumes from it).
                interrupted = Some(e.to_string());
                break;
            }
        }
    }
    file.flush().await.map_err(store_err)?;
    file.sync_all().await.map_err(store_err)?;
    if overflow {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "the body goes past Upload-Length ({} bytes); the bytes up to it were kept",
                entry.length
            ),
        ));
    }
    if let Some(reason) = interrupted {
        return Err(err(StatusCode::BAD_REQUEST, "upload_interrupted", reason));
    }
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
    current_offset(&node, &id).await?;
    let _ = tokio::fs::remove_file(upload_path(&node, &id)).await;
    node.db.remove_upload(&id).map_err(|e| {
        tus_err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_error",
            e.to_string(),
        )
    })?;
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
