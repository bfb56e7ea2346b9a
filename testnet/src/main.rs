//! `streamgate-testnet`: a whole local StreamGate network from one command.
//!
//! ```text
//!  up ─▶ chain: anvil (state in DATA/chain) ─▶ contracts (deployed once) ─▶ passes minted
//!     ─▶ nodes: bootstrap ─▶ nodes 1..N (each its own folder and log)
//!     ─▶ demo: a clip published twice on node 1 (public, and gated on StreamPass)
//!        ─▶ pinned on every node
//!     ─▶ summary ─▶ supervisor: watches until Ctrl-C / SIGTERM / `down`, then stops
//!        everything; Ctrl-C during start-up stops it too, at any step
//! ```
//!
//! Other commands find the network through `DATA/testnet.json`.

mod chain;
mod demo;
mod nodes;
mod state;
mod summary;
mod supervisor;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use anyhow::bail;
use clap::{Parser, Subcommand};
use state::{State, alive, signal};

#[derive(Parser)]
#[command(
    name = "streamgate-testnet",
    version,
    about = "Run a whole local StreamGate network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start (or resume) the network in the foreground; Ctrl-C stops it.
    Up(supervisor::UpArgs),
    /// Show the processes, their health, the content and its URLs. Exit 0 only when ready.
    Status {
        #[arg(long, default_value = "./testnet-data")]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Stop a network started with `up` (from another terminal).
    Down {
        #[arg(long, default_value = "./testnet-data")]
        data: PathBuf,
    },
    /// Kill node K (1-based) with SIGKILL, to watch the swarm heal.
    KillNode {
        k: usize,
        #[arg(long, default_value = "./testnet-data")]
        data: PathBuf,
    },
    /// Start node K again.
    RestartNode {
        k: usize,
        #[arg(long, default_value = "./testnet-data")]
        data: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => supervisor::up(args).await,
            Command::Status { data, json } => status(&data, json).await,
            Command::Down { data } => down(&data).await,
            Command::KillNode { k, data } => kill_node(&data, k),
            Command::RestartNode { k, data } => restart_node(&data, k).await,
        }
    });
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn healthy(api_url: &str) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build();
    match client {
        Ok(c) => c
            .get(format!("{api_url}/health"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success()),
        Err(_) => false,
    }
}

async fn status(data: &std::path::Path, json: bool) -> anyhow::Result<bool> {
    let state = State::load(data)?;
    let running = state.supervisor_pid.is_some_and(alive);
    let mut processes = Vec::new();
    let mut all_ok = running && state.ready && !state.processes.is_empty();
    for p in &state.processes {
        let is_alive = p.pid.is_some_and(alive);
        let is_healthy = match &p.api_url {
            Some(url) => is_alive && healthy(url).await,
            None => is_alive,
        };
        all_ok &= is_healthy;
        processes.push(serde_json::json!({
            "name": p.name, "pid": p.pid, "alive": is_alive, "healthy": is_healthy,
            "api_url": p.api_url, "log": p.log,
        }));
    }
    let ready = all_ok;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "ready": ready,
                "supervisor_running": running,
                "processes": processes,
                "chain": state.chain,
                "videos": state.videos,
                "accounts": state.accounts,
                "urls": summary::urls(&state),
            })
        );
    } else {
        println!(
            "network: {}",
            if ready {
                "ready"
            } else if running {
                "starting or degraded"
            } else {
                "not running"
            }
        );
        for p in &processes {
            println!(
                "  {:<10} pid {:<8} {:<9} {}",
                p["name"].as_str().unwrap_or("?"),
                p["pid"]
                    .as_u64()
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "-".into()),
                if p["healthy"] == true {
                    "healthy"
                } else if p["alive"] == true {
                    "unhealthy"
                } else {
                    "stopped"
                },
                p["api_url"].as_str().unwrap_or("")
            );
        }
        for (name, url) in summary::urls(&state) {
            println!("  {name:<24} {url}");
        }
    }
    Ok(ready)
}

async fn down(data: &std::path::Path) -> anyhow::Result<bool> {
    let state = State::load(data)?;
    let Some(pid) = state.supervisor_pid.filter(|p| alive(*p)) else {
        println!("no testnet is running on {}", data.display());
        return Ok(true);
    };
    signal(pid, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while alive(pid) {
        if tokio::time::Instant::now() > deadline {
            bail!("the testnet (pid {pid}) did not stop within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let leftovers: Vec<String> = State::load(data)?
        .processes
        .iter()
        .filter(|p| p.pid.is_some_and(alive))
        .map(|p| p.name.clone())
        .collect();
    if !leftovers.is_empty() {
        bail!("processes still running after down: {leftovers:?}");
    }
    println!("stopped");
    Ok(true)
}

fn kill_node(data: &std::path::Path, k: usize) -> anyhow::Result<bool> {
    let state = State::load(data)?;
    let name = format!("node-{k}");
    let Some(pid) = state
        .process(&name)
        .and_then(|p| p.pid)
        .filter(|p| alive(*p))
    else {
        bail!("{name} is not running");
    };
    signal(pid, libc::SIGKILL);
    println!("killed {name} (pid {pid})");
    Ok(true)
}

async fn restart_node(data: &std::path::Path, k: usize) -> anyhow::Result<bool> {
    let state = State::load(data)?;
    if !state.supervisor_pid.is_some_and(alive) {
        bail!(
            "no testnet is running on {}; start it with `streamgate-testnet up`",
            data.display()
        );
    }
    if k == 0 || k > state.nodes {
        bail!("there are nodes 1 to {}", state.nodes);
    }
    let control = data.join("control");
    std::fs::create_dir_all(&control)?;
    std::fs::write(control.join(format!("restart-node-{k}")), b"")?;
    let name = format!("node-{k}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let state = State::load(data)?;
        if let Some(p) = state.process(&name)
            && p.pid.is_some_and(alive)
            && !control.join(format!("restart-node-{k}")).exists()
            && let Some(url) = &p.api_url
            && healthy(url).await
        {
            println!("{name} is running again at {url}");
            return Ok(true);
        }
        if tokio::time::Instant::now() > deadline {
            bail!(
                "{name} did not come back within 60 s; see {}",
                data.join("logs").display()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
