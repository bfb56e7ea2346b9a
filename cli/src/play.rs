//! `streamgate play`: plays a gated video with any HLS player without putting the session
//! token on a command line (where `ps` shows it to every user of the machine).
//!
//! The CLI reads the token from an environment variable, serves the node's playlists,
//! segments and key on a loopback port, adding `Authorization: Bearer` to each request it
//! forwards, and starts the player on the loopback URL, which carries no secret.

use std::{future::IntoFuture, sync::Arc};

use anyhow::{Context, anyhow, bail};
use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderName, StatusCode, header},
    response::{IntoResponse, Response},
};

/// Request headers a player needs passed on; everything else stays here.
const FORWARDED_REQUEST: [HeaderName; 1] = [header::RANGE];
/// Answer headers passed back to the player.
const FORWARDED_ANSWER: [HeaderName; 5] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::CACHE_CONTROL,
];

#[derive(Debug)]
pub struct PlayArgs {
    pub id: String,
    /// Name of the environment variable holding the session token.
    pub session_env: String,
    /// The player to start on the loopback URL; `None`: print the URL and serve until
    /// interrupted.
    pub player: Option<String>,
}

struct Proxy {
    client: reqwest::Client,
    base: String,
    token: String,
}

pub async fn play(client: &reqwest::Client, base: &str, args: PlayArgs) -> anyhow::Result<()> {
    let token = std::env::var(&args.session_env).with_context(|| {
        format!(
            "environment variable {} is not set (TOKEN=$(streamgate sign-in ...) and export it)",
            args.session_env
        )
    })?;
    let id: streamgate_protocol::ContentHash = args
        .id
        .parse()
        .map_err(|_| anyhow!("{:?} is not a manifest id", args.id))?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot listen on a loopback port")?;
    let url = format!("http://{}/hls/{id}/master.m3u8", listener.local_addr()?);
    let proxy = Arc::new(Proxy {
        client: client.clone(),
        base: base.to_string(),
        token: token.trim().to_string(),
    });
    let server = tokio::spawn(
        axum::serve(listener, Router::new().fallback(forward).with_state(proxy)).into_future(),
    );
    println!("{url}");
    let Some(player) = args.player else {
        eprintln!("serving {url} for a player; Ctrl-C stops");
        server.await??;
        return Ok(());
    };
    let status = tokio::process::Command::new(&player)
        .arg(&url)
        .status()
        .await
        .with_context(|| format!("cannot start {player}"))?;
    server.abort();
    if !status.success() {
        bail!("{player} exited with {status}");
    }
    Ok(())
}

/// Forwards a player's GET of a playlist, segment or key to the node, with the token.
async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let path = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let allowed = request.method() == axum::http::Method::GET
        && (path.starts_with("/hls/") || path.starts_with("/keys/"));
    if !allowed {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut upstream = proxy
        .client
        .get(format!("{}{path}", proxy.base))
        .bearer_auth(&proxy.token);
    for name in FORWARDED_REQUEST {
        if let Some(value) = request.headers().get(&name) {
            upstream = upstream.header(name, value.clone());
        }
    }
    let answer = match upstream.send().await {
        Ok(answer) => answer,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut response = Response::builder().status(answer.status().as_u16());
    for name in FORWARDED_ANSWER {
        if let Some(value) = answer.headers().get(&name) {
            response = response.header(name, value.clone());
        }
    }
    response
        .body(Body::from_stream(answer.bytes_stream()))
        .unwrap_or_else(|_| StatusCode::BAD_GATEWAY.into_response())
}
