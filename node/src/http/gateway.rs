//! HLS and DASH from any node.
//!
//! | route | body |
//! |---|---|
//! | `GET /hls/{id}/master.m3u8` | master playlist (BANDWIDTH, CODECS, RESOLUTION, FRAME-RATE) |
//! | `GET /hls/{id}/{track}/index.m3u8` | media playlist |
//! | `GET /dash/{id}/manifest.mpd` | static MPD |
//! | `GET /{hls,dash}/{id}/{track}/init.mp4`, `.../seg_{n}.m4s` | CMAF init and media segments |
//!
//! Playlists are rendered from the verified manifest. A node that does not hold the content
//! fetches the manifest and each segment from the swarm on demand, answering with verified
//! bytes as they arrive, and prefetches the next few segments of the track a player is
//! reading. Everything under a manifest id is immutable, and is cached as such.

use std::sync::Arc;

use axum::{
    Router,
    extract::{Path, Request, State},
    http::{HeaderMap, Method, header},
    response::{IntoResponse, Response},
    routing::get,
};
use streamgate_media::playlist;
use streamgate_protocol::{
    ContentHash, SignedManifest,
    manifest::{Track, TrackKind},
};

use super::{
    ApiError,
    blobs::{IMMUTABLE, respond, wanted_offset},
    parse_hash,
};
use crate::{node::Node, services::fetch::Source};

const HLS_PLAYLIST: &str = "application/vnd.apple.mpegurl";
const DASH_MPD: &str = "application/dash+xml";

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/hls/{id}/master.m3u8", get(hls_master))
        .route("/hls/{id}/{track}/{file}", get(hls_track_file))
        .route("/dash/{id}/manifest.mpd", get(dash_mpd))
        .route("/dash/{id}/{track}/{file}", get(dash_track_file))
}

async fn load(node: &Node, id: &str) -> Result<(ContentHash, Arc<SignedManifest>), ApiError> {
    let id = parse_hash(id, "bad_manifest_id")?;
    let manifest = node.library.manifest(id).await?;
    Ok((id, manifest))
}

fn document(body: String, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, IMMUTABLE),
        ],
        body,
    )
        .into_response()
}

fn no_such(what: &str) -> ApiError {
    ApiError::not_found("no_such_file", format!("no {what} in this manifest"))
}

async fn hls_master(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, signed) = load(&node, &id).await?;
    Ok(document(
        playlist::hls_master(&signed.manifest),
        HLS_PLAYLIST,
    ))
}

async fn dash_mpd(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (_, signed) = load(&node, &id).await?;
    Ok(document(playlist::dash_mpd(&signed.manifest), DASH_MPD))
}

// The request by reference: segments are the hot path, and the `HeaderMap` extractor
// would clone every header.
async fn hls_track_file(
    State(node): State<Arc<Node>>,
    Path((id, track, file)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (method, headers) = (request.method(), request.headers());
    track_file(&node, &id, &track, &file, true, method, headers).await
}

// The request by reference: segments are the hot path, and the `HeaderMap` extractor
// would clone every header.
async fn dash_track_file(
    State(node): State<Arc<Node>>,
    Path((id, track, file)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, ApiError> {
    let (method, headers) = (request.method(), request.headers());
    track_file(&node, &id, &track, &file, false, method, headers).await
}

/// A file under `{id}/{track}/`: the HLS media playlist (when `hls`), or a segment.
async fn track_file(
    node: &Arc<Node>,
    id: &str,
    track: &str,
    file: &str,
    hls: bool,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (id, signed) = load(node, id).await?;
    let track = signed
        .manifest
        .track(track)
        .ok_or_else(|| no_such(&format!("track {track:?}")))?;
    if hls && file == "index.m3u8" {
        let key_uri = key_uri(id, &signed);
        let key = key_uri.as_deref().map(|uri| playlist::HlsKey {
            uri,
            track_number: signed
                .manifest
                .tracks
                .iter()
                .position(|t| std::ptr::eq(t, track))
                .unwrap_or_default(),
        });
        return Ok(document(playlist::hls_media(track, key), HLS_PLAYLIST));
    }
    segment(node, id, track, file, method, headers).await
}

/// Where players get the key of a gated video: always this node's own `/keys/{id}`, so a
/// player's credentials (cookie or bearer token) never go to another origin. A node with no
/// wrap of the key answers there with 409 `no_key_here`, naming the key servers to watch at.
fn key_uri(id: ContentHash, signed: &SignedManifest) -> Option<String> {
    signed
        .manifest
        .encryption
        .as_ref()
        .map(|_| format!("/keys/{id}"))
}

/// `init.mp4` or `seg_{n}.m4s` of `track`.
async fn segment(
    node: &Arc<Node>,
    id: ContentHash,
    track: &Track,
    file: &str,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let (segment, next) = if file == playlist::INIT_NAME {
        (track.init, 0)
    } else {
        let index: usize = file
            .strip_prefix("seg_")
            .and_then(|rest| rest.strip_suffix(".m4s"))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| no_such(&format!("file {file:?}")))?;
        let segment = *track
            .segments
            .get(index)
            .ok_or_else(|| no_such(&format!("segment {index}")))?;
        (segment, index + 1)
    };
    let content_type = match track.kind {
        TrackKind::Video => "video/mp4",
        TrackKind::Audio => "audio/mp4",
    };
    if let Some(bytes) = node.hot.get(&segment.hash) {
        let size = bytes.len() as u64;
        return respond(
            &node.blobs,
            segment.hash,
            Source::Local { size },
            Some(bytes),
            method,
            headers,
            content_type,
        )
        .await;
    }
    let source = node
        .library
        .open_segment(id, &segment, wanted_offset(headers))
        .await?;
    node.library.prefetch(id, track, next);
    let cached = match &source {
        Source::Local { size } if *size <= node.hot.max_entry() => {
            match node.blobs.get_bytes(&segment.hash).await {
                Ok(bytes) => {
                    // Large segments are written to a file: keep that off the async workers.
                    let (hot, hash) = (node.hot.clone(), segment.hash);
                    tokio::task::spawn_blocking(move || hot.insert(hash, bytes))
                        .await
                        .ok()
                }
                Err(e) => {
                    tracing::debug!("cannot read {} into memory: {e}", segment.hash.short());
                    None
                }
            }
        }
        _ => None,
    };
    respond(
        &node.blobs,
        segment.hash,
        source,
        cached,
        method,
        headers,
        content_type,
    )
    .await
}
