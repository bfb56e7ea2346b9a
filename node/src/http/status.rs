//! `GET /health` (liveness) and `GET /api/v1/status` (identity, peers, storage, fetches,
//! provider standings).

use std::sync::Arc;

use axum::{Json, Router, extract::State, http::StatusCode, routing::get};
use streamgate_api::v1::{Health, NodeStatus};

use super::ApiError;
use crate::node::Node;

pub fn routes() -> Router<Arc<Node>> {
    Router::new()
        .route("/health", get(health))
        .route("/api/v1/status", get(status))
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn status(State(node): State<Arc<Node>>) -> Result<Json<NodeStatus>, ApiError> {
    node.status()
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e))
}
