//! The bootstrap node and the nodes: each with its own folder and log, nodes configured
//! from the network's state through the node's own configuration types.

use std::path::Path;

use anyhow::{anyhow, bail};
use streamgate_api::{
    config::{ChainConfig, DhtMode, NodeConfig},
    ready::{BootstrapReady, NodeReady, ReadyInfo},
};
use tokio::process::Command;

use crate::{
    state::{Ports, ProcessState, State},
    supervisor::{Children, run},
};

pub fn node_api(ports: &Ports, k: usize) -> String {
    format!("http://127.0.0.1:{}", ports.first_api as usize + k - 1)
}

/// `BIN init --data-dir DIR`, once.
async fn init(bin: &Path, dir: &Path) -> anyhow::Result<()> {
    if dir.join("node.key").exists() {
        return Ok(());
    }
    let out = run(
        Command::new(bin).args(["init", "--data-dir"]).arg(dir),
        "init",
    )
    .await?;
    if !out.status.success() {
        bail!(
            "{} init failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

pub async fn start_bootstrap(
    data: &Path,
    state: &mut State,
    children: &mut Children,
    bin: &Path,
) -> anyhow::Result<()> {
    let dir = data.join("bootstrap");
    init(bin, &dir).await?;
    let _ = std::fs::remove_file(BootstrapReady::path(&dir));
    println!(
        "starting the bootstrap node on port {}",
        state.ports.bootstrap
    );
    let port = state.ports.bootstrap.to_string();
    let pid = children.spawn(
        "bootstrap",
        Command::new(bin)
            .args(["run", "--data-dir"])
            .arg(&dir)
            .args(["--listen", &format!("/ip4/127.0.0.1/tcp/{port}")])
            .args(["--listen", &format!("/ip4/127.0.0.1/udp/{port}/quic-v1")])
            .args([
                "--relay-listen",
                &format!("127.0.0.1:{}", state.ports.relay),
            ])
            // Address discovery tells nodes behind NAT their public address; on loopback
            // there is none, and its port would be one more to keep free.
            .arg("--no-qad"),
    )?;
    state.set_process(ProcessState {
        name: "bootstrap".into(),
        pid: Some(pid),
        log: children.log("bootstrap"),
        api_url: None,
    });
    let ready: BootstrapReady = children.ready(&dir, "bootstrap").await?;
    state.bootstrap_addr = ready.listen_addrs.first().cloned();
    state.save(data)
}

/// Whether node `k` is one of the network's workers.
pub fn is_worker(state: &State, k: usize) -> bool {
    k > state.nodes.saturating_sub(state.workers)
}

/// The configuration node `k` runs with, from the network's state.
fn node_config(state: &State, k: usize) -> anyhow::Result<NodeConfig> {
    let chain = state.chain.clone().ok_or_else(|| anyhow!("no chain"))?;
    let bootstrap = state
        .bootstrap_addr
        .clone()
        .ok_or_else(|| anyhow!("no bootstrap address"))?;
    let api = node_api(&state.ports, k);
    let mut config = NodeConfig::default();
    config.swarm.listen = vec![
        "/ip4/127.0.0.1/tcp/0".parse()?,
        "/ip4/127.0.0.1/udp/0/quic-v1".parse()?,
    ];
    config.swarm.bootstrap = vec![bootstrap.parse()?];
    // Loopback addresses are never confirmed reachable by AutoNAT.
    config.swarm.dht_mode = DhtMode::Server;
    config.data_plane.bind = "127.0.0.1:0".parse()?;
    config.data_plane.relay_url = format!("http://127.0.0.1:{}", state.ports.relay);
    config.data_plane.idle_timeout_secs = 3;
    config.api.listen = api.trim_start_matches("http://").parse()?;
    config.fetch.find_timeout_secs = 5;
    config.fetch.stall_timeout_secs = 3;
    config.access.public_origin = api;
    config.worker.enabled = is_worker(state, k);
    config.chains = vec![ChainConfig {
        chain_id: chain.chain_id,
        rpc_urls: vec![chain.rpc_url],
        registry: Some(chain.registry),
    }];
    Ok(config)
}

/// Starts (or restarts) node `k` with a configuration written from the network's state.
pub async fn start_node(
    data: &Path,
    state: &mut State,
    children: &mut Children,
    bin: &Path,
    k: usize,
) -> anyhow::Result<()> {
    let name = format!("node-{k}");
    let dir = data.join(&name);
    init(bin, &dir).await?;
    let config = node_config(state, k)?;
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "# Written by streamgate-testnet at every start; edit the testnet, not this file.\n{}",
            config.to_toml()
        ),
    )?;
    let _ = std::fs::remove_file(NodeReady::path(&dir));
    let pid = children.spawn(
        &name,
        Command::new(bin).args(["run", "--data-dir"]).arg(&dir),
    )?;
    state.set_process(ProcessState {
        name: name.clone(),
        pid: Some(pid),
        log: children.log(&name),
        api_url: Some(node_api(&state.ports, k)),
    });
    let _: NodeReady = children.ready(&dir, &name).await?;
    Ok(())
}
