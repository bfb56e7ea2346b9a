//! The demo content: a clip made with FFmpeg (or the user's video), published twice
//! through the real CLI on node 1 (public, and gated on StreamPass), then pinned on every
//! node so any of them can serve it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, anyhow, bail};
use streamgate_api::{
    cli::Published,
    ready::{NodeReady, ReadyInfo, operator_token_path, read_operator_token},
    v1::ManifestSummary,
};
use tokio::process::Command;

use crate::{
    chain::deployer_address,
    nodes::node_api,
    state::{State, Videos},
    supervisor::run,
};

/// The ladder the demo is published with: small, so `up` is quick.
const DEMO_LADDER: &str = "720p,360p";

pub async fn publish_demo(
    video: Option<&Path>,
    data: &Path,
    state: &mut State,
    cli: &Path,
) -> anyhow::Result<()> {
    let video = match video {
        Some(v) => v.to_path_buf(),
        None => make_demo_clip(data).await?,
    };
    let chain = state.chain.clone().ok_or_else(|| anyhow!("no chain"))?;
    let api = node_api(&state.ports, 1);
    if state.workers > 0 {
        wait_for_workers(&api, state.workers).await?;
        println!(
            "publishing the demo video (public) through {} workers",
            state.workers
        );
    } else {
        println!("publishing the demo video (public)");
    }
    let public = publish(cli, &api, &video, data, &["--title", "StreamGate demo"]).await?;
    println!("publishing the demo video (gated on StreamPass)");
    let gate = format!("erc721:{}:{}", chain.chain_id, chain.pass);
    let registrant = deployer_address()?;
    let mut gated_args: Vec<String> = [
        "--title",
        "StreamGate demo (pass holders)",
        "--gate",
        &gate,
        "--registrant",
        &registrant,
    ]
    .map(String::from)
    .to_vec();
    // Every node can release the key, so a viewer signs in wherever they watch, and the
    // gated video keeps playing when the publishing node is gone.
    for k in 2..=state.nodes {
        let ready = NodeReady::read(&data.join(format!("node-{k}")))
            .ok_or_else(|| anyhow!("node-{k} has no ready file"))?;
        gated_args.push("--key-server".into());
        gated_args.push(format!("{}@{}", ready.node_id, node_api(&state.ports, k)));
    }
    let gated_args: Vec<&str> = gated_args.iter().map(String::as_str).collect();
    let gated = publish(cli, &api, &video, data, &gated_args).await?;
    state.videos = Some(Videos {
        public,
        gated,
        published_on: "node-1".into(),
    });
    state.save(data)
}

async fn make_demo_clip(data: &Path) -> anyhow::Result<PathBuf> {
    let clip = data.join("demo.mp4");
    if clip.exists() {
        return Ok(clip);
    }
    println!("making a 20 s demo clip with FFmpeg");
    let temp = data.join(".demo.mp4");
    let out = run(
        Command::new("ffmpeg")
            .args(["-y", "-v", "error", "-nostdin"])
            .args([
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=1280x720:rate=30:duration=20",
            ])
            .args([
                "-f",
                "lavfi",
                "-i",
                "sine=frequency=440:sample_rate=48000:duration=20",
            ])
            .args([
                "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac",
            ])
            .arg(&temp),
        "ffmpeg",
    )
    .await?;
    if !out.status.success() {
        bail!(
            "ffmpeg could not make the demo clip: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    std::fs::rename(&temp, &clip)?;
    Ok(clip)
}

/// Waits until node 1 has heard of `n` workers (their adverts take a few seconds).
async fn wait_for_workers(api: &str, n: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    for _ in 0..120 {
        let known = match client.get(format!("{api}/api/v1/workers")).send().await {
            Ok(response) => response
                .json::<Vec<serde_json::Value>>()
                .await
                .map(|w| w.len())
                .unwrap_or(0),
            Err(_) => 0,
        };
        if known >= n {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    bail!("node-1 did not hear of the {n} workers within 60 s")
}

/// `streamgate --json publish`; the manifest id it printed.
async fn publish(
    cli: &Path,
    api: &str,
    video: &Path,
    data: &Path,
    extra: &[&str],
) -> anyhow::Result<String> {
    let out = run(
        Command::new(cli)
            .env("STREAMGATE_STATE_DIR", data.join("cli-state"))
            // The operator's token, as on node 1's own machine.
            .env("STREAMGATE_DATA_DIR", data.join("node-1"))
            .args(["--node", api, "--json", "publish", "--ladder", DEMO_LADDER])
            .args(extra)
            .arg(video),
        "streamgate publish",
    )
    .await?;
    if !out.status.success() {
        bail!(
            "publishing the demo video failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let published: Published =
        serde_json::from_slice(&out.stdout).context("publish printed no result")?;
    Ok(published.manifest_id)
}

/// Every node fetches and keeps both demo videos, so any of them can serve the rest.
pub async fn pin_everywhere(state: &State, data: &Path) -> anyhow::Result<()> {
    let Some(videos) = &state.videos else {
        return Ok(());
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    for k in 1..=state.nodes {
        let api = node_api(&state.ports, k);
        let token = read_operator_token(&operator_token_path(&data.join(format!("node-{k}"))))
            .with_context(|| format!("node-{k}'s operator token"))?;
        for id in [&videos.public, &videos.gated] {
            let response = client
                .post(format!("{api}/api/v1/manifests/{id}/pin"))
                .bearer_auth(&token)
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "node-{k} cannot pin {id}: {}",
                    response.text().await.unwrap_or_default()
                );
            }
        }
    }
    println!("waiting until every node holds both videos");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for k in 1..=state.nodes {
        let api = node_api(&state.ports, k);
        loop {
            let list: Vec<ManifestSummary> = client
                .get(format!("{api}/api/v1/manifests"))
                .send()
                .await?
                .json()
                .await?;
            let complete = |id: &str| list.iter().any(|m| m.id.to_string() == id && m.complete);
            if complete(&videos.public) && complete(&videos.gated) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("node-{k} did not fetch the demo videos within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    Ok(())
}
