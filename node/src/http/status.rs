//! `GET /health` (liveness), `GET /api/v1/status` (identity, peers, storage, fetches,
//! provider standings, the HTTP server's limits and counters) and `GET /api/v1/workers`
//! (the volunteered workers this node has heard of).

use std::sync::Arc;

use axum::{Extension, Json, Router, extract::State, http::StatusCode, routing::get};
use streamgate_api::v1::{Health, NodeStatus, WorkerInfo};

use super::{ApiError, server::ServerStats};
use crate::node::Node;

pub fn routes(server: Arc<ServerStats>) -> Router<Arc<Node>> {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/status", get(status).layer(Extension(server)))
        .route("/api/v1/workers", get(workers))
}

async fn workers(State(node): State<Arc<Node>>) -> Result<Json<Vec<WorkerInfo>>, ApiError> {
    let adverts = node.swarm.workers().await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    })?;
    Ok(Json(
        adverts
            .iter()
            .map(|advert| {
                let mut info = crate::services::worker::info(advert);
                info.standing = node.worker_standing.standing_of(&advert.advert.node_key);
                info
            })
            .collect(),
    ))
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn status(
    State(node): State<Arc<Node>>,
    Extension(server): Extension<Arc<ServerStats>>,
) -> Result<Json<NodeStatus>, ApiError> {
    let mut status = node
        .status()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))?;
    status.http = server.status();
    Ok(Json(status))
}
