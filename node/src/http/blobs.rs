//! `POST /api/v1/blobs` (store the body as a blob) and `GET`/`HEAD /blob/{hash}` (its bytes,
//! with `Range`), and the one way every blob or segment is answered: [`respond`].
//!
//! A blob this node lacks is fetched from the swarm; the answer starts as soon as a
//! provider delivers (headers once the size is known, then verified bytes as they arrive).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Body,
    extract::{DefaultBodyLimit, Path, Request, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post},
};
use bytes::Bytes;
use futures::StreamExt;
use streamgate_api::v1::Added;
use streamgate_protocol::{
    ContentHash,
    range::{self, RangeReply},
};

use super::{ApiError, parse_hash};
use crate::{
    node::Node,
    services::{
        blobs::Blobs,
        fetch::{FetchRequest, Source},
    },
};

/// Content-addressed: the bytes behind a hash never change.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn routes() -> Router<Arc<Node>> {
    Router::new().route("/blob/{hash}", get(get_blob))
}

/// Adding blobs: the operator's.
pub fn operator_routes() -> Router<Arc<Node>> {
    Router::new().route(
        "/api/v1/blobs",
        // The limit is enforced while streaming, against api.max_upload_bytes.
        post(add_blob).layer(DefaultBodyLimit::disable()),
    )
}

async fn add_blob(
    State(node): State<Arc<Node>>,
    request: Request,
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
    if let Some(length) = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        && length > limit
    {
        return Err(too_large());
    }
    // Spooled to a file first: an upload cut short or over the limit leaves nothing behind.
    let mut spool = node.blobs.spool().await?;
    let mut source = request.into_body().into_data_stream();
    while let Some(chunk) = source.next().await {
        let bytes =
            chunk.map_err(|e| ApiError::bad_request("upload_interrupted", e.to_string()))?;
        if spool.len() + bytes.len() as u64 > limit {
            return Err(too_large());
        }
        spool.write(&bytes).await?;
    }
    let added = node.blobs.add(spool).await?;
    tracing::info!(hash = %added.hash, size = added.size, "blob added");
    Ok((StatusCode::CREATED, Json(added)))
}

// The request by reference: the `HeaderMap` extractor would clone every header.
async fn get_blob(
    State(node): State<Arc<Node>>,
    Path(hash): Path<String>,
    request: Request,
) -> Result<Response, ApiError> {
    let hash = parse_hash(&hash, "bad_hash")?;
    let (method, headers) = (request.method(), request.headers());
    let source = node
        .fetcher
        .open(FetchRequest {
            first_wanted: wanted_offset(headers),
            ..FetchRequest::blob(hash)
        })
        .await?;
    respond(
        &node.blobs,
        hash,
        source,
        None,
        method,
        headers,
        "application/octet-stream",
    )
    .await
}

/// Where a `Range` header starts, to fetch those bytes first (0 without one).
pub fn wanted_offset(headers: &HeaderMap) -> u64 {
    let header = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    match range::resolve(header, u64::MAX) {
        Ok(RangeReply::Partial(r)) => r.start,
        _ => 0,
    }
}

/// Answers a request for a blob: `Range`, `HEAD`, and caching headers for content that
/// can never change. The body comes from `cached` when the bytes are in memory, from the
/// store when complete here, else from the fetch as its verified bytes arrive.
pub async fn respond(
    blobs: &Arc<Blobs>,
    hash: ContentHash,
    source: Source,
    cached: Option<Bytes>,
    method: &Method,
    headers: &HeaderMap,
    content_type: &'static str,
) -> Result<Response, ApiError> {
    let size = source.size();
    let range_header = match headers.get(header::RANGE) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .map_err(|_| ApiError::bad_request("bad_range", "Range header is not ASCII"))?,
        ),
    };
    let reply = range::resolve(range_header, size)
        .map_err(|e| ApiError::bad_request("bad_range", e.to_string()))?;
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
        match source {
            Source::Local { .. } => {
                // The first piece is read before the headers go out, so a store that
                // cannot answer gives a clean 503 rather than a response cut short.
                let end = start + len;
                let first = blobs
                    .read_piece(&hash, start, end, true)
                    .await
                    .map_err(|e| {
                        ApiError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "store_busy",
                            format!("the blob store cannot read {}: {e}", hash.short()),
                        )
                    })?;
                let rest = blobs.read_stream(hash, start + first.len() as u64..end);
                Body::from_stream(futures::stream::once(async { Ok(first) }).chain(rest))
            }
            Source::Live { blob, .. } => {
                Body::from_stream(blob.read(blobs.clone(), start..start + len))
            }
        }
    };
    builder.body(body).map_err(ApiError::internal)
}

/// `"<hex hash>"`, built without the formatting machinery: it is on every segment response.
fn etag(hash: &ContentHash) -> HeaderValue {
    let mut quoted = [b'"'; 2 + 64];
    // 32 bytes always encode into exactly 64 hex digits.
    let _ = hex::encode_to_slice(hash.as_bytes(), &mut quoted[1..65]);
    HeaderValue::from_bytes(&quoted).unwrap_or_else(|_| HeaderValue::from_static("\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etag_is_the_quoted_hash() {
        let hash = ContentHash::of(b"segment");
        assert_eq!(etag(&hash), format!("\"{hash}\"").as_str());
    }

    #[test]
    fn the_wanted_offset_is_where_the_range_starts() {
        let mut headers = HeaderMap::new();
        assert_eq!(wanted_offset(&headers), 0);
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=5000-6000"));
        assert_eq!(wanted_offset(&headers), 5000);
        headers.insert(header::RANGE, HeaderValue::from_static("bytes=junk"));
        assert_eq!(wanted_offset(&headers), 0);
    }
}
