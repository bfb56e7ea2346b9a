//! `streamgate-node`: the StreamGate node daemon.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use multiaddr::Multiaddr;
use streamgate_node::{
    config::{self, DEFAULT_CONFIG_TOML},
    http,
    node::Node,
    zerocopy::raise_descriptor_limit,
};
use streamgate_swarm::{
    daemon::{ReadyFile, init_logging, run_main, shutdown_signal},
    identity::Identity,
};

#[derive(Parser)]
#[command(
    name = "streamgate-node",
    version,
    about = "The StreamGate node daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the node's Ed25519 key (DIR/node.key, mode 0600) and a commented DIR/config.toml.
    Init {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
    },
    /// Run the daemon until SIGINT or SIGTERM.
    Run {
        #[arg(long, value_name = "DIR")]
        data_dir: PathBuf,
        /// libp2p listen address (repeatable); replaces swarm.listen from the config.
        #[arg(long, value_name = "MULTIADDR")]
        listen: Vec<Multiaddr>,
        /// Entry node, ending in /p2p/<peer id> (repeatable); replaces swarm.bootstrap.
        #[arg(long, value_name = "MULTIADDR")]
        bootstrap: Vec<Multiaddr>,
        /// Address of the HTTP API and gateway; replaces api.listen (default 127.0.0.1:7700).
        #[arg(long, value_name = "ADDR:PORT")]
        api_listen: Option<SocketAddr>,
        /// Volunteer as a transcoding worker (worker.enabled): gossip a signed advert of
        /// what the hardware probe opened and the price in the [worker] config.
        #[arg(long)]
        worker: bool,
    },
    /// Probe which hardware encoders and decoders really open on this machine, and print
    /// the transcoding mode a worker would advertise (gpu, gpu-decode-cpu-encode, cpu).
    Capabilities {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> std::process::ExitCode {
    streamgate_node::memory::tune_allocator();
    let cli = Cli::parse();
    init_logging();
    run_main(async {
        match cli.command {
            Command::Init { data_dir } => init(&data_dir),
            Command::Run {
                data_dir,
                listen,
                bootstrap,
                api_listen,
                worker,
            } => run(&data_dir, listen, bootstrap, api_listen, worker).await,
            Command::Capabilities { json } => {
                capabilities(json);
                Ok(())
            }
        }
    })
}

fn init(data_dir: &Path) -> anyhow::Result<()> {
    let identity = Identity::create(data_dir)?;
    let config_path = data_dir.join("config.toml");
    if config_path.exists() {
        println!("kept existing {}", config_path.display());
    } else {
        std::fs::write(&config_path, DEFAULT_CONFIG_TOML)
            .with_context(|| format!("cannot write {}", config_path.display()))?;
    }
    println!("peer id: {}", identity.peer_id());
    println!("key:     {}", Identity::key_path(data_dir).display());
    println!("config:  {}", config_path.display());
    Ok(())
}

fn capabilities(json: bool) {
    let caps = streamgate_media::hw::probe();
    if json {
        println!("{}", caps.to_json());
        return;
    }
    let report = caps.to_json();
    println!("mode: {}", report["mode"].as_str().unwrap_or("cpu"));
    for (title, list) in [
        ("devices", &caps.devices),
        ("encoders", &caps.encoders),
        ("decoders", &caps.decoders),
    ] {
        println!("{title}:");
        for probe in list {
            let mark = if probe.available { "yes" } else { "no " };
            println!("  {mark} {:<12} {}", probe.name, probe.detail);
        }
    }
}

async fn run(
    data_dir: &Path,
    listen: Vec<Multiaddr>,
    bootstrap: Vec<Multiaddr>,
    api_listen: Option<SocketAddr>,
    worker: bool,
) -> anyhow::Result<()> {
    // Both rustls back-ends end up in the build; pick one before anything uses TLS.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let identity = Identity::load(data_dir)?;
    let mut config = config::load(&data_dir.join("config.toml"))?;
    if !listen.is_empty() {
        config.swarm.listen = listen;
    }
    if !bootstrap.is_empty() {
        config.swarm.bootstrap = bootstrap;
    }
    if let Some(addr) = api_listen {
        config.api.listen = addr;
    }
    config.worker.enabled |= worker;
    config::validate(&config, "command line")?;
    if config.testing.corrupt_served_byte_at.is_some() {
        tracing::warn!(
            "testing.corrupt_served_byte_at is set: this node serves corrupt bytes on purpose"
        );
    }
    if config.testing.ownership_check_delay_ms.is_some() {
        tracing::warn!(
            "testing.ownership_check_delay_ms is set: ownership checks are slowed on purpose"
        );
    }
    let descriptors = raise_descriptor_limit();
    tracing::debug!(descriptors, "open descriptor limit");
    let api_addr = config.api.listen;
    let listener = tokio::net::TcpListener::bind(api_addr)
        .await
        .with_context(|| format!("cannot listen on {api_addr} for the HTTP API (config key api.listen or --api-listen)"))?;
    let api_url = format!("http://{}", listener.local_addr()?);

    let (node, _swarm) = Node::start(data_dir, identity, config, api_url).await?;
    let node = Arc::new(node);
    let refresher = node.go_live().await?;
    let ready =
        ReadyFile::write(data_dir, &node.ready_info()).context("cannot write the ready file")?;

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let stats = Arc::new(http::server::ServerStats::new(http::server::limits(
        &node.config.api,
        descriptors,
    )));
    let mut server = tokio::spawn(http::server::serve(
        listener,
        http::router(node.clone(), stats.clone()),
        stats,
        async {
            let _ = stop_rx.await;
        },
    ));
    let signal = tokio::select! {
        signal = shutdown_signal() => signal?,
        result = &mut server => bail!("the HTTP API server stopped unexpectedly: {result:?}"),
    };
    tracing::info!("{signal} received; shutting down");

    // Every step is bounded so the whole shutdown finishes within 5 seconds.
    refresher.abort();
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    node.shutdown().await;
    ready.remove();
    tracing::info!("stopped");
    Ok(())
}
