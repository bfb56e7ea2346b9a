//! The operator credential at the door: every route that writes or spends (disk, CPU, bandwidth, gas)
//! needs `Authorization: Bearer <DATA_DIR/api.token>`; reads of public content need none.
//!
//! The token lives in a file only the node's user can read (mode 0600), made at the first
//! start; the local CLI reads it from the data folder (`--data-dir`), as bitcoind's cookie
//! file works. It is never a cookie, so a web page cannot make a browser send it, and the
//! operator routes carry no CORS headers, so no other origin can read their answers.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{Method, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::ApiError;
use crate::node::Node;

/// Lets a request through only with the operator token. `OPTIONS` writes and spends
/// nothing (tus clients discover the upload service with it), so it needs none.
pub async fn require(State(node): State<Arc<Node>>, request: Request, next: Next) -> Response {
    if request.method() == Method::OPTIONS {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(token) if node.operator.matches(token) => next.run(request).await,
        Some(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_operator_token",
            "this is not the operator token of this node (DATA_DIR/api.token)",
        )
        .into_response(),
        None => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "operator_token_required",
            "this endpoint writes or spends: send the node's operator token (DATA_DIR/api.token) as Authorization: Bearer; the CLI reads it with --data-dir",
        )
        .into_response(),
    }
}
