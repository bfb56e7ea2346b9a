//! Publishing jobs and the manifests they make.
//!
//! | route | answer |
//! |---|---|
//! | `POST /api/v1/publish` [`PublishRequest`] | 202 [`PublishAccepted`] |
//! | `GET /api/v1/jobs` | every [`JobView`] |
//! | `GET /api/v1/jobs/{id}` | [`JobView`] with live progress |
//! | `POST /api/v1/jobs/{id}/cancel` | 202 [`JobView`]; the job ends as `cancelled`, announcing nothing |
//! | `GET /api/v1/manifests` | every [`ManifestSummary`] |
//! | `GET /api/v1/manifests/{id}` | [`ManifestView`] (fetched from the swarm if needed) |
//! | `POST /api/v1/manifests/{id}/pin` | 202 [`PinAccepted`]; every blob is fetched and kept |
//! | `POST /api/v1/manifests/{id}/segments/{index}/report` [`SegmentReport`] | [`SegmentReported`]; the worker that made it loses standing |

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::{Path, State},
    http::StatusCode,
    routing::{get, post},
};
use streamgate_api::v1::{
    JobView, ManifestSummary, ManifestView, PinAccepted, PublishAccepted, PublishRequest,
    SegmentReport, SegmentReported,
};
use streamgate_protocol::{
    job::{JobReply, MAX_REASON_BYTES},
    reputation::Failure,
};

use super::{ApiError, parse_hash};
use crate::node::Node;

/// Reading the library: public.
pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/manifests", get(list_manifests))
        .route("/api/v1/manifests/{id}", get(manifest))
}

/// Publishing, jobs and pinning: the operator's.
pub fn operator_routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/api/v1/publish", post(publish))
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel))
        .route("/api/v1/manifests/{id}/pin", post(pin))
        .route(
            "/api/v1/manifests/{id}/segments/{index}/report",
            post(report_segment),
        )
}

async fn publish(
    State(node): State<Arc<Node>>,
    Json(request): Json<PublishRequest>,
) -> Result<(StatusCode, Json<PublishAccepted>), ApiError> {
    let job_id = node.publisher.submit(request).await?;
    Ok((StatusCode::ACCEPTED, Json(PublishAccepted { job_id })))
}

async fn job(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    Ok(Json(node.publisher.job(&id)?))
}

async fn list_jobs(State(node): State<Arc<Node>>) -> Result<Json<Vec<JobView>>, ApiError> {
    Ok(Json(node.publisher.jobs()?))
}

async fn cancel(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<JobView>), ApiError> {
    Ok((StatusCode::ACCEPTED, Json(node.publisher.cancel(&id)?)))
}

async fn list_manifests(
    State(node): State<Arc<Node>>,
) -> Result<Json<Vec<ManifestSummary>>, ApiError> {
    node.library.list().map(Json).map_err(ApiError::internal)
}

async fn manifest(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<Json<ManifestView>, ApiError> {
    let id = parse_hash(&id, "bad_hash")?;
    let signed = node.library.manifest(id).await?;
    Ok(Json(ManifestView {
        id,
        manifest: signed.manifest.clone(),
        signature: hex::encode(signed.signature),
    }))
}

/// Fetch and keep every blob of a video here.
async fn pin(
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<PinAccepted>), ApiError> {
    let id = parse_hash(&id, "bad_hash")?;
    let blobs = node.library.pin(id).await?;
    Ok((StatusCode::ACCEPTED, Json(PinAccepted { id, blobs })))
}

/// A problem found in a segment after publishing: traced through the manifest's work
/// record to the worker whose signed receipt lists it, and counted against that worker.
async fn report_segment(
    State(node): State<Arc<Node>>,
    Path((id, index)): Path<(String, u32)>,
    Json(report): Json<SegmentReport>,
) -> Result<Json<SegmentReported>, ApiError> {
    let id = parse_hash(&id, "bad_hash")?;
    if report.reason.is_empty() || !JobReply::is_valid_reason(&report.reason) {
        return Err(ApiError::bad_request(
            "bad_reason",
            format!("the reason must be 1 to {MAX_REASON_BYTES} printable ASCII characters"),
        ));
    }
    let signed = node.library.manifest(id).await?;
    let video_segments = signed.manifest.video_segments();
    if index as usize >= video_segments {
        return Err(ApiError::not_found(
            "no_such_segment",
            format!("{id} has {video_segments} video segments; there is no segment {index}"),
        ));
    }
    let record = node.library.made_by(id, index).await?.ok_or_else(|| {
        ApiError::not_found(
            "not_made_by_a_worker",
            format!("segment {index} of {id} was made by its publishing node, not a worker"),
        )
    })?;
    node.worker_standing.penalise(
        record.worker,
        Failure::Corrupt,
        &format!("reported in segment {index} of {id}: {}", report.reason),
    );
    Ok(Json(SegmentReported {
        worker: streamgate_swarm::identity::peer_label(&record.worker),
        first_segment: record.first_segment,
        segments: record.segments,
        receipt: record.receipt.hash,
        standing: node.worker_standing.standing_of(&record.worker),
    }))
}
